package fhirwire

import (
	"bytes"
	"testing"
)

// TestBinaryContent: a stored Binary's contentType and decoded data, what
// a read answers in the Binary's own content type (binary.html).
func TestBinaryContent(t *testing.T) {
	for _, tc := range []struct {
		name, body, ct string
		data           []byte
		ok             bool
	}{
		{"text", `{"resourceType":"Binary","id":"b","contentType":"text/plain","data":"aGVsbG8="}`, "text/plain", []byte("hello"), true},
		{"no data", `{"resourceType":"Binary","id":"b","contentType":"application/pdf"}`, "application/pdf", nil, true},
		{"not a Binary", `{"resourceType":"Patient","id":"b"}`, "", nil, false},
		{"data not base64", `{"resourceType":"Binary","contentType":"text/plain","data":"%%"}`, "", nil, false},
		{"not JSON", `{`, "", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ct, data, err := BinaryContent([]byte(tc.body))
			if (err == nil) != tc.ok || ct != tc.ct || !bytes.Equal(data, tc.data) {
				t.Errorf("BinaryContent(%s) = %q, %q, %v; want %q, %q, ok %v", tc.body, ct, data, err, tc.ct, tc.data, tc.ok)
			}
		})
	}
}
