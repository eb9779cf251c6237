package main

import (
	"regexp"
	"strings"
	"testing"
)

// TestSynopsisNamesFlags: a command whose synopsis lists its flags (no
// "[flags]") lists every flag its help describes, so that the synopsis is
// not a partial list (p20 F10: replay's left out --ehr-url and
// --no-config, one of which --apply needs).
func TestSynopsisNamesFlags(t *testing.T) {
	flagLine := regexp.MustCompile(`(?m)^  (--?[a-z][a-z0-9-]*)`)
	for _, c := range commands {
		if strings.Contains(c.usage, "[flags]") {
			continue
		}
		out, _, _ := cli(t, "", c.name, "-h")
		for _, m := range flagLine.FindAllStringSubmatch(out, -1) {
			name := m[1] // as the help writes it: -o, --kind
			// --identifier-base is the deployment's (GATEWAY_IDENTIFIER_BASE),
			// described by every command that maps and named by none.
			if name == "-h" || name == "--help" || name == "--identifier-base" {
				continue
			}
			if !regexp.MustCompile(regexp.QuoteMeta(name) + `\b`).MatchString(c.usage) {
				t.Errorf("%s: the synopsis %q does not name %s, which its help describes", c.name, c.usage, name)
			}
		}
	}
}
