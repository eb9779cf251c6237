package gateway

import (
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/fhirwire"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// rawKey is the echo context key of the Accept header of a Binary read
// that asks for the Binary's own content rather than the resource
// (rawBinaryRead).
const rawKey = "kg.rawBinary"

// errBinaryAccept answers a raw Binary read whose Accept admits neither
// FHIR JSON nor the Binary's content type.
var errBinaryAccept = outcome.New(outcome.NotAcceptable, "not-supported", "format-unsupported",
	"the Accept header admits neither FHIR JSON nor the Binary's content type: accept its contentType for the "+
		"content, or application/fhir+json for the resource")

// fhirTypes are the media types with which a request explicitly asks for a
// FHIR representation: FHIR JSON, the generic JSON types http.html#mime
// answers with it, and FHIR XML (which the gateway refuses with 406).
var fhirTypes = map[string]bool{"application/fhir+json": true, "application/json+fhir": true, "application/json": true,
	"text/json": true, "application/fhir+xml": true, "application/xml+fhir": true}

// rawBinaryRead reports whether c is a read or vread of a Binary that asks
// for the Binary's content in its own content type: binary.html, "when a
// read request is made for the binary resource that doesn't explicitly
// specify the FHIR content types ..., the content should be returned
// using the content type stated in the resource". An Accept that names a
// FHIR type, _format, or no Accept at all (the gateway's answer has
// always been FHIR JSON then, and clients rely on it) ask for the
// resource.
func rawBinaryRead(c echo.Context, accept string) bool {
	r := c.Request()
	if r.Method != http.MethodGet && r.Method != http.MethodHead || c.Param("type") != "Binary" || accept == "" ||
		c.QueryParam("_format") != "" {
		return false
	}
	switch c.Path() {
	case "/fhir/:type/:id", "/fhir/:type/:id/_history/:vid":
		return !fhirAsked(accept)
	}
	return false
}

// mediaRanges calls f with each media range of an Accept header (type
// lowercased) and its q (1 when absent or malformed).
func mediaRanges(accept string, f func(mt string, q float64)) {
	for part := range strings.SplitSeq(accept, ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		q := 1.0
		if v, err := strconv.ParseFloat(params["q"], 64); err == nil {
			q = v
		}
		f(mt, q)
	}
}

// fhirAsked reports whether accept names a FHIR type (fhirTypes) with a q
// above 0; a wildcard (*/*, application/*) names none.
func fhirAsked(accept string) bool {
	asked := false
	mediaRanges(accept, func(mt string, q float64) { asked = asked || fhirTypes[mt] && q > 0 })
	return asked
}

// acceptsType reports whether accept admits the media type of contentType:
// the most specific range naming it (the type, type/*, */*: RFC 9110
// 12.5.1) has a q above 0.
func acceptsType(accept, contentType string) bool {
	t, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	spec, q := 0, 0.0
	mediaRanges(accept, func(mt string, mq float64) {
		if s := mediaRangeSpecificity(mt, t); s > spec {
			spec, q = s, mq
		}
	})
	return spec > 0 && q > 0
}

// attachOnly reports whether content of contentType is served as an
// attachment, never shown inline: what a browser would render as a page
// or run (HTML, XHTML, SVG, any XML, which may carry XHTML or XSLT, and
// scripts), and a type that cannot be read. A Binary is any client's
// upload; shown inline at the gateway's origin, such content would run
// with it.
func attachOnly(contentType string) bool {
	t, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return true
	}
	switch {
	case t == "text/html", t == "application/xhtml+xml", t == "image/svg+xml",
		t == "text/xml", t == "application/xml", strings.HasSuffix(t, "+xml"),
		strings.Contains(t, "javascript"), strings.Contains(t, "ecmascript"):
		return true
	}
	return false
}

// respondBinary answers a raw Binary read (rawBinaryRead) with the content
// of r in its contentType, with the read's version headers; 406 when the
// Accept header does not admit that type. The content is any client's:
// it is never sniffed, runs in a sandbox with nothing to load, and what a
// browser would render is an attachment.
func respondBinary(c echo.Context, r *store.Resource, accept string) error {
	ct, data, err := fhirwire.BinaryContent(r.Body)
	if err != nil {
		return err
	}
	if _, _, err := mime.ParseMediaType(ct); err != nil {
		ct = "application/octet-stream"
	}
	if !acceptsType(accept, ct) {
		return errBinaryAccept
	}
	setVersionHeaders(c, r)
	h := c.Response().Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "sandbox; default-src 'none'")
	if attachOnly(ct) {
		h.Set("Content-Disposition", "attachment")
	}
	return c.Blob(http.StatusOK, ct, data)
}
