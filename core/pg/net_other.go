//go:build !linux

package pg

import (
	"syscall"
	"time"
)

// userTimeout is Linux only; elsewhere the keepalives and the query
// deadlines bound a dead path.
func userTimeout(time.Duration) func(network, address string, c syscall.RawConn) error { return nil }
