package server

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/nodedns/nodedns/pkg/resolver"
)

// On Linux a UDP reader works in batches: one recvmmsg takes up to udpBatch
// queries, every answer known at once (zone, cache hit, search-suffix
// NXDOMAIN, errors) goes into the slot's own buffer, and one sendmmsg sends
// them all. Under load that is two syscalls per batch instead of two per
// query; at a low rate a batch is one query and nothing is lost. Answers
// that wait for the upstream leave through the udpSender as before.
//
// The two calls are raw syscalls. They never block: the socket is
// non-blocking, and on EAGAIN RawConn.Read/Write park the reader in the
// netpoller. syscall.Syscall would also enter the runtime's syscall state,
// and entering it while the process was idle wakes sysmon (entersyscall →
// sysmonwait), which then polls every 20 µs for a while: at 10,000 q/s that
// was a third of nodedns's CPU (BENCHMARKS.md, "What the profile shows").

const (
	// udpBatch is the number of messages per recvmmsg and sendmmsg.
	udpBatch = 32
	// udpInMax is the longest query read. A longer datagram is dropped:
	// queries are a few hundred bytes at most, and miekg/dns (CoreDNS)
	// reads only 512 by default.
	udpInMax = 4096
	// udpOutInit is each slot's initial answer buffer; a larger answer
	// grows it (once, the slot keeps it).
	udpOutInit = 1536
)

// defaultUDPSockets is one socket (and reader) per P: see Config.UDPSockets.
func defaultUDPSockets() int { return runtime.GOMAXPROCS(0) }

// mmsghdr is struct mmsghdr; Go pads it like C does on every Linux ABI.
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32 // msg_len: bytes received or sent
}

// udpBatcher is one reader's state: fixed buffers, so that a batch of
// synchronous answers allocates nothing. Only its reader goroutine uses it.
type udpBatcher struct {
	s   *Server
	raw syscall.RawConn
	sc  *resolver.Scratch
	snd *udpSender

	rh    [udpBatch]mmsghdr
	riov  [udpBatch]unix.Iovec
	names [udpBatch]unix.RawSockaddrInet6 // big enough for either family
	in    [udpBatch][udpInMax]byte
	out   [udpBatch][]byte

	sh   [udpBatch]mmsghdr
	siov [udpBatch]unix.Iovec

	nrecv int
	rerr  syscall.Errno
	nsend int
	sent  int
	serr  syscall.Errno

	// Method values made once: building them per call would allocate.
	recvFn, sendFn func(fd uintptr) bool

	zones map[uint32]string // IPv6 scope ID → zone name, for link-local clients
}

func newUDPBatcher(s *Server, raw syscall.RawConn, snd *udpSender) *udpBatcher {
	b := &udpBatcher{s: s, raw: raw, sc: resolver.NewScratch(), snd: snd}
	outs := make([]byte, udpBatch*udpOutInit)
	for i := range udpBatch {
		b.riov[i].Base = &b.in[i][0]
		b.riov[i].SetLen(udpInMax)
		b.rh[i].hdr.Name = (*byte)(unsafe.Pointer(&b.names[i]))
		b.rh[i].hdr.Iov = &b.riov[i]
		b.rh[i].hdr.SetIovlen(1)
		// Full slice expressions: a slot that grows gets its own array
		// instead of writing into its neighbour's.
		b.out[i] = outs[i*udpOutInit : i*udpOutInit : (i+1)*udpOutInit]
		b.sh[i].hdr.Iov = &b.siov[i]
		b.sh[i].hdr.SetIovlen(1)
	}
	b.recvFn, b.sendFn = b.recv, b.send
	return b
}

// readUDPBatch serves c until Shutdown, in batches. It returns false at
// once, before reading, if c has no raw access, and the caller falls back
// to readUDPLoop.
func (s *Server) readUDPBatch(c *net.UDPConn, snd *udpSender) bool {
	raw, err := c.SyscallConn()
	if err != nil {
		return false
	}
	b := newUDPBatcher(s, raw, snd)
	var wait time.Duration
	for {
		for i := range udpBatch {
			b.rh[i].hdr.Namelen = uint32(unsafe.Sizeof(b.names[i])) // the kernel overwrites it
		}
		b.nrecv, b.rerr = 0, 0
		err := raw.Read(b.recvFn)
		if err == nil && b.rerr != 0 {
			err = b.rerr
		}
		if err != nil {
			if s.stopping.Load() || errors.Is(err, net.ErrClosed) {
				return true
			}
			s.log.Debug("udp read failed", slog.Any("err", err))
			wait = backoff(wait)
			continue
		}
		wait = 0
		b.answer()
		b.flush()
	}
}

// recv is the RawConn.Read callback: one recvmmsg, false to wait for the
// socket to become readable.
func (b *udpBatcher) recv(fd uintptr) bool {
	for {
		n, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&b.rh[0])), udpBatch, unix.MSG_DONTWAIT, 0, 0)
		switch e {
		case 0:
			b.nrecv = int(n)
			return true
		case unix.EINTR:
		case unix.EAGAIN:
			return false
		default:
			b.rerr = e
			return true
		}
	}
}

// answer handles the batch just read and queues the synchronous answers.
func (b *udpBatcher) answer() {
	b.nsend = 0
	for i := range b.nrecv {
		h := &b.rh[i].hdr
		if h.Flags&unix.MSG_TRUNC != 0 {
			b.s.log.Debug("udp query dropped: longer than the read buffer", slog.Int("max", udpInMax))
			continue
		}
		addr, ok := sockaddrAddrPort(&b.names[i], b.zone)
		if !ok {
			continue
		}
		reply := b.s.res.Handle(b.sc, b.out[i][:0], b.in[i][:b.rh[i].n], resolver.UDP, b.snd, addr)
		if len(reply) == 0 {
			continue // dropped, or answered later through snd
		}
		if cap(reply) > cap(b.out[i]) {
			b.out[i] = reply[:0] // keep the grown buffer for next time
		}
		j := b.nsend
		b.siov[j].Base = &reply[0]
		b.siov[j].SetLen(len(reply))
		b.sh[j].hdr.Name = h.Name // back to where it came from
		b.sh[j].hdr.Namelen = h.Namelen
		b.nsend++
	}
}

// flush sends the queued answers.
func (b *udpBatcher) flush() {
	if b.nsend == 0 {
		return
	}
	b.sent, b.serr = 0, 0
	if err := b.raw.Write(b.sendFn); err != nil {
		b.s.log.Debug("udp write failed", slog.Any("err", err))
	}
	if b.serr != 0 {
		b.s.log.Debug("udp write failed", slog.Any("err", b.serr))
	}
}

// send is the RawConn.Write callback: sendmmsg until every queued answer is
// sent or skipped, false to wait for the socket to become writable.
func (b *udpBatcher) send(fd uintptr) bool {
	for b.sent < b.nsend {
		n, _, e := unix.RawSyscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&b.sh[b.sent])), uintptr(b.nsend-b.sent), unix.MSG_DONTWAIT, 0, 0)
		switch {
		case e == unix.EINTR:
		case e == unix.EAGAIN:
			return false
		case e != 0 || n == 0:
			// The first message failed (e.g. EPERM from a firewall rule);
			// skip it, the others may go.
			b.serr = e
			b.sent++
		default:
			b.sent += int(n)
		}
	}
	return true
}

// zone names an IPv6 scope ID like package net does (the interface's name,
// else the number), cached: only link-local clients have one.
func (b *udpBatcher) zone(id uint32) string {
	if z, ok := b.zones[id]; ok {
		return z
	}
	z := strconv.FormatUint(uint64(id), 10)
	if ifi, err := net.InterfaceByIndex(int(id)); err == nil {
		z = ifi.Name
	}
	if b.zones == nil || len(b.zones) >= 64 {
		b.zones = make(map[uint32]string) // interfaces come and go; start over
	}
	b.zones[id] = z
	return z
}

// sockaddrAddrPort converts a received address (sockaddr_in or
// sockaddr_in6) as ReadFromUDPAddrPort would, without allocating.
func sockaddrAddrPort(sa *unix.RawSockaddrInet6, zone func(uint32) string) (netip.AddrPort, bool) {
	switch sa.Family {
	case unix.AF_INET:
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), ntohs(sa4.Port)), true
	case unix.AF_INET6:
		ip := netip.AddrFrom16(sa.Addr)
		if sa.Scope_id != 0 {
			ip = ip.WithZone(zone(sa.Scope_id))
		}
		return netip.AddrPortFrom(ip, ntohs(sa.Port)), true
	}
	return netip.AddrPort{}, false
}

// ntohs reads a port as stored in a sockaddr: network byte order.
func ntohs(p uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(&p))
	return uint16(b[0])<<8 | uint16(b[1])
}
