package gateway

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// TestReadSized: a body reads whole whatever its Content-Length says
// (exact, shorter, longer, unknown), in one buffer when it is exact, and
// a read error comes back.
func TestReadSized(t *testing.T) {
	body := strings.Repeat("0123456789", 1000)
	boom := errors.New("boom")
	for _, tc := range []struct {
		name string
		r    io.Reader
		n    int64
		want string
		err  error
	}{
		{"exact", strings.NewReader(body), int64(len(body)), body, nil},
		{"exact, one byte a read", iotest.OneByteReader(strings.NewReader(body)), int64(len(body)), body, nil},
		{"longer than announced", strings.NewReader(body), 10, body, nil},
		{"shorter than announced", strings.NewReader(body[:5]), int64(len(body)), body[:5], nil},
		{"unknown length", strings.NewReader(body), -1, body, nil},
		{"empty", strings.NewReader(""), 0, "", nil},
		{"read error", io.MultiReader(strings.NewReader(body[:100]), iotest.ErrReader(boom)), int64(len(body)), body[:100], boom},
		{"error with the last bytes", iotest.DataErrReader(strings.NewReader(body)), int64(len(body)), body, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := readSized(tc.r, tc.n)
			if !errors.Is(err, tc.err) || !bytes.Equal(got, []byte(tc.want)) {
				t.Errorf("readSized = %d bytes, %v; want %d bytes, %v", len(got), err, len(tc.want), tc.err)
			}
		})
	}
	got, err := readSized(strings.NewReader(body), int64(len(body)))
	if err != nil || cap(got) != len(body)+bytes.MinRead {
		t.Errorf("exact Content-Length: cap %d, %v; want one buffer of %d", cap(got), err, len(body)+bytes.MinRead)
	}
	// A client announcing more than readAhead and sending nothing holds
	// readAhead, not what it announced; a body that large still reads
	// whole.
	if got, err := readSized(strings.NewReader(""), 16<<20); err != nil || len(got) != 0 || cap(got) > readAhead+bytes.MinRead {
		t.Errorf("16 MiB announced, nothing sent: %d bytes in a buffer of %d, %v; want at most %d taken", len(got), cap(got), err, readAhead+bytes.MinRead)
	}
	large := strings.Repeat("x", readAhead+12345)
	if got, err := readSized(strings.NewReader(large), int64(len(large))); err != nil || string(got) != large {
		t.Errorf("a body over readAhead = %d bytes, %v; want %d", len(got), err, len(large))
	}
}
