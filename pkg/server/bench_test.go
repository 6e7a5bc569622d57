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
// kernel and the scheduler, but it shows what the server adds. Each reader
// is measured: batch (Linux) and the one-packet loop.
func BenchmarkUDPRoundTrip(b *testing.B) {
	for _, rd := range readers {
		b.Run(rd.name, func(b *testing.B) {
			ts := startCached(b, rd.loop)
			c := dialUDP(b, ts.addr)
			q, _ := msg(web, dns.TypeA, 1232).Pack()
			buf := make([]byte, 2048)
			b.ReportAllocs()
			for b.Loop() {
				roundTrip(b, c, q, buf)
			}
		})
	}
}

// BenchmarkUDPBurst sends udpBurst queries (cluster-zone answers, search-
// suffix NXDOMAINs and cache hits, in turn) before reading their answers,
// as a busy node's Pods do: per query (ns/op is per query, client included),
// what batching saves.
func BenchmarkUDPBurst(b *testing.B) {
	const udpBurst = 32
	for _, rd := range readers {
		b.Run(rd.name, func(b *testing.B) {
			ts := startCached(b, rd.loop)
			c := dialUDP(b, ts.addr)
			c.SetReadBuffer(1 << 20)
			c.SetDeadline(time.Now().Add(time.Minute)) // a lost packet fails, not hangs
			var qs [3][]byte
			for i, name := range []string{web, suffix, outside} {
				qs[i], _ = msg(name, dns.TypeA, 1232).Pack()
				roundTrip(b, c, qs[i], make([]byte, 2048)) // outside: fills the cache
			}
			buf := make([]byte, 2048)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i += udpBurst {
				k := min(udpBurst, b.N-i)
				for j := range k {
					if _, err := c.Write(qs[j%len(qs)]); err != nil {
						b.Fatal(err)
					}
				}
				for range k {
					if _, err := c.Read(buf); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}
