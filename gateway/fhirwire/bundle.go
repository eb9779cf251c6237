// Package fhirwire is the FHIR R4 wire layer every part of the gateway
// shares: the Bundle, entry, request and response types (resources stay raw
// JSON, never decoded and re-encoded on the way through), the transaction
// processing order of http.html#trules, and the one rule by which references
// to Bundle entries are rewritten (bundle.html#references). The FHIR engine,
// native ingest and delivery to EHRs all use it, so they agree on what a
// Bundle means.
package fhirwire

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"
)

// Bundle is a Bundle as the gateway reads and writes it.
type Bundle struct {
	ResourceType string  `json:"resourceType"`
	ID           string  `json:"id,omitempty"`
	Meta         *Meta   `json:"meta,omitempty"`
	Type         string  `json:"type"`
	Timestamp    string  `json:"timestamp,omitempty"`
	Total        *int    `json:"total,omitempty"`
	Link         []Link  `json:"link,omitempty"`
	Entry        []Entry `json:"entry,omitempty"`
}

// Meta is Bundle.meta.
type Meta struct {
	LastUpdated string `json:"lastUpdated"`
}

// Link is Bundle.link.
type Link struct {
	Relation string `json:"relation"`
	URL      string `json:"url"`
}

// Entry is Bundle.entry; the resource stays raw.
type Entry struct {
	FullURL  string          `json:"fullUrl,omitempty"`
	Resource json.RawMessage `json:"resource,omitempty"`
	Search   *Search         `json:"search,omitempty"`
	Request  *Request        `json:"request,omitempty"`
	Response *Response       `json:"response,omitempty"`
}

// Search is Bundle.entry.search.
type Search struct {
	Mode string `json:"mode"`
}

// Search modes.
const (
	ModeMatch   = "match"
	ModeInclude = "include"
	ModeOutcome = "outcome"
)

// Request is Bundle.entry.request.
type Request struct {
	Method          string `json:"method"`
	URL             string `json:"url"`
	IfNoneMatch     string `json:"ifNoneMatch,omitempty"`
	IfModifiedSince string `json:"ifModifiedSince,omitempty"`
	IfMatch         string `json:"ifMatch,omitempty"`
	IfNoneExist     string `json:"ifNoneExist,omitempty"`
}

// Response is Bundle.entry.response.
type Response struct {
	Status       string          `json:"status"`
	Location     string          `json:"location,omitempty"`
	Etag         string          `json:"etag,omitempty"`
	LastModified string          `json:"lastModified,omitempty"`
	Outcome      json.RawMessage `json:"outcome,omitempty"`
}

// Bundle types the gateway reads or writes.
const (
	TypeTransaction         = "transaction"
	TypeBatch               = "batch"
	TypeTransactionResponse = "transaction-response"
	TypeBatchResponse       = "batch-response"
	TypeSearchset           = "searchset"
	TypeHistory             = "history"
)

// Interaction outcomes as entry.response.status reports them.
const (
	StatusOK        = 200
	StatusCreated   = 201
	StatusNoContent = 204
	// StatusNotModified answers a conditional read whose copy is current.
	StatusNotModified = 304
)

var statusTexts = map[int]string{
	200: "OK", 201: "Created", 204: "No Content", 304: "Not Modified", 400: "Bad Request", 401: "Unauthorized",
	403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 406: "Not Acceptable", 409: "Conflict", 410: "Gone",
	412: "Precondition Failed", 413: "Request Entity Too Large", 415: "Unsupported Media Type",
	422: "Unprocessable Entity", 429: "Too Many Requests", 500: "Internal Server Error", 501: "Not Implemented",
	503: "Service Unavailable",
}

// StatusLine renders entry.response.status: "201 Created".
func StatusLine(code int) string {
	if t, ok := statusTexts[code]; ok {
		return strconv.Itoa(code) + " " + t
	}
	return strconv.Itoa(code)
}

// StatusCode is the leading code of an entry.response.status ("201
// Created" is 201); 0 when there is none.
func StatusCode(s string) int {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, ' '); i >= 0 {
		s = s[:i]
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 100 || n > 599 {
		return 0
	}
	return n
}

// ETag is the weak ETag of a version: W/"3".
func ETag(version int64) string { return `W/"` + strconv.FormatInt(version, 10) + `"` }

// Instant formats a time as a FHIR instant with millisecond precision.
func Instant(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

// MethodRank is the transaction processing order of an entry's method
// (http.html#trules): DELETE, then POST, then PUT and PATCH, then GET and
// HEAD.
func MethodRank(method string) int {
	switch method {
	case "DELETE":
		return 0
	case "POST":
		return 1
	case "PUT", "PATCH":
		return 2
	}
	return 3
}

// ValidID reports whether s is a valid FHIR id.
func ValidID(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}
