package server

import (
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/nodedns/nodedns/internal/dnswire"
	"github.com/nodedns/nodedns/pkg/resolver"
)

// roundTrip sends q on c and reads the answer into buf.
func roundTrip(tb testing.TB, c *net.UDPConn, q, buf []byte) int {
	if _, err := c.Write(q); err != nil {
		tb.Fatal(err)
	}
	n, err := c.Read(buf)
	if err != nil {
		tb.Fatal(err)
	}
	return n
}

func dialUDP(tb testing.TB, addr string) *net.UDPConn {
	c, err := net.Dial("udp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c.(*net.UDPConn)
}

// A zone answer over a real socket allocates nothing, in the server or in
// this raw client.
func TestUDPRoundTripAllocs(t *testing.T) {
	ts := start(t, nil)
	c := dialUDP(t, ts.addr)
	c.SetDeadline(time.Now().Add(30 * time.Second))
	buf := make([]byte, 2048)
	for _, q := range []*dns.Msg{msg(web, dns.TypeA, 1232), msg("nope.default.svc.cluster.local.", dns.TypeA, 0)} {
		b, _ := q.Pack()
		n := roundTrip(t, c, b, buf)
		if m := new(dns.Msg); m.Unpack(buf[:n]) != nil || m.Id != q.Id {
			t.Fatalf("bad answer %x", buf[:n])
		}
		if a := testing.AllocsPerRun(200, func() { roundTrip(t, c, b, buf) }); a != 0 {
			t.Errorf("%s: %v allocations per UDP round trip", q.Question[0].Name, a)
		}
	}
}

// BenchmarkHotPath is the per-packet work of a UDP reader: parse, look up,
// build, for the three zone outcomes.
func BenchmarkHotPath(b *testing.B) {
	r, err := resolver.New(resolver.Config{Authority: testZone(b), Upstream: failing{}})
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name  string
		qname string
	}{
		{"answer", web},
		{"nxdomain", "nope.default.svc.cluster.local."},
	} {
		b.Run(bc.name, func(b *testing.B) {
			q, _ := msg(bc.qname, dns.TypeA, 1232).Pack()
			sc := resolver.NewScratch()
			out := make([]byte, 0, dnswire.MaxMsgLen)
			b.ReportAllocs()
			for b.Loop() {
				if r.Handle(sc, out[:0], q, resolver.UDP, nil, client) == nil {
					b.Fatal("no answer")
				}
			}
		})
	}
}

// BenchmarkUDPRoundTrip is one query at a time over loopback: mostly the
// kernel and the scheduler, but it shows what the server adds.
func BenchmarkUDPRoundTrip(b *testing.B) {
	ts := startB(b)
	c := dialUDP(b, ts.addr)
	q, _ := msg(web, dns.TypeA, 1232).Pack()
	buf := make([]byte, 2048)
	b.ReportAllocs()
	for b.Loop() {
		roundTrip(b, c, q, buf)
	}
}
