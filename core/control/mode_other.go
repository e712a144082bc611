//go:build !linux

package control

import "syscall"

// privateSocket is Linux only; elsewhere the socket is chmodded after bind.
func privateSocket(_, _ string, _ syscall.RawConn) error { return nil }
