package gateway

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"strconv"
)

// Request framing. A request carrying both Content-Length and
// Transfer-Encoding is how request smuggling starts: a proxy in front of
// the gateway and the gateway could disagree on where the body ends.
// net/http follows RFC 9112 (Transfer-Encoding wins) and drops
// Content-Length before any handler runs, so the edge cannot see the
// conflict in the request it is given. Listener therefore watches the
// bytes of every HTTP/1 request head on the connection; when a head has
// both fields it renames Transfer-Encoding to framingHeader (a field of the
// same length, so nothing else moves), which the middleware refuses with
// 400 and a closed connection. The bodies of other requests are followed
// (by Content-Length or chunk by chunk) only to find where the next head
// starts; no byte is changed, and anything the watcher does not understand
// makes it stand aside and leave the connection to net/http.

// framingHeader replaces Transfer-Encoding in a request head that also has
// Content-Length. It has the same length, so the head keeps its size.
const framingHeader = "X-Kg-Framing-Both"

// maxHeadBytes bounds the head the watcher holds back: the server's 64 KiB
// of headers and net/http's 4 KiB of slack. A longer head, which net/http
// would refuse with a plain-text 431 no FHIR client reads, is replaced by
// a short one naming what was too long (headTooLongHeader: "target" when
// the request line alone is, "fields" otherwise), which the edge refuses
// with an OperationOutcome (414 URI Too Long, or 431), saying to search
// with POST; what follows on the connection is dropped, and it is closed
// after that answer (p45 F1).
const maxHeadBytes = 68 << 10

// headTooLongHeader marks the head that replaces one too long (see
// maxHeadBytes). A client sending it is refused the same way.
const headTooLongHeader = "X-Kg-Head-Too-Long"

// Listener returns ln whose connections have their request framing checked
// (see framingHeader). With tlsConfig, it also terminates TLS: the
// connections then speak HTTP/1.1 only (HTTP/2 has its own framing, but
// net/http offers it only on connections it sees as *tls.Conn), so the
// http.Server must have TLSNextProto set to an empty map and ConnContext
// set to ConnContext, which lets the edge report the TLS state in
// Request.TLS.
func Listener(ln net.Listener, tlsConfig *tls.Config) net.Listener {
	if tlsConfig != nil {
		tlsConfig = tlsConfig.Clone()
		tlsConfig.NextProtos = []string{"http/1.1"}
	}
	return &framingListener{Listener: ln, tls: tlsConfig}
}

type framingListener struct {
	net.Listener
	tls *tls.Config
}

func (l *framingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	fc := &framingConn{Conn: c}
	if l.tls != nil {
		fc.tlsConn = tls.Server(c, l.tls)
		fc.Conn = fc.tlsConn
	}
	return fc, nil
}

// connKey is the context key of the connection (ConnContext).
type connKey struct{}

// ConnContext is the http.Server's ConnContext for connections from
// Listener: it keeps the connection in the context of its requests, so
// the edge can fill in Request.TLS for a connection it terminated.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, c)
}

// requestTLS fills in r.TLS for a request on a TLS connection of Listener.
func requestTLS(r *http.Request) {
	if r.TLS != nil {
		return
	}
	if fc, ok := r.Context().Value(connKey{}).(*framingConn); ok && fc.tlsConn != nil {
		st := fc.tlsConn.ConnectionState()
		r.TLS = &st
	}
}

// The watcher's states.
const (
	inHead      = iota // collecting a request head
	inBody             // passing `remaining` bytes of a Content-Length body
	inChunkSize        // reading a chunk-size line
	inChunkData        // passing `remaining` bytes of chunk data and its CRLF
	inTrailer          // reading trailer lines up to the empty one
	standAside         // passing everything unread and unwatched
	headRefused        // a head too long was replaced: the rest is dropped
)

// framingConn watches the requests read from its connection. Read is
// called by one goroutine at a time (net/http's connection reader).
type framingConn struct {
	net.Conn
	tlsConn *tls.Conn // set when the listener terminates TLS

	state     int
	remaining int64
	head      []byte        // the head being collected (held back until complete)
	line      []byte        // a chunk-size or trailer line being collected
	ready     []byte        // watched bytes not yet handed to the reader
	readErr   error         // an error to return (once) when ready is drained
	buf       [4 << 10]byte // as net/http's own read buffer
}

// CloseWrite half-closes the connection when the one below can, as
// net/http does before closing a connection it refused a request on (so
// the client reads the answer before the close).
func (c *framingConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

func (c *framingConn) Read(p []byte) (int, error) {
	for {
		if len(c.ready) > 0 {
			n := copy(p, c.ready)
			c.ready = c.ready[n:]
			return n, nil
		}
		if err := c.readErr; err != nil {
			c.readErr = nil // returned once, after the data before it
			return 0, err
		}
		switch c.state {
		case standAside:
			return c.Conn.Read(p)
		case headRefused:
			// The rest of the refused head is read and dropped until the
			// connection ends: it serves only the refusal, closed after it.
			// (An end of file at once would make net/http cancel the
			// refusal's own request, as a client gone.)
			for {
				if _, err := c.Conn.Read(c.buf[:]); err != nil {
					return 0, err
				}
			}
		}
		n, err := c.Conn.Read(c.buf[:])
		c.feed(c.buf[:n])
		if err == nil {
			continue
		}
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			// The connection ends: what is held back goes to the reader as
			// it is, and net/http decides what a truncated head means. (A
			// timeout is not the end: net/http sets a deadline in the past
			// to stop its background read, and reads on afterwards.)
			c.ready = append(c.ready, c.head...)
			c.head = nil
			c.state = standAside
		}
		if len(c.ready) == 0 {
			return 0, err
		}
		c.readErr = err
	}
}

// feed watches data and moves what may be handed on to c.ready.
func (c *framingConn) feed(data []byte) {
	for len(data) > 0 {
		switch c.state {
		case inHead:
			data = c.feedHead(data)
		case inBody, inChunkData:
			n := int64(len(data))
			if n > c.remaining {
				n = c.remaining
			}
			c.ready = append(c.ready, data[:n]...)
			data = data[n:]
			if c.remaining -= n; c.remaining == 0 {
				if c.state == inBody {
					c.state = inHead
				} else {
					c.state = inChunkSize
				}
			}
		case inChunkSize, inTrailer:
			i := bytes.IndexByte(data, '\n')
			if i < 0 {
				c.line = append(c.line, data...)
				c.ready = append(c.ready, data...)
				if len(c.line) > 4096 {
					c.state = standAside
				}
				return
			}
			c.line = append(c.line, data[:i+1]...)
			c.ready = append(c.ready, data[:i+1]...)
			data = data[i+1:]
			c.endLine()
			c.line = c.line[:0]
		default: // standAside
			c.ready = append(c.ready, data...)
			return
		}
	}
}

// endLine handles a complete chunk-size or trailer line.
func (c *framingConn) endLine() {
	line := bytes.TrimRight(c.line, "\r\n")
	if c.state == inTrailer {
		if len(line) == 0 {
			c.state = inHead
		}
		return
	}
	if i := bytes.IndexByte(line, ';'); i >= 0 {
		line = line[:i]
	}
	size, err := strconv.ParseInt(string(bytes.TrimSpace(line)), 16, 64)
	switch {
	case err != nil || size < 0 || size > 1<<40:
		c.state = standAside // net/http refuses it; nothing more to watch
	case size == 0:
		c.state = inTrailer
	default:
		c.state, c.remaining = inChunkData, size+2 // the data and its CRLF
	}
}

// feedHead collects a request head; once it is complete it is checked and
// handed on. Returns the data after the head.
func (c *framingConn) feedHead(data []byte) []byte {
	start := max(len(c.head)-3, 0)
	c.head = append(c.head, data...)
	end := headEnd(c.head, start)
	if end < 0 && len(c.head) > maxHeadBytes || end > maxHeadBytes {
		c.refuseHead()
		return nil
	}
	if end < 0 {
		return nil
	}
	rest := c.head[end:]
	head := c.head[:end]
	c.checkHead(head)
	c.ready = append(c.ready, head...)
	out := append([]byte(nil), rest...)
	c.head = c.head[:0]
	return out
}

// refuseHead replaces the head being collected, too long, by one the edge
// refuses (see maxHeadBytes); what follows on the connection is dropped.
func (c *framingConn) refuseHead() {
	what := "fields"
	if bytes.IndexByte(c.head, '\n') < 0 {
		what = "target" // the request line has not ended
	}
	host := "gateway"
	if a := c.Conn.LocalAddr(); a != nil {
		host = a.String()
	}
	c.ready = append(c.ready, "GET /request-head-too-long HTTP/1.1\r\nHost: "+host+"\r\n"+
		headTooLongHeader+": "+what+"\r\nConnection: close\r\n\r\n"...)
	c.head = nil
	c.state = headRefused
}

// headEnd returns the index just after the empty line that ends a head
// (CRLF CRLF, or bare LFs, which net/http accepts), searching from start,
// or -1.
func headEnd(b []byte, start int) int {
	for i := start; i < len(b); i++ {
		if b[i] != '\n' {
			continue
		}
		switch {
		case i+1 < len(b) && b[i+1] == '\n':
			return i + 2
		case i+2 < len(b) && b[i+1] == '\r' && b[i+2] == '\n':
			return i + 3
		}
	}
	return -1
}

// checkHead looks at the framing fields of a complete head, marks a
// conflict in place, and sets the state for what follows it.
func (c *framingConn) checkHead(head []byte) {
	var te, cl []byte // the first field of each, as found in head
	teIndex := -1
	upgrade := false
	lines := bytes.Split(head, []byte("\n"))
	offset := len(lines[0]) + 1
	if f := bytes.Fields(lines[0]); len(f) > 0 && bytes.Equal(f[0], []byte("CONNECT")) {
		upgrade = true
	}
	for _, l := range lines[1:] {
		name, value, ok := bytes.Cut(bytes.TrimRight(l, "\r"), []byte(":"))
		switch {
		case !ok:
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			if te == nil {
				te, teIndex = bytes.TrimSpace(value), offset
			}
		case bytes.EqualFold(name, []byte("Content-Length")):
			if cl == nil {
				cl = bytes.TrimSpace(value)
			}
		case bytes.EqualFold(name, []byte("Upgrade")):
			upgrade = true
		}
		offset += len(l) + 1
	}
	switch {
	case te != nil && cl != nil:
		copy(head[teIndex:], framingHeader)
		c.state = standAside // refused and closed: nothing more to watch
	case upgrade:
		c.state = standAside // another protocol may follow
	case te != nil:
		if !bytes.EqualFold(te, []byte("chunked")) {
			c.state = standAside // net/http refuses anything but chunked
			return
		}
		c.state = inChunkSize
	case cl != nil:
		n, err := strconv.ParseInt(string(cl), 10, 64)
		switch {
		case err != nil || n < 0:
			c.state = standAside // net/http refuses it
		case n == 0:
			c.state = inHead
		default:
			c.state, c.remaining = inBody, n
		}
	default:
		c.state = inHead
	}
}
