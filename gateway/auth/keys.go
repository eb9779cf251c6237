package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"

	"github.com/go-jose/go-jose/v4"
)

const minRSABits = 2048

// loadClientKeys reads and validates a client's key set, indexed by kid.
// Errors name the client and the key's position, never key material.
func loadClientKeys(c Client) (map[string]jose.JSONWebKey, error) {
	raw := []byte(c.JWKS)
	switch {
	case len(c.JWKS) > 0 && c.JWKSFile != "":
		return nil, errors.New("set jwks or jwksFile, not both")
	case c.JWKSFile != "":
		b, err := os.ReadFile(c.JWKSFile)
		if err != nil {
			return nil, fmt.Errorf("jwksFile: %w", err)
		}
		raw = b
	case len(c.JWKS) == 0:
		return nil, errors.New("no key set: set jwks or jwksFile")
	}
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(raw, &set); err != nil {
		return nil, fmt.Errorf("key set is not a JWK Set: %w", err)
	}
	if len(set.Keys) == 0 {
		return nil, errors.New("key set has no keys")
	}
	keys := make(map[string]jose.JSONWebKey, len(set.Keys))
	for i, rk := range set.Keys {
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(rk); err != nil {
			return nil, fmt.Errorf("key %d: %w", i, err)
		}
		if err := checkClientKey(k); err != nil {
			return nil, fmt.Errorf("key %d: %w", i, err)
		}
		if _, dup := keys[k.KeyID]; dup {
			return nil, fmt.Errorf("key %d: duplicate kid %q", i, k.KeyID)
		}
		keys[k.KeyID] = k
	}
	return keys, nil
}

// KeySet returns c's public keys (its jwks, or its jwksFile's content) as
// a canonical JWK Set: each key as go-jose writes it, in kid order. The
// same keys give the same bytes however the file is named or laid out
// (the settings fingerprint of the clients compares gateways by it).
// Errors are loadClientKeys's.
func KeySet(c Client) ([]byte, error) {
	keys, err := loadClientKeys(c)
	if err != nil {
		return nil, err
	}
	var set struct {
		Keys []jose.JSONWebKey `json:"keys"`
	}
	for _, kid := range slices.Sorted(maps.Keys(keys)) {
		set.Keys = append(set.Keys, keys[kid])
	}
	return json.Marshal(set)
}

// checkClientKey enforces what a client may sign assertions with: RSA >= 2048
// bits (RS384) or EC P-384 (ES384), public only, with a kid.
func checkClientKey(k jose.JSONWebKey) error {
	if !k.IsPublic() {
		return errors.New("not a public key (private or symmetric key material must never be configured)")
	}
	if k.KeyID == "" {
		return errors.New("missing kid")
	}
	if k.Use != "" && k.Use != "sig" {
		return fmt.Errorf("use %q, want sig", k.Use)
	}
	switch pub := k.Key.(type) {
	case *rsa.PublicKey:
		if pub.N.BitLen() < minRSABits {
			return fmt.Errorf("RSA key of %d bits, want at least %d", pub.N.BitLen(), minRSABits)
		}
		if k.Algorithm != "" && k.Algorithm != string(jose.RS384) {
			return fmt.Errorf("RSA key with alg %q, want RS384", k.Algorithm)
		}
	case *ecdsa.PublicKey:
		if pub.Curve != elliptic.P384() {
			return errors.New("EC key not on P-384")
		}
		if k.Algorithm != "" && k.Algorithm != string(jose.ES384) {
			return fmt.Errorf("EC key with alg %q, want ES384", k.Algorithm)
		}
	default:
		return fmt.Errorf("unsupported key type %T, want RSA or EC P-384", k.Key)
	}
	return nil
}

// usableExternalKey reports whether a key fetched from an external issuer can
// verify its tokens: a public RSA (>= 2048 bits) or EC P-256/P-384 signing key
// with a kid. Other keys in its set are skipped, not fatal.
func usableExternalKey(k jose.JSONWebKey) bool {
	if !k.IsPublic() || k.KeyID == "" || (k.Use != "" && k.Use != "sig") {
		return false
	}
	switch pub := k.Key.(type) {
	case *rsa.PublicKey:
		return pub.N.BitLen() >= minRSABits
	case *ecdsa.PublicKey:
		return pub.Curve == elliptic.P256() || pub.Curve == elliptic.P384()
	}
	return false
}
