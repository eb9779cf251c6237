package store

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/fhirwire"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
)

// NewVersion turns a decoded resource into version v of typ/id, ready for
// Tx.Put: it sets resourceType, id, meta.versionId and meta.lastUpdated in
// doc (values a client sent are replaced), marshals doc once (with
// fhirwire.Marshal: resourceType first) and extracts its search index
// entries from the decoded form. It fails only if doc cannot be
// marshalled.
func NewVersion(typ, id string, v int64, doc map[string]any, now time.Time) (*Resource, []search.Entry, error) {
	return NewVersionAtMost(typ, id, v, doc, now, 0)
}

// NewVersionAtMost is NewVersion of a resource with at most limit index
// entries (0: any number): past it, a *search.TooManyEntries naming typ/id
// (search.ExtractAtMost). The engine makes its clients' resources so
// (search.MaxEntries).
func NewVersionAtMost(typ, id string, v int64, doc map[string]any, now time.Time, limit int) (*Resource, []search.Entry, error) {
	// Its entries before its body: one past the limit is refused without
	// marshalling it, inside the write transaction that puts it.
	Stamp(typ, id, v, doc, now)
	entries, err := search.ExtractAtMost(typ, doc, limit)
	if tm, ok := err.(*search.TooManyEntries); ok {
		tm.ID = id
	}
	if err != nil {
		return nil, nil, err
	}
	body, err := marshalVersion(typ, doc)
	if err != nil {
		return nil, nil, err
	}
	return &Resource{Type: typ, ID: id, Version: v, LastUpdated: now.UTC().Truncate(time.Millisecond), Body: body}, entries, nil
}

// VersionBody is the body NewVersion makes of doc as version v of typ/id
// at now (doc changed as NewVersion changes it), without the index
// entries: the engine renders an update at the current version and
// lastUpdated to tell whether it changes anything (Resource.Body of that
// version is then these bytes). It fails only if doc cannot be
// marshalled.
func VersionBody(typ, id string, v int64, doc map[string]any, now time.Time) ([]byte, error) {
	Stamp(typ, id, v, doc, now)
	return marshalVersion(typ, doc)
}

// Stamp sets resourceType, id, meta.versionId and meta.lastUpdated in doc,
// as NewVersion does (meta.lastUpdated written LastUpdatedLayout).
func Stamp(typ, id string, v int64, doc map[string]any, now time.Time) {
	doc["resourceType"] = typ
	doc["id"] = id
	meta, _ := doc["meta"].(map[string]any)
	if meta == nil {
		meta = map[string]any{}
	}
	meta["versionId"] = strconv.FormatInt(v, 10)
	meta["lastUpdated"] = now.UTC().Format(LastUpdatedLayout)
	doc["meta"] = meta
}

// LastUpdatedLayout is how a stored version's meta.lastUpdated is written:
// milliseconds always, so that the text of every instant from year 0 to
// 9999 has the same length.
const LastUpdatedLayout = "2006-01-02T15:04:05.000Z"

// marshalVersion is the body of doc, stamped.
func marshalVersion(typ string, doc map[string]any) ([]byte, error) {
	body, err := fhirwire.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("marshal %s: %w", typ, err)
	}
	return body, nil
}

// NewID returns a server-assigned resource id: 32 hex digits, the first
// 12 the current time in unix milliseconds and the other 20 random (80
// bits). Ids made later sort after ids made earlier (as UUIDv7's do), so
// the rows of new resources go to the end of the stores' (type, id)
// indexes, a few pages per transaction, instead of to a random page of
// each index for every resource: a transaction then writes, and its
// commit syncs, far fewer pages. An id is still unguessable; it tells when
// the resource was created, as its meta.lastUpdated does.
func NewID() string {
	var b [16]byte
	ms := uint64(time.Now().UnixMilli())
	for i := 5; i >= 0; i-- {
		b[i] = byte(ms)
		ms >>= 8
	}
	_, _ = rand.Read(b[6:])
	return hex.EncodeToString(b[:])
}
