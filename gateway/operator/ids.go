package operator

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base32"
	"encoding/binary"
	"fmt"
	"hash"
	"math"
	"sync"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// A delivery's id outside the store is not the outbox row's number: that
// is one sequence over every tenant, so a clinic's operator would count
// the other clinics' deliveries in the gaps between its own. The public
// id is the row's number through a keyed permutation of 64-bit values (a
// Feistel network with HMAC-SHA256 as its round function, under the
// deployment's secret key, which the database holds), written as 13
// letters and digits (base32, lowercase). It is reversible, so nothing
// more is stored, and without the key consecutive rows give ids that look
// random: neither their order nor their distance shows.

// idRounds is the Feistel network's number of rounds (FF1 uses ten).
const idRounds = 10

// IDLength is the length of a delivery's public id.
const IDLength = 13

// idEncoding is base32 in lowercase, without padding.
var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// IDs turns a delivery's row number into its public id and back, under
// one deployment's key. It is safe for concurrent use.
type IDs struct {
	macs sync.Pool // of hash.Hash: HMAC-SHA256 under the key
}

// NewIDs returns the codec under key (the deployment's: the store's
// DeliveryIDKey).
func NewIDs(key []byte) *IDs {
	k := append([]byte(nil), key...)
	ids := &IDs{}
	ids.macs.New = func() any { return hmac.New(sha256.New, k) }
	return ids
}

// LoadIDs returns the codec under st's deployment key. Returns the
// store's errors (ErrUnavailable) wrapped.
func LoadIDs(ctx context.Context, st store.Outbox) (*IDs, error) {
	key, err := st.DeliveryIDKey(ctx)
	if err != nil {
		return nil, fmt.Errorf("delivery id key: %w", err)
	}
	return NewIDs(key), nil
}

// Encode returns the public id of the delivery of row number n.
func (ids *IDs) Encode(n int64) string {
	mac := ids.macs.Get().(hash.Hash)
	defer ids.macs.Put(mac)
	l, r := uint32(uint64(n)>>32), uint32(n)
	for i := range idRounds {
		l, r = r, l^round(mac, i, r)
	}
	var b [8]byte
	binary.BigEndian.PutUint32(b[:4], l)
	binary.BigEndian.PutUint32(b[4:], r)
	return idEncoding.EncodeToString(b[:])
}

// Decode returns the row number of public id s; false when s is not an
// id Encode writes (another length or alphabet, upper case, a plain
// number). An id that decodes names a row only if the store has it.
func (ids *IDs) Decode(s string) (int64, bool) {
	if len(s) != IDLength {
		return 0, false
	}
	b, err := idEncoding.DecodeString(s)
	if err != nil || len(b) != 8 || idEncoding.EncodeToString(b) != s {
		return 0, false // one spelling per id: the bits past the 64th are zero
	}
	mac := ids.macs.Get().(hash.Hash)
	defer ids.macs.Put(mac)
	l, r := binary.BigEndian.Uint32(b[:4]), binary.BigEndian.Uint32(b[4:])
	for i := idRounds - 1; i >= 0; i-- {
		l, r = r^round(mac, i, l), l
	}
	n := uint64(l)<<32 | uint64(r)
	if n == 0 || n > math.MaxInt64 {
		return 0, false // no row has it
	}
	return int64(n), true
}

// round is the Feistel round function: HMAC-SHA256 of the round and the
// half block, under the key, cut to 32 bits.
func round(mac hash.Hash, i int, half uint32) uint32 {
	var in [len("delivery-id") + 5]byte
	copy(in[:], "delivery-id")
	in[len("delivery-id")] = byte(i)
	binary.BigEndian.PutUint32(in[len("delivery-id")+1:], half)
	mac.Reset()
	mac.Write(in[:])
	var sum [sha256.Size]byte
	return binary.BigEndian.Uint32(mac.Sum(sum[:0]))
}
