package gateway_test

import (
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/sqlite"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// TestMetadataSoftwareVersion: software.version is the build's version
// (what `ketamine-gateway version` prints, given by serve), not the
// mapping's; the mapping version stays in implementation.description.
func TestMetadataSoftwareVersion(t *testing.T) {
	tests := []struct {
		name    string
		version string
		want    any // software.version; nil: absent
	}{
		{"build version", "v1.4.2", "v1.4.2"},
		{"devel build", "devel (revision 0123456789ab+dirty)", "devel (revision 0123456789ab+dirty)"},
		{"unknown", "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newServer(t, app.Config{Store: tempSQLite(t, sqlite.Options{}), Version: tt.version}, gateway.Config{})
			cs := decode(t, req(h, "GET", "/fhir/metadata", ""))
			sw, _ := cs["software"].(map[string]any)
			if sw["name"] != "ketamine-gateway" || sw["version"] != tt.want {
				t.Errorf("software = %v, want name ketamine-gateway, version %v", sw, tt.want)
			}
			impl, _ := cs["implementation"].(map[string]any)
			if d, _ := impl["description"].(string); !strings.Contains(d, "mapping "+mapping.Version) {
				t.Errorf("implementation.description = %q, want it to name mapping %s", d, mapping.Version)
			}
		})
	}
}
