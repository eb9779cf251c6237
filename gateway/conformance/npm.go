package conformance

import (
	"archive/tar"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/profile"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// Manifest is a FHIR NPM package's package/package.json (the FHIR package
// specification, hl7.org/fhir/packages.html).
type Manifest struct {
	Name         string            `json:"name"`
	Version      string            `json:"version"`
	Canonical    string            `json:"canonical"`
	URL          string            `json:"url"`
	Title        string            `json:"title"`
	Description  string            `json:"description"`
	FHIRVersions []string          `json:"fhirVersions"`
	Dependencies map[string]string `json:"dependencies"`
	Author       string            `json:"author"`
	Type         string            `json:"type"`
}

// Index is a FHIR NPM package's package/.index.json.
type Index struct {
	IndexVersion int          `json:"index-version"`
	Files        []IndexEntry `json:"files"`
}

// IndexEntry describes one resource file of a package.
type IndexEntry struct {
	Filename     string `json:"filename"`
	ResourceType string `json:"resourceType"`
	ID           string `json:"id"`
	URL          string `json:"url,omitempty"`
	Version      string `json:"version,omitempty"`
	Kind         string `json:"kind,omitempty"`
	Type         string `json:"type,omitempty"`
	Derivation   string `json:"derivation,omitempty"`
	Content      string `json:"content,omitempty"`
}

// packageTime is the modification time of every file in the package, so
// the same resources give the same bytes (npm uses this date too).
var packageTime = time.Date(1985, 10, 26, 8, 15, 0, 0, time.UTC)

// WritePackage writes the FHIR NPM package (package.tgz) of the
// conformance resources to w: package/package.json, package/.index.json
// (index-version 2) and one file per resource, named Type-id.json. The
// package's version is the mapping version; it depends on
// hl7.fhir.r4.core 4.0.1. The output is deterministic. Returns w's errors.
func WritePackage(w io.Writer, p *profile.Set) error {
	all, err := All(p)
	if err != nil {
		return err
	}
	manifest := Manifest{Name: PackageName, Version: mapping.Version, Canonical: mapping.Canonical, URL: mapping.Canonical,
		Title: "Ketamine-therapy gateway implementation guide", Description: guideDescription,
		FHIRVersions: []string{"4.0.1"}, Dependencies: map[string]string{"hl7.fhir.r4.core": "4.0.1"},
		Author: profile.Publisher, Type: "fhir.ig"}
	index := Index{IndexVersion: 2}
	files := map[string][]byte{}
	var order []string
	for _, r := range all {
		name := r.ResourceType + "-" + r.ID + ".json"
		if files[name] != nil {
			return fmt.Errorf("package: two resources named %s", name)
		}
		files[name] = r.JSON
		order = append(order, name)
		index.Files = append(index.Files, IndexEntry{Filename: name, ResourceType: r.ResourceType, ID: r.ID, URL: r.URL,
			Version: r.Version, Kind: r.Kind, Type: r.Type, Derivation: r.Derivation, Content: r.Content})
	}
	gz := gzip.NewWriter(w)
	tw := tar.NewWriter(gz)
	put := func(name string, body []byte) error {
		hdr := &tar.Header{Name: "package/" + name, Mode: 0o644, Size: int64(len(body)), ModTime: packageTime,
			Typeflag: tar.TypeReg, Format: tar.FormatUSTAR}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("package %s: %w", name, err)
		}
		_, err := tw.Write(body)
		return err
	}
	for _, f := range []struct {
		name string
		v    any
	}{{"package.json", manifest}, {".index.json", index}} {
		b, err := json.MarshalIndent(f.v, "", "  ")
		if err != nil {
			return err
		}
		if err := put(f.name, append(b, '\n')); err != nil {
			return err
		}
	}
	for _, name := range order {
		if err := put(name, files[name]); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return gz.Close()
}
