package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"slices"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/fhirwire"
)

// ContentTypeFHIR is the media type of a FHIR response, unless the
// request asked for a generic JSON type (formatKey).
const ContentTypeFHIR = "application/fhir+json; charset=utf-8"

// formatKey is the echo context key of the media type fhirFormat
// negotiated for the answer: application/fhir+json, or the generic
// application/json or text/json the client asked for.
const formatKey = "kg.format"

// contentType is the Content-Type of a FHIR answer to c's request: the
// media type negotiated, in UTF-8.
func contentType(c echo.Context) string {
	if mt, ok := c.Get(formatKey).(string); ok && mt != "" {
		return mt + "; charset=utf-8"
	}
	return ContentTypeFHIR
}

// writeResource writes a FHIR resource as JSON (indented with _pretty=true).
func writeResource(c echo.Context, status int, v any) error {
	b, err := fhirwire.Marshal(v)
	if err != nil {
		return err
	}
	return writeRaw(c, status, b)
}

// writeRaw writes FHIR JSON the application already rendered (a stored
// version, an ingest's answer), indented with _pretty=true like any other
// answer.
func writeRaw(c echo.Context, status int, raw []byte) error {
	if c.QueryParam("_pretty") == "true" {
		var b bytes.Buffer
		if err := json.Indent(&b, raw, "", "  "); err != nil {
			return err
		}
		raw = b.Bytes()
	}
	return c.Blob(status, contentType(c), raw)
}

// readBody reads a JSON request body of at most limit bytes. It rejects
// other media types with 415 and oversize bodies with 413 before reading
// them whole where Content-Length tells.
func readBody(c echo.Context, limit int64) ([]byte, error) {
	return readBodyOf(c, limit, writeTypes...)
}

// writeTypes are the media types of a FHIR JSON body: those an answer is
// given in (http.html#mime: application/fhir+json, and the generic JSON
// types a client may send, text/json among them) and R4's legacy
// application/json+fhir.
var writeTypes = []string{"application/fhir+json", "application/json", "application/json+fhir", "text/json"}

// readBodyOf is readBody for a body of one of the media types.
func readBodyOf(c echo.Context, limit int64, types ...string) ([]byte, error) {
	r := c.Request()
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || !slices.Contains(types, mt) {
		return nil, errContentType
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") && !strings.EqualFold(cs, "utf8") {
		return nil, errCharset // JSON is UTF-8 (RFC 8259 §8.1)
	}
	if v, ok := params["fhirversion"]; ok && !fhirwire.R4Version(v) {
		return nil, errContentVersion // a body of another FHIR version is never stored as R4
	}
	if r.ContentLength > limit {
		return nil, bodyTooLarge(limit, "--max-body", bodyTooLargeHint)
	}
	b, err := readSized(http.MaxBytesReader(c.Response(), r.Body, limit), r.ContentLength)
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return nil, bodyTooLarge(limit, "--max-body", bodyTooLargeHint)
	case err != nil:
		return nil, errBodyUnreadable
	}
	if err := admitBody(c, len(b)); err != nil {
		return nil, err
	}
	return b, nil
}

// readSized reads r to its end into a buffer of n bytes, the request's
// Content-Length (at most the body limit, checked before), or as
// io.ReadAll does when n is unknown (-1, a chunked body). io.ReadAll
// grows its buffer from 512 bytes by doubling: a Synthea Bundle of 1-2
// MB was copied some twelve times, each copy into new memory the kernel
// had to clear and map (6% of the gateway's CPU loading Synthea, issue
// 19). A body longer than announced still reads whole (net/http stops it
// at the Content-Length anyway). No more than readAhead is taken before
// the bytes arrive: a client announcing the body limit and sending
// nothing holds 4 MiB, not 16, and a larger body grows from there.
func readSized(r io.Reader, n int64) ([]byte, error) {
	if n <= 0 {
		return io.ReadAll(r)
	}
	// MinRead: the room ReadFrom wants free for the read that finds the
	// end, so that a body of n bytes is read without growing the buffer.
	b := bytes.NewBuffer(make([]byte, 0, min(n, readAhead)+bytes.MinRead))
	_, err := b.ReadFrom(r)
	return b.Bytes(), err
}

// readAhead bounds the buffer readSized takes before the body arrives.
const readAhead = 4 << 20
