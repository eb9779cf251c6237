//go:build !linux

package postgres

import (
	"syscall"
	"time"
)

// userTimeout: TCP_USER_TIMEOUT is Linux's; elsewhere the keepalives
// alone find a dead peer.
func userTimeout(time.Duration) func(network, address string, c syscall.RawConn) error { return nil }
