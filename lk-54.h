HTTP/1.1 400 Bad Request
Content-Type: application/fhir+json; charset=utf-8
Traceresponse: 00-01a246e0e302b8a4ae598230b2f1c54b-50ccd9d7abc42127-01
Vary: Accept
X-Request-Id: 01a246e0e302b8a4ae598230b2f1c54b
Date: Sat, 05 Dec 2026 15:44:33 GMT
Content-Length: 271

