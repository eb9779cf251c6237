package gateway

import (
	"compress/gzip"
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/labstack/echo/v4"
)

// Response compression. The FHIR API's answers (searchset Bundles of a
// megabyte and more) are gzipped for a client that accepts gzip, as HAPI
// FHIR and Medplum do. An answer is compressed only from compressMin bytes
// on: below that gzip's framing and CPU cost more than they save. Only
// routes of the FHIR API (/fhir) are compressed, whose answers reach this
// writer whole (the audit middleware holds each until it is recorded), so
// nothing here flushes: a job's file download streams its parts as they
// are read (docs/bulk.md), the console streams its exports, and neither
// passes here; the native ingest's answers
// are small and its clients (Go's http.Client among them) ask for gzip
// without needing it, so its hot path does not pay for it.

// compressMin is the size from which an answer is gzipped.
const compressMin = 1024

// gzipPool holds gzip writers for reuse (fastest level: JSON compresses
// about tenfold even so, and the gateway's cores serve requests).
type gzipPool struct{ pool sync.Pool }

func (p *gzipPool) get(w io.Writer) *gzip.Writer {
	if z, ok := p.pool.Get().(*gzip.Writer); ok {
		z.Reset(w)
		return z
	}
	z, _ := gzip.NewWriterLevel(w, gzip.BestSpeed) // the level is valid: no error
	return z
}

func (p *gzipPool) put(z *gzip.Writer) { p.pool.Put(z) }

// compress gzips the answer of a route of the FHIR API when the request accepts gzip
// (acceptsGzip), and says Vary: Accept-Encoding on every answer of one.
// HEAD is answered as it is (no body to compress). It runs outermost, so
// the answers the error handler and the audit middleware write are
// compressed alike.
func (s *Server) compress(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if rt := s.routeOf(c); rt == nil || !rt.fhir || !strings.HasPrefix(rt.path, "/fhir") {
			return next(c)
		}
		res := c.Response()
		res.Header().Add("Vary", "Accept-Encoding")
		if c.Request().Method == http.MethodHead || !acceptsGzip(c.Request().Header.Values("Accept-Encoding")) {
			return next(c)
		}
		gw := &gzipWriter{ResponseWriter: res.Writer, pool: &s.gzip}
		res.Writer = gw
		err := next(c)
		gw.close()
		res.Writer = gw.ResponseWriter
		return err
	}
}

// acceptsGzip reports whether Accept-Encoding values admit gzip (RFC 9110
// 12.5.3): gzip or x-gzip with a q above 0, or * with a q above 0 when
// gzip is not named. Codings are read as the Accept header's media ranges
// are (mediaRanges: comma-separated, q parameter).
func acceptsGzip(values []string) bool {
	named, star := -1.0, -1.0
	mediaRanges(strings.Join(values, ","), func(coding string, q float64) {
		switch coding {
		case "gzip", "x-gzip":
			named = max(named, q)
		case "*":
			star = max(star, q)
		}
	})
	if named >= 0 {
		return named > 0
	}
	return star > 0
}

// compressible reports whether an answer of the media type ct gains from
// gzip: JSON, XML and text do; a Binary's own content read raw (an image,
// a PDF, an archive) is mostly compressed already.
func compressible(ct string) bool {
	mt, _, _ := strings.Cut(strings.ToLower(ct), ";")
	mt = strings.TrimSpace(mt)
	return strings.HasPrefix(mt, "text/") || strings.HasSuffix(mt, "json") || strings.HasSuffix(mt, "xml")
}

// gzipWriter holds an answer's first bytes until it knows whether the
// answer reaches compressMin: then it sends the status with
// Content-Encoding: gzip and compresses the rest; a smaller answer is sent
// as it is by close.
type gzipWriter struct {
	http.ResponseWriter
	pool   *gzipPool
	status int
	head   []byte       // held bytes, before the decision
	z      *gzip.Writer // compressing
	plain  bool         // decided not to compress
}

func (w *gzipWriter) WriteHeader(code int) {
	if w.status == 0 && w.z == nil && !w.plain {
		w.status = code
	}
}

func (w *gzipWriter) Write(p []byte) (int, error) {
	switch {
	case w.z != nil:
		return w.z.Write(p)
	case w.plain:
		return w.ResponseWriter.Write(p)
	}
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if len(w.head)+len(p) < compressMin {
		w.head = append(w.head, p...)
		return len(p), nil
	}
	// Decided: p goes to the chosen writer as it is, not copied into head
	// (an answer arrives in one Write, a searchset of a megabyte and more).
	if err := w.start(); err != nil {
		return 0, err
	}
	return w.Write(p)
}

// start decides to compress (unless the answer already has a content
// coding) and sends what was held.
func (w *gzipWriter) start() error {
	h := w.Header()
	if h.Get("Content-Encoding") != "" || !compressible(h.Get("Content-Type")) ||
		w.status < 200 || w.status == http.StatusNoContent || w.status == http.StatusNotModified {
		return w.sendPlain()
	}
	h.Set("Content-Encoding", "gzip")
	h.Del("Content-Length")
	w.ResponseWriter.WriteHeader(w.status)
	w.z = w.pool.get(w.ResponseWriter)
	_, err := w.z.Write(w.head)
	w.head = nil
	return err
}

// sendPlain sends the held status and bytes as they are.
func (w *gzipWriter) sendPlain() error {
	w.plain = true
	if w.status != 0 {
		w.ResponseWriter.WriteHeader(w.status)
	}
	if len(w.head) == 0 {
		return nil
	}
	_, err := w.ResponseWriter.Write(w.head)
	w.head = nil
	return err
}

// Unwrap lets http.ResponseController reach the connection.
func (w *gzipWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// close ends the answer: the gzip stream's trailer, or the held answer
// sent as it is (smaller than compressMin, or none).
func (w *gzipWriter) close() {
	switch {
	case w.z != nil:
		_ = w.z.Close()
		w.pool.put(w.z)
		w.z = nil
	case !w.plain && (w.status != 0 || len(w.head) > 0):
		_ = w.sendPlain()
	}
}
