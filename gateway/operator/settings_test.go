package operator

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/postgres"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/postgres/pgtest"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/sqlite"
)

// TestSettingsCheck: gateways on one database (several stores on one
// SQLite file, or one PostgreSQL schema) that differ in settings groups
// each warn of the others by instance and group, never with a value, and
// tell the differences; a gateway not seen for three heartbeats is not
// compared with, nor a group only one of two records (probe p33 F2: a
// gateway with other safety thresholds mapped the same vitals as critical
// where the others saw nothing, and nothing said so).
func TestSettingsCheck(t *testing.T) {
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			var dsn string
			if backend == "postgres" {
				dsn, _ = pgtest.Schema(t, "kgo", "the settings check across gateways")
			} else {
				dsn = filepath.Join(t.TempDir(), "gw.db")
			}
			open := func() store.Store {
				var st store.Store
				var err error
				if backend == "postgres" {
					st, err = postgres.Open(ctx, dsn, postgres.Options{})
				} else {
					st, err = sqlite.Open(ctx, dsn, sqlite.Options{})
				}
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { st.Close() })
				return st
			}
			now := time.Date(2026, 12, 6, 5, 0, 0, 0, time.UTC)
			clock := func() time.Time { return now }
			fps := func(heartRate, secret string) map[string]string {
				return map[string]string{
					SettingsClinical:    Fingerprint(SettingsClinical, []byte(`{"heartRate":{"high":`+heartRate+`}}`)),
					SettingsMapping:     Fingerprint(SettingsMapping, []byte("2.3.0")),
					SettingsTokenSecret: Fingerprint(SettingsTokenSecret, []byte(secret)),
				}
			}
			var logs bytes.Buffer
			logger := slog.New(slog.NewTextHandler(&logs, nil))
			check := func(name string, fp map[string]string) *SettingsCheck {
				return NewSettingsCheck(SettingsCheckConfig{Store: open(), Instance: name, Fingerprints: fp, Every: time.Minute,
					Logger: logger.With("self", name), Now: clock})
			}
			// gone ran long ago with other settings; old is of an older
			// release, recording no token-secret group.
			gone := check("gw-gone", fps("75", "other-secret"))
			if err := gone.Check(ctx); err != nil {
				t.Fatal(err)
			}
			now = now.Add(4 * time.Minute)
			old := fps("100", "s3cret")
			delete(old, SettingsTokenSecret)
			gws := []*SettingsCheck{check("gw0", fps("100", "s3cret")), check("gw1", fps("100", "s3cret")),
				check("gw2", fps("70", "an0ther")), check("gw-old", old)}
			for range 2 { // the second round sees what the first wrote
				for _, c := range gws {
					if err := c.Check(ctx); err != nil {
						t.Fatal(err)
					}
				}
			}
			diff := []SettingsDifference{{Instance: "gw2", Groups: []string{SettingsClinical, SettingsTokenSecret}}}
			want := map[string][]SettingsDifference{
				"gw0": diff, "gw1": diff,
				"gw2": {{Instance: "gw-old", Groups: []string{SettingsClinical}},
					{Instance: "gw0", Groups: []string{SettingsClinical, SettingsTokenSecret}},
					{Instance: "gw1", Groups: []string{SettingsClinical, SettingsTokenSecret}}},
				"gw-old": {{Instance: "gw2", Groups: []string{SettingsClinical}}},
			}
			for _, c := range gws {
				if got := c.Differences(); !reflect.DeepEqual(got, want[c.self.Name]) {
					t.Errorf("%s: Differences() = %+v, want %+v", c.self.Name, got, want[c.self.Name])
				}
			}
			out := logs.String()
			if n := strings.Count(out, "self=gw0 other_instance=gw2"); n != 1 {
				t.Errorf("gw0 warned %d times of gw2, want once (a difference is logged when first seen):\n%s", n, out)
			}
			if !strings.Contains(out, `settings_differing="clinical, token-secret"`) {
				t.Errorf("no warning names the groups that differ:\n%s", out)
			}
			for _, v := range []string{"s3cret", "an0ther", "heartRate", "gw-gone"} {
				if strings.Contains(out, v) {
					t.Errorf("the log holds %q (a value, or a gateway no longer running):\n%s", v, out)
				}
			}
			// gw2 restarted with the shared settings, as another process
			// (its name is new): the others stop warning, and the new
			// process is not compared with the old one's record, deleted
			// when it stopped.
			gws[2].Close()
			gws[2] = check("gw2 again", fps("100", "s3cret"))
			for _, c := range []*SettingsCheck{gws[2], gws[0]} {
				if err := c.Check(ctx); err != nil {
					t.Fatal(err)
				}
			}
			if got := gws[0].Differences(); got == nil || len(got) != 0 {
				t.Errorf("after gw2 agrees: Differences() = %#v, want none (an empty list)", got)
			}
			if got := gws[2].Differences(); len(got) != 0 {
				t.Errorf("gw2 restarted: Differences() = %+v, want none (not its own stopped process)", got)
			}
		})
	}
}
