HTTP/1.1 400 Bad Request
Content-Type: application/fhir+json; charset=utf-8
Traceresponse: 00-01a246e0e2bc08b2c8cbd696beb86365-c06aef02f334fe60-01
Vary: Accept
X-Request-Id: 01a246e0e2bc08b2c8cbd696beb86365
Date: Sat, 05 Dec 2026 15:44:32 GMT
Content-Length: 271

