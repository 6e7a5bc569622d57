package server

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// ReusePort, a net.ListenConfig Control func, sets SO_REUSEPORT before bind: several sockets of this process
// can then share an address (the kernel spreads flows over them), and a new
// nodedns can bind while the old one still serves, during a rolling update.
func ReusePort(network, address string, c syscall.RawConn) error {
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	}); err != nil {
		return err
	}
	return serr
}
