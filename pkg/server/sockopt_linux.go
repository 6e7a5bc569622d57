package server

import (
	"net"
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

// hasInput reports whether c has received octets not read yet.
func hasInput(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	n := 0
	raw.Control(func(fd uintptr) { n, _ = unix.IoctlGetInt(int(fd), unix.SIOCINQ) })
	return n > 0
}
