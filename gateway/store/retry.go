package store

import (
	"context"
	"errors"
)

// MaxWriteAttempts bounds Retry.
const MaxWriteAttempts = 8

// Retry runs fn in st.Write, and again (at most MaxWriteAttempts times in
// all) while the transaction loses a race on a unique key (ErrConflict): the
// next attempt sees the concurrent writer's result. It returns Write's last
// error.
func Retry(ctx context.Context, st Store, fn func(Tx) error) error {
	var err error
	for attempt := 0; attempt < MaxWriteAttempts; attempt++ {
		err = st.Write(ctx, fn)
		if !errors.Is(err, ErrConflict) {
			return err
		}
	}
	return err
}
