package server

import (
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/nodedns/nodedns/pkg/cache"
	"github.com/nodedns/nodedns/pkg/resolver"
	rt "github.com/nodedns/nodedns/pkg/resolver/resolvertest"
	"github.com/nodedns/nodedns/pkg/zone"
)

const (
	outside = "api.example.com."
	suffix  = "api.example.com.default.svc.cluster.local."
)

// readers are the two UDP read loops: batched (Linux) and one packet at a time.
var readers = []struct {
	name string
	loop bool
}{{"batch", false}, {"loop", true}}

// startCached starts a server whose resolver has a cache, a search-suffix
// name in its zone and a static upstream for outside.
func startCached(t testing.TB, loop bool) *testServer {
	t.Helper()
	z := testZone(t)
	z.Set(t, suffix, dns.TypeA, rt.Result(t, zone.KindSearchSuffix, suffix, nil, []string{soa}, nil))
	c, err := cache.New(cache.Config{})
	if err != nil {
		t.Fatal(err)
	}
	r, err := resolver.New(resolver.Config{
		Authority: z, Upstream: rt.Static(t, outside+" 60 IN A 192.0.2.10"), Cache: c,
		ClusterDomains: []string{"cluster.local"}, UpstreamTimeout: 2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	return serve(t, Config{Addrs: []string{"127.0.0.1:0"}, Resolver: r, udpLoop: loop})
}

// The three synchronous paths (cluster-zone answer, search-suffix NXDOMAIN,
// cache hit) allocate nothing over a real socket, in either reader.
func TestUDPSyncPathsAllocs(t *testing.T) {
	for _, rd := range readers {
		t.Run(rd.name, func(t *testing.T) {
			ts := startCached(t, rd.loop)
			c := dialUDP(t, ts.addr)
			c.SetDeadline(time.Now().Add(30 * time.Second))
			buf := make([]byte, 2048)
			for _, tt := range []struct {
				name  string
				rcode int
			}{{web, dns.RcodeSuccess}, {suffix, dns.RcodeNameError}, {outside, dns.RcodeSuccess}} {
				q := msg(tt.name, dns.TypeA, 1232)
				b, _ := q.Pack()
				n := roundTrip(t, c, b, buf) // for outside: the miss that fills the cache
				if m := rt.Unpack(t, buf[:n]); m.Id != q.Id || m.Rcode != tt.rcode {
					t.Fatalf("%s: answer %v", tt.name, m.MsgHdr)
				}
				if a := testing.AllocsPerRun(200, func() { roundTrip(t, c, b, buf) }); a != 0 {
					t.Errorf("%s: %v allocations per UDP round trip", tt.name, a)
				}
			}
		})
	}
}

// A burst of queries, several per batch, each gets its own answer: the
// zone's, the cache's, the upstream's (asynchronous, through the Sender),
// and a truncated one.
func TestUDPBurst(t *testing.T) {
	names := []string{web, suffix, "nope.default.svc.cluster.local.", big, outside}
	for _, rd := range readers {
		t.Run(rd.name, func(t *testing.T) {
			ts := startCached(t, rd.loop)
			c := dialUDP(t, ts.addr)
			c.SetDeadline(time.Now().Add(30 * time.Second))
			const n = 200
			want := make(map[uint16]string, n)
			for i := range n {
				name := names[i%len(names)]
				q := msg(strings.ToUpper(name[:1])+name[1:], dns.TypeA, 1232)
				q.Id = uint16(i + 1)
				b, _ := q.Pack()
				if _, err := c.Write(b); err != nil {
					t.Fatal(err)
				}
				want[q.Id] = q.Question[0].Name
			}
			buf := make([]byte, 65535)
			for len(want) > 0 {
				k, err := c.Read(buf)
				if err != nil {
					t.Fatalf("%d answers missing: %v", len(want), err)
				}
				m := rt.Unpack(t, buf[:k])
				qn, ok := want[m.Id]
				if !ok || len(m.Question) != 1 || m.Question[0].Name != qn {
					t.Fatalf("answer %d for %v: not the question asked (%q)", m.Id, m.Question, qn)
				}
				delete(want, m.Id)
				switch {
				case strings.EqualFold(qn, big):
					if !m.Truncated {
						t.Errorf("%s: not truncated", qn)
					}
				case strings.EqualFold(qn, web), strings.EqualFold(qn, outside):
					if m.Rcode != dns.RcodeSuccess || len(m.Answer) != 1 {
						t.Errorf("%s: %v", qn, m)
					}
				default:
					if m.Rcode != dns.RcodeNameError {
						t.Errorf("%s: rcode %d", qn, m.Rcode)
					}
				}
			}
		})
	}
}
