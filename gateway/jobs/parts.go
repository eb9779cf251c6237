package jobs

import (
	"encoding/json"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// FileParts is one file a job writes as it goes (a report): WriteLine
// buffers its lines, Take hands them over as the file's next part for
// Run.Save, with the checkpoint that says how far the job got.
// Keep it in the checkpoint (its File and Next are exported), so that a
// resumed job goes on with the next part.
type FileParts struct {
	File int `json:"file"`
	Next int `json:"next"` // the number of the next part
	buf  []byte
}

// WriteLine buffers v as one JSON line (an NDJSON report's record).
func (f *FileParts) WriteLine(v any) error {
	line, err := json.Marshal(v)
	if err != nil {
		return err
	}
	f.buf = append(append(f.buf, line...), '\n')
	return nil
}

// WriteText buffers line, without its JSON encoding, as one line (a
// PatientsFile's "Patient/id" and quoted tenant).
func (f *FileParts) WriteText(line string) {
	f.buf = append(append(f.buf, line...), '\n')
}

// Len is how many bytes are buffered.
func (f *FileParts) Len() int { return len(f.buf) }

// Take returns the buffered bytes as the file's next part (none when
// nothing is buffered), counts it in Next and empties the buffer. The
// part's bytes are the buffer's own until the next WriteLine: save them
// first.
func (f *FileParts) Take() []store.JobPart {
	if len(f.buf) == 0 {
		return nil
	}
	p := []store.JobPart{{File: f.File, Part: f.Next, Data: f.buf}}
	f.Next++
	f.buf = f.buf[:0]
	return p
}
