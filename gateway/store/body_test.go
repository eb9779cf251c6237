package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/auditevent-read.packed-v1 (only with a new tag: see body.go)")

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestPackBody: an AuditEvent packs to a tenth of its JSON or less and
// unpacks to the same bytes; any other type, an empty body and a body
// stored before packing are kept as they are.
func TestPackBody(t *testing.T) {
	for _, tc := range []struct {
		name    string
		typ     string
		body    []byte
		packed  bool
		atMost8 bool // packed to at most an eighth
	}{
		{"a read's AuditEvent", "AuditEvent", readTestdata(t, "auditevent-read.json"), true, true},
		{"a search's AuditEvent", "AuditEvent", readTestdata(t, "auditevent-search.json"), true, true},
		{"a rejected ingest's AuditEvent", "AuditEvent", readTestdata(t, "auditevent-rejected.json"), true, false},
		{"an AuditEvent unlike the dictionary", "AuditEvent", []byte(`{"resourceType":"AuditEvent","id":"x","recorded":"2020-01-01T00:00:00Z","purposeOfEvent":[{"text":"ünïcode ✓"}]}`), true, false},
		{"an AuditEvent larger than deflate's window", "AuditEvent", bigAuditEvent(), true, false},
		{"an Observation", "Observation", []byte(`{"resourceType":"Observation","id":"o","status":"final"}`), false, false},
		{"an empty AuditEvent body", "AuditEvent", []byte{}, false, false},
		{"no body", "AuditEvent", nil, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stored := PackBody(tc.typ, tc.body)
			if got := len(stored) > 0 && stored[0] == packedAuditV1; got != tc.packed {
				t.Fatalf("packed = %v, want %v (%d bytes)", got, tc.packed, len(stored))
			}
			if !tc.packed && !bytes.Equal(stored, tc.body) {
				t.Fatalf("PackBody changed a body it does not pack")
			}
			if tc.atMost8 && len(stored)*8 > len(tc.body) {
				t.Errorf("packed %d bytes to %d: want at most an eighth", len(tc.body), len(stored))
			}
			got, err := UnpackBody(stored)
			if err != nil || !bytes.Equal(got, tc.body) {
				t.Fatalf("UnpackBody = %q, %v; want the body back", got, err)
			}
			t.Logf("%d bytes stored as %d", len(tc.body), len(stored))
		})
	}
}

// bigAuditEvent is an AuditEvent of some 300 KB, beyond deflate's 32 KB
// window (and the dictionary's reach), with matches both near and far and
// bytes that do not repeat.
func bigAuditEvent() []byte {
	var b bytes.Buffer
	b.WriteString(`{"resourceType":"AuditEvent","entity":[`)
	for i := range 4000 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"what":{"reference":"Observation/%x"},"description":"%d"}`, uint64(i)*0x9e3779b97f4a7c15, i*i)
	}
	b.WriteString(`]}`)
	return b.Bytes()
}

// TestUnpackBodyCorrupt: a packed body cut short or with a tag and no
// stream is ErrCorruptBody, not a panic and not bytes passed off as JSON;
// the unpacker that failed is not reused.
func TestUnpackBodyCorrupt(t *testing.T) {
	body := readTestdata(t, "auditevent-read.json")
	stored := PackBody("AuditEvent", body)
	for _, bad := range [][]byte{
		{packedAuditV1},
		stored[:len(stored)/2],
		stored[:len(stored)-1],
		append([]byte{packedAuditV1}, 0xff, 0xff, 0xff, 0xff),
	} {
		if got, err := UnpackBody(bad); !errors.Is(err, ErrCorruptBody) {
			t.Errorf("UnpackBody(% x…) = %.20q, %v; want ErrCorruptBody", bad[:min(len(bad), 4)], got, err)
		}
		// The next unpack, from the pool, is not affected.
		if got, err := UnpackBody(stored); err != nil || !bytes.Equal(got, body) {
			t.Fatalf("UnpackBody after a corrupt body = %.20q, %v", got, err)
		}
	}
}

// TestAuditDictV1Pinned: packedAuditV1's dictionary is the one bodies were
// packed with. Changing it makes every stored AuditEvent unreadable: add
// a new tag and dictionary instead (see body.go).
func TestAuditDictV1Pinned(t *testing.T) {
	sum := sha256.Sum256(dictV1) // the bytes flate is given
	if got, want := hex.EncodeToString(sum[:]), "54cd84e9a5bbd7dd6988460c938b3f73dd68388a8a3220f62c6f84f0bcaff11b"; got != want {
		t.Fatalf("auditDictV1 changed: sha256 %s, want %s", got, want)
	}
	// A body packed by the first version of the code still unpacks.
	path := filepath.Join("testdata", "auditevent-read.packed-v1")
	body := readTestdata(t, "auditevent-read.json")
	if *update {
		if err := os.WriteFile(path, PackBody("AuditEvent", body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := UnpackBody(readTestdata(t, "auditevent-read.packed-v1"))
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("UnpackBody(%s) = %.40q, %v", path, got, err)
	}
}

// TestResourcePack: Packed packs a body itself, or returns what Pack made.
func TestResourcePack(t *testing.T) {
	body := readTestdata(t, "auditevent-read.json")
	r := &Resource{Type: "AuditEvent", Body: body}
	lazy := r.Packed()
	r.Pack()
	if !bytes.Equal(r.Packed(), lazy) || &r.Packed()[0] != &r.packed[0] {
		t.Errorf("Packed after Pack is not what Pack made")
	}
	if (&Resource{Type: "AuditEvent"}).Packed() != nil {
		t.Errorf("Packed of a deletion is not nil")
	}
}

// FuzzUnpackBody: any stored bytes unpack or fail with ErrCorruptBody,
// never panic; any AuditEvent body packs and unpacks to itself.
func FuzzUnpackBody(f *testing.F) {
	body := readTestdata(f, "auditevent-read.json")
	f.Add(body)
	f.Add(PackBody("AuditEvent", body))
	f.Add([]byte{packedAuditV1, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, err := UnpackBody(b); err != nil && !errors.Is(err, ErrCorruptBody) {
			t.Fatalf("UnpackBody: %v", err)
		}
		got, err := UnpackBody(PackBody("AuditEvent", b))
		if err != nil || !bytes.Equal(got, b) {
			t.Fatalf("round trip = %q, %v", got, err)
		}
	})
}

// BenchmarkPackBody and BenchmarkUnpackBody: a read's AuditEvent, packed
// in the request's goroutine and unpacked by every read of it.
func BenchmarkPackBody(b *testing.B) {
	body := readTestdata(b, "auditevent-read.json")
	b.ReportAllocs()
	for b.Loop() {
		PackBody("AuditEvent", body)
	}
}

func BenchmarkUnpackBody(b *testing.B) {
	stored := PackBody("AuditEvent", readTestdata(b, "auditevent-read.json"))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := UnpackBody(stored); err != nil {
			b.Fatal(err)
		}
	}
}
