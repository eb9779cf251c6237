package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// seed stores the gateway's own conformance resources (its CodeSystems and
// the AdverseEvent identifier SearchParameter) so they are readable and
// searchable like any resource. A resource is rewritten only when its
// content changed, so restarts add no versions.
func (s *Server) seed(ctx context.Context) error {
	var docs []any
	for _, cs := range CodeSystems() {
		docs = append(docs, cs)
	}
	for _, sp := range search.GatewaySearchParameters() {
		docs = append(docs, sp)
	}
	for _, d := range docs {
		raw, err := json.Marshal(d)
		if err != nil {
			return err
		}
		doc, err := decodeJSON(raw)
		if err != nil {
			return err
		}
		typ, _ := doc["resourceType"].(string)
		id, _ := doc["id"].(string)
		err = s.write(ctx, func(tx store.Tx) error {
			cur, err := tx.Read(typ, id)
			switch {
			case err == nil && sameContent(cur.Body, raw):
				return nil
			case err == nil, errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrGone):
			default:
				return err
			}
			_, err = s.update(tx, typ, id, doc, "", s.now())
			return err
		})
		if err != nil {
			return fmt.Errorf("seed %s/%s: %w", typ, id, err)
		}
	}
	return nil
}

// sameContent compares two resources ignoring meta.
func sameContent(a, b []byte) bool {
	strip := func(x []byte) []byte {
		var m map[string]any
		if json.Unmarshal(x, &m) != nil {
			return nil
		}
		delete(m, "meta")
		out, _ := json.Marshal(m)
		return out
	}
	return bytes.Equal(strip(a), strip(b))
}
