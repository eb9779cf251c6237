package operator_test

import (
	"math"
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/operator"
)

// TestIDsRoundTrip: every row number comes back from its public id, which
// is 13 lowercase letters and digits; another key gives another id.
func TestIDsRoundTrip(t *testing.T) {
	ids := operator.NewIDs([]byte("0123456789abcdef0123456789abcdef"))
	other := operator.NewIDs([]byte("fedcba9876543210fedcba9876543210"))
	for _, n := range []int64{1, 2, 3, 17, 255, 256, 1 << 31, 1<<32 - 1, 1 << 32, 1<<32 + 1, 1 << 40, math.MaxInt64} {
		s := ids.Encode(n)
		if len(s) != operator.IDLength || strings.Trim(s, "abcdefghijklmnopqrstuvwxyz234567") != "" {
			t.Errorf("Encode(%d) = %q, want %d lowercase base32 characters", n, s, operator.IDLength)
		}
		if got, ok := ids.Decode(s); !ok || got != n {
			t.Errorf("Decode(Encode(%d)) = %d, %t; want %d, true", n, got, ok, n)
		}
		if o := other.Encode(n); o == s {
			t.Errorf("Encode(%d) = %q under two keys, want another id under another key", n, s)
		}
	}
}

// TestIDsRefused: what Encode never writes decodes to nothing: a plain
// number (the row's own), another length, upper case, another alphabet.
func TestIDsRefused(t *testing.T) {
	ids := operator.NewIDs([]byte("0123456789abcdef0123456789abcdef"))
	good := ids.Encode(17)
	for _, s := range []string{"", "17", "0", "-1", "0000000000017", "1234567890123", strings.ToUpper(good),
		good + "a", good[:12], good[:12] + "!", good[:12] + "1", "delivery/17", "aaaaaaaaaaaaaaaa"} {
		if n, ok := ids.Decode(s); ok {
			t.Errorf("Decode(%q) = %d, true; want false", s, n)
		}
	}
}

// TestIDsHideTheSequence: consecutive row numbers (one tenant's
// deliveries among others') give ids that are neither consecutive nor in
// order, so that a tenant's operator learns nothing of the deliveries
// between its own from them.
func TestIDsHideTheSequence(t *testing.T) {
	ids := operator.NewIDs([]byte("0123456789abcdef0123456789abcdef"))
	var prev string
	ups, downs, seen := 0, 0, map[string]bool{}
	for n := int64(1); n <= 200; n++ {
		s := ids.Encode(n)
		if seen[s] {
			t.Fatalf("Encode(%d) = %q, an id of an earlier row", n, s)
		}
		seen[s] = true
		if prev != "" {
			if s > prev {
				ups++
			} else {
				downs++
			}
			if shared := commonPrefix(prev, s); shared > 4 {
				t.Errorf("Encode(%d) = %q and Encode(%d) = %q share %d leading characters, want ids that look unrelated", n-1, prev, n, s, shared)
			}
		}
		prev = s
	}
	// A monotonic encoding (or one that kept the order mostly) would show
	// the sequence: about as many steps down as up.
	if ups < 60 || downs < 60 {
		t.Errorf("of 199 consecutive rows, %d ids went up and %d down; want no order (about half each)", ups, downs)
	}
}

func commonPrefix(a, b string) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}
