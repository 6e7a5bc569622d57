package server

import (
	"net/netip"
	"testing"
	"time"
	"unsafe"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"

	rt "github.com/nodedns/nodedns/pkg/resolver/resolvertest"
)

// A datagram longer than the batch reader's buffer is dropped, and the
// reader goes on.
func TestUDPOversizedQuery(t *testing.T) {
	ts := startCached(t, false)
	c := dialUDP(t, ts.addr)
	q := msg(web, dns.TypeA, 1232)
	q.IsEdns0().Option = append(q.IsEdns0().Option, &dns.EDNS0_PADDING{Padding: make([]byte, udpInMax)})
	b, err := q.Pack()
	if err != nil {
		t.Fatal(err)
	}
	// A dropped packet gets no answer; a short wait catches a wrong one.
	if reply := udpRaw(t, c, b, 200*time.Millisecond); reply != nil {
		t.Errorf("%d-byte query answered", len(b))
	}
	good, _ := msg(web, dns.TypeA, 0).Pack()
	if reply := udpRaw(t, c, good, 5*time.Second); reply == nil || len(rt.Unpack(t, reply).Answer) != 1 {
		t.Fatal("no answer after the oversized query")
	}
}

// IPv6 listeners are covered end to end by test/netns, in namespaces of
// its own; here the conversion of what recvmmsg returns.
func TestSockaddrAddrPort(t *testing.T) {
	zone := func(id uint32) string { return "if" + string(rune('0'+id)) }
	for _, tt := range []struct {
		sa   unix.RawSockaddrInet6
		want string
	}{
		{sockaddr(netip.MustParseAddrPort("10.1.2.3:5353"), 0), "10.1.2.3:5353"},
		{sockaddr(netip.MustParseAddrPort("[fd00::1]:53"), 0), "[fd00::1]:53"},
		{sockaddr(netip.MustParseAddrPort("[fe80::1]:1053"), 7), "[fe80::1%if7]:1053"},
		{sockaddr(netip.MustParseAddrPort("[::ffff:10.0.0.1]:40000"), 0), "[::ffff:10.0.0.1]:40000"},
	} {
		got, ok := sockaddrAddrPort(&tt.sa, zone)
		if !ok || got.String() != tt.want {
			t.Errorf("got %v %v, want %s", got, ok, tt.want)
		}
	}
	if _, ok := sockaddrAddrPort(&unix.RawSockaddrInet6{Family: unix.AF_UNIX}, zone); ok {
		t.Error("AF_UNIX converted")
	}
}

// sockaddr is ap as the kernel writes it: sockaddr_in for IPv4, else
// sockaddr_in6; the port in network byte order.
func sockaddr(ap netip.AddrPort, scope uint32) unix.RawSockaddrInet6 {
	var sa unix.RawSockaddrInet6
	port := (*[2]byte)(unsafe.Pointer(&sa.Port)) // the same offset in both
	port[0], port[1] = byte(ap.Port()>>8), byte(ap.Port())
	if ap.Addr().Is4() {
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(&sa))
		sa4.Family = unix.AF_INET
		sa4.Addr = ap.Addr().As4()
		return sa
	}
	sa.Family = unix.AF_INET6
	sa.Addr = ap.Addr().As16()
	sa.Scope_id = scope
	return sa
}
