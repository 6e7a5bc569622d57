package handoff

import (
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// netNS names the network namespace of the calling thread (the one its
// sockets are created in), e.g. "net:[4026531840]"; "" when /proc does not
// tell.
func netNS() string {
	for _, p := range []string{"/proc/thread-self/ns/net", "/proc/self/ns/net"} {
		if s, err := os.Readlink(p); err == nil {
			return s
		}
	}
	return ""
}

// peerUID is the user of the process at the other end of c (SO_PEERCRED,
// unix(7)), in our user namespace.
func peerUID(c *net.UnixConn) (uint32, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := rc.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return 0, err
	}
	if cerr != nil {
		return 0, cerr
	}
	return cred.Uid, nil
}
