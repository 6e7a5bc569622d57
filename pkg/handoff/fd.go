package handoff

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// dup duplicates c's descriptor (close-on-exec) without touching its mode.
//
// Not (*net.UDPConn).File: the *os.File it returns puts the descriptor in
// blocking mode as soon as its Fd method is called, and O_NONBLOCK belongs
// to the open file description, which every process holding the socket
// shares. The old instance's reader goroutines would then block inside
// recvfrom, out of reach of the read deadlines its Shutdown relies on.
func dup(c syscall.Conn) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return -1, err
	}
	nfd := -1
	var derr error
	if err := rc.Control(func(fd uintptr) {
		nfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return -1, err // closed: the owner is shutting down
	}
	if derr != nil {
		return -1, fmt.Errorf("dup: %w", derr)
	}
	return nfd, nil
}

func closeFDs(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// verify checks that descriptor fd is the socket k names: a UDP socket or a
// listening TCP socket, bound to k's port and, when k's host is an IP
// address, to that address (an empty host: to the unspecified address).
// A host name can only be checked by its port.
func verify(fd int, k Key) error {
	typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil {
		return fmt.Errorf("SO_TYPE: %w", err)
	}
	switch k.Proto {
	case "udp":
		if typ != unix.SOCK_DGRAM {
			return fmt.Errorf("socket type %d, want a datagram socket", typ)
		}
	case "tcp":
		if typ != unix.SOCK_STREAM {
			return fmt.Errorf("socket type %d, want a stream socket", typ)
		}
		acc, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN)
		if err != nil {
			return fmt.Errorf("SO_ACCEPTCONN: %w", err)
		}
		if acc != 1 {
			return errors.New("not a listening socket")
		}
	default:
		return fmt.Errorf("protocol %q", k.Proto)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return fmt.Errorf("getsockname: %w", err)
	}
	var got netip.AddrPort
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		got = netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port))
	case *unix.SockaddrInet6:
		got = netip.AddrPortFrom(netip.AddrFrom16(a.Addr).Unmap(), uint16(a.Port))
	default:
		return fmt.Errorf("not an IP socket (%T)", sa)
	}
	host, port, err := net.SplitHostPort(k.Addr)
	if err != nil {
		return err
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || uint16(p) != got.Port() {
		return fmt.Errorf("bound to %s, not port %s", got, port)
	}
	if host == "" {
		if !got.Addr().IsUnspecified() {
			return fmt.Errorf("bound to %s, want all addresses", got)
		}
	} else if want, err := netip.ParseAddr(host); err == nil && want.Unmap() != got.Addr() {
		return fmt.Errorf("bound to %s, want %s", got, k.Addr)
	}
	return nil
}

// writeMsg sends v as one packet, with fds attached.
func writeMsg(c *net.UnixConn, v any, fds []int) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if len(b) > maxMsg {
		return fmt.Errorf("message of %d bytes, over %d", len(b), maxMsg)
	}
	if len(fds) > maxFDs {
		return fmt.Errorf("%d sockets, over the kernel's %d per message", len(fds), maxFDs)
	}
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	_, _, err = c.WriteMsgUnix(b, oob, nil)
	return err
}

// readMsg reads one packet into v, and the descriptors attached to it. On
// error every received descriptor is closed already.
func readMsg(c *net.UnixConn, v any) (fds []int, err error) {
	buf := make([]byte, maxMsg+1)
	oob := make([]byte, unix.CmsgSpace(maxFDs*4))
	n, oobn, flags, _, err := c.ReadMsgUnix(buf, oob)
	if oobn > 0 {
		var perr error
		fds, perr = parseRights(oob[:oobn])
		if err == nil {
			err = perr
		}
	}
	switch {
	case err != nil:
	case flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0 || n > maxMsg:
		err = errors.New("message truncated")
	case n == 0:
		err = io.EOF // SOCK_SEQPACKET: the peer closed
	default:
		err = json.Unmarshal(buf[:n], v)
	}
	if err != nil {
		closeFDs(fds)
		return nil, err
	}
	return fds, nil
}

// parseRights returns every descriptor in oob, also when it fails part way.
func parseRights(oob []byte) ([]int, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, err
	}
	var fds []int
	var errs []error
	for _, m := range msgs {
		if m.Header.Level != unix.SOL_SOCKET || m.Header.Type != unix.SCM_RIGHTS {
			continue
		}
		got, err := unix.ParseUnixRights(&m)
		fds = append(fds, got...)
		errs = append(errs, err)
	}
	return fds, errors.Join(errs...)
}
