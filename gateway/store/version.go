package store

import (
	"crypto/rand"
	"fmt"
	"strconv"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/fhirwire"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
)

// NewVersion turns a decoded resource into version v of typ/id, ready for
// Tx.Put: it sets resourceType, id, meta.versionId and meta.lastUpdated in
// doc (values a client sent are replaced), marshals doc once and extracts
// its search index entries from the decoded form. It fails only if doc
// cannot be marshalled.
func NewVersion(typ, id string, v int64, doc map[string]any, now time.Time) (*Resource, []search.Entry, error) {
	doc["resourceType"] = typ
	doc["id"] = id
	meta, _ := doc["meta"].(map[string]any)
	if meta == nil {
		meta = map[string]any{}
	}
	meta["versionId"] = strconv.FormatInt(v, 10)
	meta["lastUpdated"] = now.UTC().Format("2006-01-02T15:04:05.000Z")
	doc["meta"] = meta
	body, err := fhirwire.Marshal(doc)
	if err != nil {
		return nil, nil, fmt.Errorf("marshal %s: %w", typ, err)
	}
	return &Resource{Type: typ, ID: id, Version: v, LastUpdated: now.UTC().Truncate(time.Millisecond), Body: body},
		search.Extract(typ, doc), nil
}

// NewID returns a server-assigned resource id: 32 random hex digits.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%x", b)
}
