package gateway

import (
	"bytes"
	"io"
	"net"
	"strings"
	"testing"
)

// pieces is a connection whose reads return data in pieces of size n.
type pieces struct {
	net.Conn
	data []byte
	n    int
}

func (p *pieces) Read(b []byte) (int, error) {
	if len(p.data) == 0 {
		return 0, io.EOF
	}
	k := min(p.n, len(p.data), len(b))
	copy(b, p.data[:k])
	p.data = p.data[k:]
	return k, nil
}

// TestFramingWatcherChangesNoByte: whatever the pieces the bytes arrive in,
// the watcher hands on exactly the bytes it read, but for the renamed
// Transfer-Encoding of a head that also has Content-Length.
func TestFramingWatcherChangesNoByte(t *testing.T) {
	body := strings.Repeat("x", 100<<10)
	sized := "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 102400\r\n\r\n" + body
	chunked := "POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
		"5\r\nhello\r\n19000;name=v\r\n" + body + "\r\n0\r\nTrailer: t\r\n\r\n"
	get := "GET /c HTTP/1.1\r\nHost: x\r\n\r\n"
	bare := "GET /d HTTP/1.1\nHost: x\n\n"
	// A body that looks like a head with both fields must not be taken
	// for one: the watcher knows it is a body.
	tricky := "POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 66\r\n\r\n" +
		"GET /f HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
	both := "POST /g HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
	tests := []struct {
		name, in, want string
	}{
		{"pipelined", sized + chunked + get + bare + chunked + sized, sized + chunked + get + bare + chunked + sized},
		{"a body that looks like a head", tricky + get, tricky + get},
		{"both", get + both, get + strings.Replace(both, "Transfer-Encoding", framingHeader, 1)},
	}
	if n := len(tricky) - strings.Index(tricky, "\r\n\r\n") - 4; n != 66 {
		t.Fatalf("tricky body is %d bytes", n)
	}
	for _, tc := range tests {
		for _, n := range []int{1, 2, 3, 7, 100, 4096, 1 << 20} {
			fc := &framingConn{Conn: &pieces{data: []byte(tc.in), n: n}}
			got, err := io.ReadAll(fc)
			if err != nil {
				t.Fatalf("%s in pieces of %d: %v", tc.name, n, err)
			}
			if !bytes.Equal(got, []byte(tc.want)) {
				t.Errorf("%s in pieces of %d: the watcher changed the stream (%d bytes in, %d out)", tc.name, n, len(tc.in), len(got))
			}
		}
	}
}

// FuzzFramingWatcher feeds any bytes, in pieces of any size, through the
// watcher: it never panics, hands on as many bytes as it read, and changes
// none but a Transfer-Encoding field name it renames to framingHeader.
func FuzzFramingWatcher(f *testing.F) {
	f.Add([]byte("POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"), uint8(3))
	f.Add([]byte("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nff;x\r\n"+strings.Repeat("y", 255)+"\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n"), uint8(1))
	f.Add([]byte("GET / HTTP/1.1\nContent-Length: 2\n\nabGET / HTTP/1.0\r\nUpgrade: x\r\n\r\n"), uint8(200))
	f.Fuzz(func(t *testing.T, in []byte, n uint8) {
		if len(in) > maxHeadBytes {
			// A head this long may be replaced by the one the edge refuses
			// (refuseHead): TestRequestHeadTooLong holds that.
			t.Skip()
		}
		fc := &framingConn{Conn: &pieces{data: bytes.Clone(in), n: int(n) + 1}}
		out, err := io.ReadAll(fc)
		if err != nil {
			t.Fatal(err)
		}
		if len(out) != len(in) {
			t.Fatalf("%d bytes in, %d out", len(in), len(out))
		}
		for i := 0; i < len(in); i++ {
			if in[i] == out[i] {
				continue
			}
			start := bytes.LastIndex(out[:min(i+1, len(out))], []byte(framingHeader[:1]))
			for start >= 0 && !(start+len(framingHeader) > i && bytes.HasPrefix(out[start:], []byte(framingHeader))) {
				start = bytes.LastIndex(out[:start], []byte(framingHeader[:1]))
			}
			if start < 0 || !bytes.EqualFold(in[start:start+len(framingHeader)], []byte("Transfer-Encoding")) {
				t.Fatalf("byte %d changed, not within a renamed Transfer-Encoding", i)
			}
			i = start + len(framingHeader) - 1
		}
	})
}
