package bulk

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
)

// Record is one native record of an import's input and where it came from.
type Record struct {
	// Line is its line in an NDJSON input (from 1); File its file in a
	// directory input.
	Line int64
	File string
	Body []byte
	// Err is why the record could not be read (too long): it is reported
	// as rejected, like a record that breaks a rule.
	Err error
}

// Source yields an import's records in order; Next returns io.EOF after
// the last.
type Source interface {
	Next() (Record, error)
}

// errTooLong rejects a line or file beyond the record size limit.
func errTooLong(limit int) error {
	return outcome.New(outcome.TooLarge, "too-costly", "import-record-too-large",
		fmt.Sprintf("the record is longer than %d bytes, the limit of one record", limit))
}

// NDJSON reads one record per line (blank lines are skipped but counted),
// each at most maxLine bytes: a longer line is one rejected record, and
// reading goes on after it. Memory stays within maxLine.
func NDJSON(r io.Reader, maxLine int) Source {
	return &ndjson{r: bufio.NewReaderSize(r, 64<<10), max: maxLine}
}

type ndjson struct {
	r    *bufio.Reader
	max  int
	line int64
	buf  []byte
}

func (n *ndjson) Next() (Record, error) {
	for {
		n.buf = n.buf[:0]
		long := false
		n.line++
		for {
			chunk, err := n.r.ReadSlice('\n')
			if !long {
				if len(n.buf)+len(chunk) > n.max+1 { // +1: the newline
					long = true
					n.buf = n.buf[:0]
				} else {
					n.buf = append(n.buf, chunk...)
				}
			}
			if errors.Is(err, bufio.ErrBufferFull) {
				continue
			}
			if err == io.EOF {
				if len(n.buf) == 0 && !long && len(chunk) == 0 {
					return Record{}, io.EOF
				}
				break
			}
			if err != nil {
				return Record{}, err
			}
			break
		}
		if long {
			return Record{Line: n.line, Err: errTooLong(n.max)}, nil
		}
		body := bytes.TrimSpace(n.buf)
		if len(body) == 0 {
			continue
		}
		return Record{Line: n.line, Body: bytes.Clone(body)}, nil
	}
}

// CountLines counts the records of NDJSON input (its non-blank lines),
// for a progress total.
func CountLines(r io.Reader) (int64, error) {
	var c lineCounter
	_, err := io.Copy(&c, r)
	return c.Lines(), err
}

// lineCounter counts the non-blank lines of NDJSON written to it.
type lineCounter struct {
	n        int64
	nonBlank bool // the current line has a non-blank byte
}

// Write counts p's lines; it never fails.
func (c *lineCounter) Write(p []byte) (int, error) {
	for _, b := range p {
		switch b {
		case '\n':
			if c.nonBlank {
				c.n++
			}
			c.nonBlank = false
		case ' ', '\t', '\r':
		default:
			c.nonBlank = true
		}
	}
	return len(p), nil
}

// Lines is the count so far, a last line without its newline included.
func (c *lineCounter) Lines() int64 {
	if c.nonBlank {
		return c.n + 1
	}
	return c.n
}

// Dir reads the *.json files of a directory, in name order, one record
// each (at most maxFile bytes: a larger file is one rejected record).
func Dir(dir string, maxFile int) (Source, int64, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, 0, err
	}
	var names []string
	for _, e := range entries {
		if !e.IsDir() && strings.EqualFold(filepath.Ext(e.Name()), ".json") {
			names = append(names, e.Name())
		}
	}
	slices.Sort(names)
	return &dirSource{dir: dir, names: names, max: maxFile}, int64(len(names)), nil
}

type dirSource struct {
	dir   string
	names []string
	max   int
}

func (d *dirSource) Next() (Record, error) {
	if len(d.names) == 0 {
		return Record{}, io.EOF
	}
	name := d.names[0]
	d.names = d.names[1:]
	f, err := os.Open(filepath.Join(d.dir, name))
	if err != nil {
		return Record{}, err
	}
	defer f.Close()
	body, err := io.ReadAll(io.LimitReader(f, int64(d.max)+1))
	if err != nil {
		return Record{}, err
	}
	if len(body) > d.max {
		return Record{File: name, Err: errTooLong(d.max)}, nil
	}
	return Record{File: name, Body: body}, nil
}

// Shape says what the start of an import's input, head (its first bytes),
// looks like when it is not NDJSON: "array" when its first non-blank
// character opens a JSON array (a native record is always an object, so
// such input is an array of records, on one line or several), "object"
// when its first line is "{" alone (a pretty-printed record), else "".
func Shape(head []byte) string {
	line, _, _ := bytes.Cut(head, []byte("\n"))
	if string(bytes.TrimSpace(line)) == "{" {
		return "object"
	}
	if bytes.HasPrefix(bytes.TrimLeft(head, " \t\r\n\ufeff"), []byte("[")) {
		return "array"
	}
	return ""
}
