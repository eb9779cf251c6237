package test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestConformanceE2E: the binary's NPM package and its FHIR API publish the
// same conformance resources; a mapped vital sign validates against the
// profiles it claims and against one asked for; an unknown profile is a
// 400.
func TestConformanceE2E(t *testing.T) {
	g := start(t)
	pkg := filepath.Join(t.TempDir(), "package.tgz")
	if out, err := exec.Command(binary, "ig", "package", "-o", pkg).CombinedOutput(); err != nil {
		t.Fatalf("ig package: %v %s", err, out)
	}
	files := readPackage(t, pkg)
	if files["package.json"] == nil || files[".index.json"] == nil {
		t.Fatalf("package without package.json or .index.json: %d files", len(files))
	}
	served := 0
	for name, body := range files {
		typ, id, ok := strings.Cut(strings.TrimSuffix(name, ".json"), "-")
		if !ok || name == "package.json" || name == ".index.json" {
			continue
		}
		code, _, got := rawReq(t, "GET", g.base+"/fhir/"+typ+"/"+id, "")
		if code != http.StatusOK || !sameResource(t, body, got) {
			t.Errorf("GET /fhir/%s/%s = %d; differs from the package's %s", typ, id, code, name)
		}
		served++
	}
	if served < 40 {
		t.Errorf("only %d resources in the package", served)
	}

	// A mapped vital sign, from the dry run of a shipped example.
	ex, err := os.ReadFile("../schemas/examples/vitals/pre-dose-baseline.json")
	if err != nil {
		t.Fatal(err)
	}
	code, raw := post(t, g.base+"/ingest/vitals?dryRun=true", "application/json", ex)
	if code != http.StatusOK {
		t.Fatalf("dry run = %d %s", code, raw)
	}
	var bundle struct {
		Entry []struct{ Resource json.RawMessage } `json:"entry"`
	}
	_ = json.Unmarshal(raw, &bundle)
	var hr []byte
	for _, e := range bundle.Entry {
		if bytes.Contains(e.Resource, []byte(`"8867-4"`)) {
			hr = e.Resource
		}
	}
	if hr == nil {
		t.Fatal("no heart rate in the mapped vitals")
	}
	code, out := post(t, g.base+"/fhir/Observation/$validate?profile="+url.QueryEscape("http://hl7.org/fhir/StructureDefinition/heartrate"), "application/fhir+json", hr)
	if code != http.StatusOK || !bytes.Contains(out, []byte(`"information"`)) || bytes.Contains(out, []byte(`"error"`)) {
		t.Errorf("$validate of a mapped heart rate = %d %s", code, out)
	}
	wrong := bytes.Replace(hr, []byte(`"code":"/min"`), []byte(`"code":"Cel"`), 1)
	code, out = post(t, g.base+"/fhir/Observation/$validate", "application/fhir+json", wrong)
	if code != http.StatusOK || !bytes.Contains(out, []byte(`"Observation.valueQuantity.code"`)) {
		t.Errorf("$validate of a heart rate in Cel = %d %s", code, out)
	}
	code, out = post(t, g.base+"/fhir/$validate?profile="+url.QueryEscape("https://example.org/nothing"), "application/fhir+json", hr)
	if code != http.StatusBadRequest || !bytes.Contains(out, []byte("profile.unknown")) {
		t.Errorf("$validate with an unknown profile = %d %s", code, out)
	}
}

// sameResource compares two resources, ignoring meta (the server adds
// versionId and lastUpdated).
func sameResource(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y map[string]any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	delete(x, "meta")
	delete(y, "meta")
	xs, _ := json.Marshal(x)
	ys, _ := json.Marshal(y)
	return bytes.Equal(xs, ys)
}

// readPackage returns the files of an NPM package by name below package/.
func readPackage(t *testing.T, path string) map[string][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	out := map[string][]byte{}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		out[strings.TrimPrefix(hdr.Name, "package/")] = b
	}
}
