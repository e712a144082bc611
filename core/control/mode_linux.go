package control

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// privateSocket sets the socket's mode to 0600 before bind: Linux creates
// the socket file with the mode of the socket (less the umask), so it is
// never reachable by others, not even for a moment.
func privateSocket(_, _ string, c syscall.RawConn) error {
	var serr error
	if err := c.Control(func(fd uintptr) { serr = unix.Fchmod(int(fd), 0o600) }); err != nil {
		return err
	}
	return serr
}
