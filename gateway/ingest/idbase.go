package ingest

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/audit"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/fhirwire"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// The identifier base a database's records were mapped with.
//
// Every identifier the mappings mint (patients, records, resources) is in
// the deployment's identifier base, and so is the conditional criteria
// that find a stored record's resources again. A program that maps a
// database's records with another base (a command run without the
// serving gateway's --identifier-base) finds none of them: replay would
// add every patient and resource a second time, lineage would find no
// record. So the programs read the base back from the database (the
// Provenance of its first native record names the record in it) and use
// it, or refuse a base configured otherwise (ResolveIdentifierBase).

// StoredIdentifierBase is the identifier base of the native records st
// holds: the record system its first ledger entry's Provenance names,
// less "/<source>/<kind>-record". "" when it holds no record, or when
// that Provenance is missing or names no such system (a database an
// older build wrote); an error only when the database cannot be read.
func StoredIdentifierBase(ctx context.Context, st store.Store) (string, error) {
	ls, err := st.LedgerEntries(ctx, store.LedgerQuery{Tenant: search.AllTenants, Limit: 1})
	if err != nil || len(ls) == 0 {
		return "", err
	}
	l := ls[0]
	r, err := st.Read(ctx, "Provenance", audit.RecordProvenanceID(l.Tenant, l.RecordSource(), l.Kind, l.RecordID, l.Version))
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrGone) || (err == nil && r.Deleted) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	doc, err := fhirwire.Decode(r.Body)
	if err != nil {
		return "", nil
	}
	suffix := "/" + l.RecordSource() + "/" + l.Kind + "-record"
	entities, _ := doc["entity"].([]any)
	for _, e := range entities {
		em, _ := e.(map[string]any)
		what, _ := em["what"].(map[string]any)
		id, _ := what["identifier"].(map[string]any)
		sys, _ := id["system"].(string)
		if v, _ := id["value"].(string); v == l.RecordID && strings.HasSuffix(sys, suffix) && len(sys) > len(suffix) {
			return strings.TrimSuffix(sys, suffix), nil
		}
	}
	return "", nil
}

// BaseMismatchError is ResolveIdentifierBase's refusal of a configured
// base other than the database's.
type BaseMismatchError struct{ Stored, Configured string }

func (e *BaseMismatchError) Error() string {
	return fmt.Sprintf("this database's records were mapped with the identifier base %s, not %s: "+
		"run with --identifier-base %s (or GATEWAY_IDENTIFIER_BASE), or leave it unset to use the database's; "+
		"mapping them with another base would store every patient and resource a second time", e.Stored, e.Configured, e.Stored)
}

// BaseInvalidError is ResolveIdentifierBase's refusal of a configured
// base that is not one (CheckIdentifierBase).
type BaseInvalidError struct{ Err error }

func (e *BaseInvalidError) Error() string { return e.Err.Error() }

// CheckIdentifierBase reports why base cannot be the deployment's
// identifier base (nil when it can, "" included: the default). Beyond
// mapping.CheckIdentifierBase (an absolute http(s) URL, no query or
// fragment), the base must come out of a query string as it went in: the
// mappings write it unescaped into conditional criteria
// ("identifier=<base>/<source>/patient|<id>"), where %xx is decoded, + is
// a space, & and ; separate parameters, so a base with any of them makes
// criteria that never find the resource they name (every real ingest was
// refused conditional-criteria-unmatched while the dry run passed). A
// base with user information (user:password@) is refused too: it would
// be in every identifier system sent out.
func CheckIdentifierBase(base string) error {
	if err := mapping.CheckIdentifierBase(base); err != nil {
		return err
	}
	if base == "" {
		return nil
	}
	const notAllowed = "%&+;="
	if u, err := url.Parse(base); err == nil && u.User != nil {
		return fmt.Errorf("the identifier base must not contain user information (user:password@): it would be in every identifier system the gateway sends")
	}
	criteria := "identifier=" + base + "/source/patient|id"
	v, err := url.ParseQuery(criteria)
	if strings.ContainsAny(base, notAllowed) || err != nil || len(v) != 1 || v.Get("identifier") != base+"/source/patient|id" {
		return fmt.Errorf("the identifier base must not contain any of %s (nor anything else a URL query escapes): "+
			"it is written as it is into the conditional criteria of every Bundle, where they change what the criteria name", notAllowed)
	}
	return nil
}

// ResolveIdentifierBase is the identifier base to map st's records with:
// configured when set ("" when it is the default), else the database's
// own (StoredIdentifierBase). A configured base other than the
// database's is a *BaseMismatchError, one that is not a base a
// *BaseInvalidError.
func ResolveIdentifierBase(ctx context.Context, st store.Store, configured string) (string, error) {
	if err := CheckIdentifierBase(configured); err != nil {
		return "", &BaseInvalidError{err}
	}
	stored, err := StoredIdentifierBase(ctx, st)
	if err != nil {
		return "", fmt.Errorf("reading the database's identifier base: %w", err)
	}
	norm := func(b string) string {
		if b == "" {
			b = mapping.DefaultIdentifierBase
		}
		return strings.TrimRight(b, "/")
	}
	switch {
	case stored == "":
		return configured, nil
	case configured == "":
		if stored == norm("") {
			return "", nil
		}
		return stored, nil
	case norm(configured) != norm(stored):
		return "", &BaseMismatchError{Stored: stored, Configured: norm(configured)}
	}
	return configured, nil
}
