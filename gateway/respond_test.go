package gateway

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// TestReadAll reads bodies whose declared length is right, short, long or
// unknown, in one piece or a byte at a time, and passes read errors on.
func TestReadAll(t *testing.T) {
	body := strings.Repeat("0123456789", 1000)
	broken := errors.New("connection reset")
	for _, tc := range []struct {
		name     string
		r        func() io.Reader
		declared int64
		want     string
		err      error
	}{
		{"exact", func() io.Reader { return strings.NewReader(body) }, int64(len(body)), body, nil},
		{"exact, a byte at a time", func() io.Reader { return iotest.OneByteReader(strings.NewReader(body)) }, int64(len(body)), body, nil},
		{"unknown", func() io.Reader { return strings.NewReader(body) }, -1, body, nil},
		{"declared zero", func() io.Reader { return strings.NewReader(body) }, 0, body, nil},
		{"longer than declared", func() io.Reader { return strings.NewReader(body) }, 10, body, nil},
		{"shorter than declared", func() io.Reader { return strings.NewReader(body) }, int64(2 * len(body)), body, nil},
		{"empty", func() io.Reader { return strings.NewReader("") }, 5, "", nil},
		{"data and EOF together", func() io.Reader { return iotest.DataErrReader(strings.NewReader(body)) }, int64(len(body)), body, nil},
		{"error after some data", func() io.Reader {
			return io.MultiReader(strings.NewReader(body[:100]), iotest.ErrReader(broken))
		}, int64(len(body)), body[:100], broken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := readAll(tc.r(), tc.declared)
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if !bytes.Equal(got, []byte(tc.want)) {
				t.Errorf("read %d bytes, want %d", len(got), len(tc.want))
			}
		})
	}
}
