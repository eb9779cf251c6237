package store

import (
	"bytes"
	"compress/flate"
	"errors"
	"fmt"
	"io"
	"sync"

	kflate "github.com/klauspost/compress/flate"
)

// Stored bodies.
//
// A resource's body is stored as its JSON, except an AuditEvent's: that
// is stored packed, a tag byte (packedAuditV1) then the JSON deflated
// against auditDictV1, a fixed dictionary of what every AuditEvent the
// gateway writes says. An AuditEvent of a read is some 2 KB of JSON, most
// of it the same codings every time; packed it is some 150 bytes. Every
// read writes one, on the store's single write lane (SQLite), where a
// commit's cost is its pages: ten AuditEvents took ten pages of the
// resources table unpacked (at just over half a page each, one fits a
// page), one packed (issue 19).
//
// JSON begins with '{', so a body that does not begin with a tag byte is
// JSON: bodies stored before packing, and those of every other type, read
// as they are. A dictionary, once a tag names it, never changes (the
// test pins it): a new one takes a new tag, and UnpackBody keeps reading
// the old ones.
//
// The audit chain hashes the JSON (audit.Link), not the packed form, so
// packing changes nothing an auditor verifies.

// packedAuditV1 tags a body deflated against auditDictV1.
const packedAuditV1 = 0x01

// packLevel is the deflate level of PackBody. PackBody deflates with
// github.com/klauspost/compress/flate and UnpackBody inflates with the
// standard library's: both are RFC 1951 deflate, so any inflater reads
// what either writes (the round-trip tests and FuzzUnpackBody check
// exactly that pair). Packing a read's AuditEvent took 17 µs with the
// standard library's writer at level 3, which clears its 640 KB of hash
// tables at every Reset; klauspost's level 3 takes 9.4 µs for 155 bytes
// against 151 (issue 19: 10% less CPU per audited read at 32 clients).
const packLevel = 3

// auditDictV1 is the dictionary of packedAuditV1: what AuditEvents say
// most, the most common last (deflate codes nearer matches shorter).
// Never change it (see above).
const auditDictV1 = `"action":"U","action":"D","subtype":[{"code":"update","display":"update","system":"http://hl7.org/fhir/restful-interaction"}],"subtype":[{"code":"vread","display":"vread","system":"http://hl7.org/fhir/restful-interaction"}],"subtype":[{"code":"delete","display":"delete","system":"http://hl7.org/fhir/restful-interaction"}],"subtype":[{"code":"history-instance","display":"history-instance","system":"http://hl7.org/fhir/restful-interaction"}],"subtype":[{"code":"batch","display":"batch","system":"http://hl7.org/fhir/restful-interaction"}],"subtype":[{"code":"operation","display":"operation","system":"http://hl7.org/fhir/restful-interaction"}],"subtype":[{"code":"ingest","display":"native record ingest","system":"https://ketamine-gateway.org/fhir/CodeSystem/audit-interaction"}],"type":{"code":"110114","display":"User Authentication","system":"http://dicom.nema.org/resources/ontology/DCM"},"who":{"identifier":{"system":"https://ketamine-gateway.org/fhir/sid/client-id","value":""}},"outcome":"8","outcomeDesc":"HTTP 401 Unauthorized","outcome":"4","outcomeDesc":"HTTP 403 Forbidden","outcomeDesc":"HTTP 404 Not Found","outcomeDesc":"HTTP 422 Unprocessable Entity: rejected: ","outcomeDesc":"HTTP 400 Bad Request: rejected: ","outcomeDesc":"HTTP 201 Created","action":"C","subtype":[{"code":"create","display":"create","system":"http://hl7.org/fhir/restful-interaction"}],"outcomeDesc":"HTTP 200 OK: transaction: entries","subtype":[{"code":"transaction","display":"transaction","system":"http://hl7.org/fhir/restful-interaction"}],"action":"E","outcomeDesc":"HTTP 200 OK: search: matches, 0 included, 0 withheld","subtype":[{"code":"search-type","display":"search-type","system":"http://hl7.org/fhir/restful-interaction"}],` +
	`{"resourceType":"AuditEvent","action":"R","agent":[{"network":{"address":"127.0.0.1","type":"2"},"requestor":true,"type":{"coding":[{"code":"110153","display":"Source Role ID","system":"http://dicom.nema.org/resources/ontology/DCM"}]},"who":{"display":"anonymous (development mode)"}},{"requestor":false,"type":{"coding":[{"code":"110152","display":"Destination Role ID","system":"http://dicom.nema.org/resources/ontology/DCM"}]},"who":{"display":"ketamine-gateway"}}],"entity":[{"role":{"code":"1","display":"Patient","system":"http://terminology.hl7.org/CodeSystem/object-role"},"type":{"code":"1","display":"Person","system":"http://terminology.hl7.org/CodeSystem/audit-entity-type"},"what":{"reference":"Patient/"}},{"role":{"code":"4","display":"Domain Resource","system":"http://terminology.hl7.org/CodeSystem/object-role"},"type":{"code":"2","display":"System Object","system":"http://terminology.hl7.org/CodeSystem/audit-entity-type"},"what":{"reference":"Observation//_history/1"}},{"description":"the request","type":{"code":"2","display":"System Object","system":"http://terminology.hl7.org/CodeSystem/audit-entity-type"},"what":{"identifier":{"system":"https://ketamine-gateway.org/fhir/sid/request-id","value":""}}}],"extension":[{"url":"https://ketamine-gateway.org/fhir/StructureDefinition/trace-id","valueString":""}],"id":"","meta":{"lastUpdated":"2026-01-01T00:00:00.000Z","versionId":"1"},"outcome":"0","outcomeDesc":"HTTP 200 OK","recorded":"2026-01-01T00:00:00.000Z","source":{"observer":{"display":"ketamine-gateway"},"type":[{"code":"4","display":"Application Server","system":"http://terminology.hl7.org/CodeSystem/security-source-type"}]},"subtype":[{"code":"read","display":"read","system":"http://hl7.org/fhir/restful-interaction"}],"type":{"code":"rest","display":"RESTful Operation","system":"http://terminology.hl7.org/CodeSystem/audit-event-type"}}`

var (
	// dictV1 is auditDictV1 as flate takes it, made once: converting the
	// constant at each call copied its 3.6 KB for every body unpacked.
	// flate copies a dictionary into its own window and never writes to
	// it.
	dictV1 = []byte(auditDictV1)

	packers = sync.Pool{New: func() any {
		w, err := kflate.NewWriterDict(nil, packLevel, dictV1)
		if err != nil {
			panic(err) // only for an invalid level
		}
		return &packer{w: w}
	}}
	unpackers sync.Pool // of io.ReadCloser (flate.Resetter)
)

type packer struct {
	w   *kflate.Writer
	buf bytes.Buffer
}

// PackBody is body of a resource of type typ as the stores keep it: an
// AuditEvent's packed (see above), any other's as it is.
func PackBody(typ string, body []byte) []byte {
	if typ != "AuditEvent" || len(body) == 0 {
		return body
	}
	p := packers.Get().(*packer)
	defer packers.Put(p)
	p.buf.Reset()
	p.buf.WriteByte(packedAuditV1)
	p.w.Reset(&p.buf)
	// Writes to a bytes.Buffer do not fail.
	_, _ = p.w.Write(body)
	_ = p.w.Close()
	return bytes.Clone(p.buf.Bytes())
}

// ErrCorruptBody is UnpackBody's error for a packed body that does not
// unpack.
var ErrCorruptBody = errors.New("stored body does not unpack")

// UnpackBody is the JSON of a stored body (see PackBody): an unpacked
// body is returned as it is.
func UnpackBody(stored []byte) ([]byte, error) {
	if len(stored) == 0 || stored[0] != packedAuditV1 {
		return stored, nil
	}
	src := bytes.NewReader(stored[1:])
	r, _ := unpackers.Get().(io.ReadCloser)
	if r == nil {
		r = flate.NewReaderDict(src, dictV1)
	} else if err := r.(flate.Resetter).Reset(src, dictV1); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorruptBody, err)
	}
	// A packed AuditEvent is some fourteen times smaller than its JSON.
	out := make([]byte, 0, 16*len(stored))
	for {
		if len(out) == cap(out) {
			out = append(out, 0)[:len(out)]
		}
		n, err := r.Read(out[len(out):cap(out)])
		out = out[:len(out)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			// The reader keeps its error: do not pool it.
			return nil, fmt.Errorf("%w: %v", ErrCorruptBody, err)
		}
	}
	unpackers.Put(r)
	return out, nil
}

// Pack packs r's body (PackBody) now, for Packed: a caller that packs
// before its write transaction keeps the packing out of the transaction.
// Body must not change after.
func (r *Resource) Pack() { r.packed = PackBody(r.Type, r.Body) }

// Packed is r's body as the stores keep it: what Pack made, else
// PackBody's.
func (r *Resource) Packed() []byte {
	if r.packed != nil || r.Body == nil {
		return r.packed
	}
	return PackBody(r.Type, r.Body)
}
