package resolver

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/nodedns/nodedns/internal/dnswire"
	"github.com/nodedns/nodedns/pkg/cache"
	rt "github.com/nodedns/nodedns/pkg/resolver/resolvertest"
	"github.com/nodedns/nodedns/pkg/zone"
)

const soa = "cluster.local. 30 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 5"

// testZone is the fake cluster zone most tests use.
func testZone(t testing.TB) *rt.Zone {
	z := new(rt.Zone)
	web := "web.default.svc.cluster.local."
	z.Set(t, web, dns.TypeA, rt.Result(t, zone.KindAnswer, web,
		[]string{web + " 5 IN A 10.0.0.1", web + " 5 IN A 10.0.0.2"}, nil, nil))
	z.Set(t, web, dns.TypeAAAA, rt.Result(t, zone.KindNoData, web, nil, []string{soa}, nil))
	z.Set(t, web, dns.TypeANY, rt.Result(t, zone.KindAnswer, web, []string{web + " 5 IN A 10.0.0.1"}, nil, nil))
	srv := "_http._tcp.web.default.svc.cluster.local."
	z.Set(t, srv, dns.TypeSRV, rt.Result(t, zone.KindAnswer, srv,
		[]string{srv + " 5 IN SRV 0 100 80 web.default.svc.cluster.local."}, nil,
		[]string{web + " 5 IN A 10.0.0.1"}))
	nx := "nope.default.svc.cluster.local."
	z.Set(t, nx, dns.TypeA, rt.Result(t, zone.KindNXDomain, nx, nil, []string{soa}, nil))
	suffix := "api.example.com.default.svc.cluster.local."
	z.Set(t, suffix, dns.TypeA, rt.Result(t, zone.KindSearchSuffix, suffix, nil, []string{soa}, nil))
	z.Set(t, "early.default.svc.cluster.local.", dns.TypeA, zone.Result{Kind: zone.KindNotSynced, Rcode: dns.RcodeServerFailure})
	// ExternalNames.
	z.Set(t, "ext.default.svc.cluster.local.", dns.TypeA, rt.Chase(t, "ext.default.svc.cluster.local.", "api.example.com."))
	z.Set(t, "ext2.default.svc.cluster.local.", dns.TypeA, rt.Chase(t, "ext2.default.svc.cluster.local.", "web.default.svc.cluster.local."))
	z.Set(t, "ext3.default.svc.cluster.local.", dns.TypeA, rt.Chase(t, "ext3.default.svc.cluster.local.", "ext2.default.svc.cluster.local."))
	z.Set(t, "loop1.default.svc.cluster.local.", dns.TypeA, rt.Chase(t, "loop1.default.svc.cluster.local.", "loop2.default.svc.cluster.local."))
	z.Set(t, "loop2.default.svc.cluster.local.", dns.TypeA, rt.Chase(t, "loop2.default.svc.cluster.local.", "loop1.default.svc.cluster.local."))
	z.Set(t, "extnx.default.svc.cluster.local.", dns.TypeA, rt.Chase(t, "extnx.default.svc.cluster.local.", "gone.example.com."))
	z.Set(t, "extin.default.svc.cluster.local.", dns.TypeA, rt.Chase(t, "extin.default.svc.cluster.local.", "nope.default.svc.cluster.local."))
	return z
}

func testUpstream(t testing.TB) *rt.Upstream {
	return rt.Static(t,
		"api.example.com. 60 IN A 192.0.2.10",
		"api.example.com. 60 IN A 192.0.2.11",
		"www.example.org. 60 IN CNAME web.example.org.",
		"www.example.org. 60 IN A 192.0.2.20", // Static returns CNAMEs of the name too
	)
}

func newResolver(t testing.TB, auth Authority, up Upstream, mod ...func(*Config)) *Resolver {
	t.Helper()
	cfg := Config{Authority: auth, Upstream: up, ClusterDomains: []string{"cluster.local"}}
	for _, f := range mod {
		f(&cfg)
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func rawMsg(flags, qd, an, ns, ar uint16, body ...[]byte) []byte {
	b := []byte{0x12, 0x34, byte(flags >> 8), byte(flags), byte(qd >> 8), byte(qd),
		byte(an >> 8), byte(an), byte(ns >> 8), byte(ns), byte(ar >> 8), byte(ar)}
	for _, p := range body {
		b = append(b, p...)
	}
	return b
}

var qA = []byte("\x03www\x07example\x03com\x00\x00\x01\x00\x01")

func TestResolve(t *testing.T) {
	type want struct {
		drop     bool
		rcode    int
		aa       bool
		tc       bool
		an       []string
		ns       []string
		ar       []string
		upstream int64 // exchanges expected
	}
	q := func(name string, qtype uint16) func(t *testing.T) []byte {
		return func(t *testing.T) []byte { return rt.Query(t, name, qtype, 1232) }
	}
	raw := func(b []byte) func(t *testing.T) []byte { return func(*testing.T) []byte { return b } }
	web := "web.default.svc.cluster.local."
	tests := []struct {
		name  string
		query func(t *testing.T) []byte
		proto Proto
		want  want
	}{
		{"zone answer echoes case", q("WEB.Default.svc.cluster.local.", dns.TypeA), UDP, want{rcode: 0, aa: true,
			an: []string{"WEB.Default.svc.cluster.local. 5 IN A 10.0.0.1", "WEB.Default.svc.cluster.local. 5 IN A 10.0.0.2"}}},
		{"zone SRV with additional", q("_http._tcp.web.default.svc.cluster.local.", dns.TypeSRV), UDP, want{aa: true,
			an: []string{"_http._tcp.web.default.svc.cluster.local. 5 IN SRV 0 100 80 web.default.svc.cluster.local."},
			ar: []string{web + " 5 IN A 10.0.0.1"}}},
		{"nodata", q(web, dns.TypeAAAA), UDP, want{aa: true, ns: []string{soa}}},
		{"nxdomain", q("nope.default.svc.cluster.local.", dns.TypeA), UDP, want{rcode: dns.RcodeNameError, aa: true, ns: []string{soa}}},
		{"search suffix", q("api.example.com.default.svc.cluster.local.", dns.TypeA), UDP, want{rcode: dns.RcodeNameError, aa: true, ns: []string{soa}}},
		{"not synced", q("early.default.svc.cluster.local.", dns.TypeA), UDP, want{rcode: dns.RcodeServerFailure}},
		{"ANY in the zone is the zone's", q(web, dns.TypeANY), UDP, want{aa: true, an: []string{web + " 5 IN A 10.0.0.1"}}},
		{"cluster name the zone does not claim is not forwarded", q("other.svc.cluster.local.", dns.TypeA), UDP, want{rcode: dns.RcodeServerFailure}},

		{"forward", q("api.example.com.", dns.TypeA), UDP, want{
			an: []string{"api.example.com. 60 IN A 192.0.2.10", "api.example.com. 60 IN A 192.0.2.11"}, upstream: 1}},
		{"forward nxdomain", q("gone.example.com.", dns.TypeA), UDP, want{rcode: dns.RcodeNameError, upstream: 1}},
		{"ANY outside: RFC 8482 HINFO, not forwarded", q("api.example.com.", dns.TypeANY), UDP, want{
			an: []string{`api.example.com. 3600 IN HINFO "RFC8482" ""`}}},

		{"chase upstream", q("ext.default.svc.cluster.local.", dns.TypeA), UDP, want{aa: true, upstream: 1, an: []string{
			"ext.default.svc.cluster.local. 5 IN CNAME api.example.com.",
			"api.example.com. 60 IN A 192.0.2.10", "api.example.com. 60 IN A 192.0.2.11"}}},
		{"chase in zone", q("Ext2.default.svc.cluster.local.", dns.TypeA), UDP, want{aa: true, an: []string{
			"Ext2.default.svc.cluster.local. 5 IN CNAME web.default.svc.cluster.local.",
			web + " 5 IN A 10.0.0.1", web + " 5 IN A 10.0.0.2"}}},
		{"chase two hops in zone", q("ext3.default.svc.cluster.local.", dns.TypeA), UDP, want{aa: true, an: []string{
			"ext3.default.svc.cluster.local. 5 IN CNAME ext2.default.svc.cluster.local.",
			"ext2.default.svc.cluster.local. 5 IN CNAME web.default.svc.cluster.local.",
			web + " 5 IN A 10.0.0.1", web + " 5 IN A 10.0.0.2"}}},
		{"chase loop", q("loop1.default.svc.cluster.local.", dns.TypeA), UDP, want{rcode: dns.RcodeServerFailure, aa: true, an: []string{
			"loop1.default.svc.cluster.local. 5 IN CNAME loop2.default.svc.cluster.local.",
			"loop2.default.svc.cluster.local. 5 IN CNAME loop1.default.svc.cluster.local.",
			"loop1.default.svc.cluster.local. 5 IN CNAME loop2.default.svc.cluster.local.",
			"loop2.default.svc.cluster.local. 5 IN CNAME loop1.default.svc.cluster.local.",
			"loop1.default.svc.cluster.local. 5 IN CNAME loop2.default.svc.cluster.local.",
			"loop2.default.svc.cluster.local. 5 IN CNAME loop1.default.svc.cluster.local.",
			"loop1.default.svc.cluster.local. 5 IN CNAME loop2.default.svc.cluster.local.",
			"loop2.default.svc.cluster.local. 5 IN CNAME loop1.default.svc.cluster.local.",
			"loop1.default.svc.cluster.local. 5 IN CNAME loop2.default.svc.cluster.local."}}},
		{"chase to nxdomain upstream", q("extnx.default.svc.cluster.local.", dns.TypeA), UDP, want{rcode: dns.RcodeNameError, aa: true, upstream: 1,
			an: []string{"extnx.default.svc.cluster.local. 5 IN CNAME gone.example.com."}}},
		{"chase to nxdomain in zone", q("extin.default.svc.cluster.local.", dns.TypeA), UDP, want{rcode: dns.RcodeNameError, aa: true,
			an: []string{"extin.default.svc.cluster.local. 5 IN CNAME nope.default.svc.cluster.local."}}},

		{"AXFR", q("cluster.local.", dns.TypeAXFR), TCP, want{rcode: dns.RcodeNotImplemented}},
		{"IXFR", q("cluster.local.", dns.TypeIXFR), UDP, want{rcode: dns.RcodeNotImplemented}},
		{"class CH", func(t *testing.T) []byte {
			m := new(dns.Msg)
			m.SetQuestion("version.bind.", dns.TypeTXT)
			m.Question[0].Qclass = dns.ClassCHAOS
			m.Id = 0x1234
			b, _ := m.Pack()
			return b
		}, UDP, want{rcode: dns.RcodeRefused}},
		{"EDNS version 1", func(t *testing.T) []byte {
			m := new(dns.Msg)
			m.SetQuestion(web, dns.TypeA)
			m.SetEdns0(1232, false)
			m.IsEdns0().SetVersion(1)
			m.Id = 0x1234
			b, _ := m.Pack()
			return b
		}, UDP, want{rcode: dns.RcodeBadVers}},
		{"qdcount 0", raw(rawMsg(0x0100, 0, 0, 0, 0)), UDP, want{rcode: dns.RcodeFormatError}},
		{"qdcount 2", raw(rawMsg(0x0100, 2, 0, 0, 0, qA, qA)), UDP, want{rcode: dns.RcodeFormatError}},
		{"label 64", raw(rawMsg(0x0100, 1, 0, 0, 0, []byte{64}, make([]byte, 64), []byte{0, 0, 1, 0, 1})), UDP, want{rcode: dns.RcodeFormatError}},
		{"compressed question", raw(rawMsg(0x0100, 1, 0, 0, 0, []byte{1, 'a', 0xC0, 12, 0, 1, 0, 1})), UDP, want{rcode: dns.RcodeFormatError}},
		{"opcode status", raw(rawMsg(2<<11, 1, 0, 0, 0, qA)), UDP, want{rcode: dns.RcodeNotImplemented}},
		{"response dropped", raw(rawMsg(0x8100, 1, 0, 0, 0, qA)), UDP, want{drop: true}},
		{"short header dropped", raw(rawMsg(0x0100, 1, 0, 0, 0)[:7]), UDP, want{drop: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := testUpstream(t)
			r := newResolver(t, testZone(t), up)
			msg := tt.query(t)
			out := r.Resolve(context.Background(), NewScratch(), make([]byte, 0, 512), msg, tt.proto, client)
			if got := up.Calls(); got != tt.want.upstream {
				t.Errorf("upstream exchanges = %d, want %d", got, tt.want.upstream)
			}
			if tt.want.drop {
				if out != nil {
					t.Fatalf("want drop, got %x", out)
				}
				return
			}
			m := rt.Unpack(t, out)
			if m.Id != 0x1234 || !m.Response || !m.RecursionAvailable {
				t.Errorf("header %+v", m.MsgHdr)
			}
			if m.Rcode != tt.want.rcode || m.Authoritative != tt.want.aa || m.Truncated != tt.want.tc {
				t.Errorf("rcode %s aa %v tc %v; want %s aa %v tc %v", dns.RcodeToString[m.Rcode], m.Authoritative, m.Truncated,
					dns.RcodeToString[tt.want.rcode], tt.want.aa, tt.want.tc)
			}
			rt.CheckSection(t, "answer", m.Answer, tt.want.an...)
			rt.CheckSection(t, "authority", m.Ns, tt.want.ns...)
			rt.CheckSection(t, "additional", m.Extra, tt.want.ar...)
			in := new(dns.Msg)
			if in.Unpack(msg) != nil || len(in.Question) != 1 {
				if len(m.Question) != 0 {
					t.Errorf("question %v echoed from a malformed query", m.Question)
				}
				return
			}
			if m.Rcode != dns.RcodeFormatError && (len(m.Question) != 1 || m.Question[0] != in.Question[0]) {
				t.Errorf("question %v not echoed verbatim (%v)", m.Question, in.Question[0])
			}
			if (in.IsEdns0() != nil) != (m.IsEdns0() != nil) {
				t.Errorf("OPT in reply %v, in query %v", m.IsEdns0() != nil, in.IsEdns0() != nil)
			}
		})
	}
}

// chanSender collects asynchronous answers.
type chanSender chan sent

type sent struct {
	msg []byte
	to  netip.AddrPort
}

func (c chanSender) Send(msg []byte, to netip.AddrPort) { c <- sent{append([]byte(nil), msg...), to} }

func (c chanSender) wait(t *testing.T) sent {
	t.Helper()
	select {
	case s := <-c:
		return s
	case <-time.After(5 * time.Second):
		t.Fatal("no asynchronous answer")
		return sent{}
	}
}

var client = netip.MustParseAddrPort("10.1.2.3:5353")

func TestHandleAsync(t *testing.T) {
	block := make(chan struct{})
	up := &rt.Upstream{ExchangeFunc: func(ctx context.Context, q []byte) ([]byte, error) {
		<-block
		return testUpstream(t).ExchangeFunc(ctx, q)
	}}
	r := newResolver(t, testZone(t), up)
	snd := make(chanSender, 4)
	s := NewScratch()
	msg := rt.Query(t, "api.example.com.", dns.TypeA, 0)
	if out := r.Handle(s, make([]byte, 0, 512), msg, UDP, snd, client); out != nil {
		t.Fatalf("forwarded query answered synchronously: %x", out)
	}
	// The read loop goes on while the upstream is blocked: a zone query
	// through the same Scratch, and the copied query is not disturbed.
	zq := rt.Query(t, "web.default.svc.cluster.local.", dns.TypeA, 0)
	if out := r.Handle(s, make([]byte, 0, 512), zq, UDP, snd, client); out == nil || rt.Unpack(t, out).Rcode != 0 {
		t.Fatalf("zone query while forwarding: %x", out)
	}
	for i := range msg {
		msg[i] = 0xff // the caller reuses its read buffer
	}
	close(block)
	got := snd.wait(t)
	if got.to != client {
		t.Errorf("answer sent to %v", got.to)
	}
	m := rt.Unpack(t, got.msg)
	if m.Id != 0x1234 || m.Rcode != 0 || len(m.Answer) != 2 || m.Question[0].Name != "api.example.com." {
		t.Errorf("async answer %v", m)
	}

	// A chase goes async too and keeps its own copy of the zone records.
	if out := r.Handle(s, nil, rt.Query(t, "ext.default.svc.cluster.local.", dns.TypeA, 1232), UDP, snd, client); out != nil {
		t.Fatalf("chase answered synchronously")
	}
	m = rt.Unpack(t, snd.wait(t).msg)
	rt.CheckSection(t, "chase answer", m.Answer, "ext.default.svc.cluster.local. 5 IN CNAME api.example.com.",
		"api.example.com. 60 IN A 192.0.2.10", "api.example.com. 60 IN A 192.0.2.11")
	if err := r.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestForwardFailures(t *testing.T) {
	mismatch := &rt.Upstream{ExchangeFunc: func(ctx context.Context, q []byte) ([]byte, error) {
		m := rt.Unpack(t, q)
		m.Question[0].Name = "evil.example.com."
		return testUpstream(t).ExchangeFunc(ctx, packMsg(t, m))
	}}
	short := &rt.Upstream{ExchangeFunc: func(context.Context, []byte) ([]byte, error) { return []byte{1, 2}, nil }}
	slow := &rt.Upstream{ExchangeFunc: func(ctx context.Context, q []byte) ([]byte, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}}
	for name, up := range map[string]*rt.Upstream{"error": rt.Failing(), "mismatch": mismatch, "short": short, "timeout": slow} {
		t.Run(name, func(t *testing.T) {
			r := newResolver(t, testZone(t), up, func(c *Config) { c.UpstreamTimeout = 50 * time.Millisecond })
			for _, qname := range []string{"api.example.com.", "ext.default.svc.cluster.local."} {
				out := r.Resolve(context.Background(), NewScratch(), nil, rt.Query(t, qname, dns.TypeA, 0), UDP, client)
				if m := rt.Unpack(t, out); m.Rcode != dns.RcodeServerFailure || len(m.Answer) != 0 || len(m.Question) != 1 {
					t.Errorf("%s: %v", qname, m)
				}
			}
		})
	}
}

func packMsg(t testing.TB, m *dns.Msg) []byte {
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestTruncation(t *testing.T) {
	big := "big.default.svc.cluster.local."
	var rrs, ups []string
	for i := range 60 {
		ip := netip.AddrFrom4([4]byte{10, 0, 1, byte(i)}).String()
		rrs = append(rrs, big+" 5 IN A "+ip)
		ups = append(ups, "big.example.com. 60 IN A "+ip)
	}
	z := testZone(t)
	z.Set(t, big, dns.TypeA, rt.Result(t, zone.KindAnswer, big, rrs, nil, nil))
	r := newResolver(t, z, rt.Static(t, ups...))
	for _, tt := range []struct {
		name   string
		edns   uint16
		proto  Proto
		wantTC bool
	}{
		{"udp no edns", 0, UDP, true},
		{"udp edns 4096", 4096, UDP, false}, // 60 A records: ~1000 octets, under our 1232
		{"udp edns 512", 512, UDP, true},
		{"tcp", 0, TCP, false},
	} {
		for _, qname := range []string{big, "big.example.com."} {
			t.Run(tt.name+" "+qname, func(t *testing.T) {
				out := r.Resolve(context.Background(), NewScratch(), nil, rt.Query(t, qname, dns.TypeA, tt.edns), tt.proto, client)
				m := rt.Unpack(t, out)
				if m.Truncated != tt.wantTC {
					t.Fatalf("TC = %v, want %v (%d octets)", m.Truncated, tt.wantTC, len(out))
				}
				if tt.wantTC && (len(m.Answer) != 0 || len(m.Question) != 1 || len(out) > 512) {
					t.Errorf("truncated answer: %d octets, %v", len(out), m)
				}
				if !tt.wantTC && len(m.Answer) != 60 {
					t.Errorf("%d answers", len(m.Answer))
				}
				if m.Id != 0x1234 {
					t.Errorf("id %#x", m.Id)
				}
			})
		}
	}
}

func TestMaxInFlightAndDrain(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 10)
	up := &rt.Upstream{ExchangeFunc: func(ctx context.Context, q []byte) ([]byte, error) {
		started <- struct{}{}
		select {
		case <-release:
			return testUpstream(t).ExchangeFunc(ctx, q)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}}
	r := newResolver(t, testZone(t), up, func(c *Config) { c.MaxInFlight = 2 })
	snd := make(chanSender, 10)
	s := NewScratch()
	msg := rt.Query(t, "api.example.com.", dns.TypeA, 0)
	// Two names: identical queries would share one exchange.
	for _, m := range [][]byte{msg, rt.Query(t, "www.example.org.", dns.TypeA, 0)} {
		if out := r.Handle(s, nil, m, UDP, snd, client); out != nil {
			t.Fatal("answered synchronously")
		}
	}
	<-started
	<-started
	out := r.Handle(s, nil, msg, UDP, snd, client)
	if out == nil || rt.Unpack(t, out).Rcode != dns.RcodeServerFailure {
		t.Fatalf("over MaxInFlight: %x", out)
	}

	// Drain waits for the two in flight: when it returns, both answers
	// have been sent.
	drained := make(chan error)
	go func() { drained <- r.Drain(context.Background()) }()
	close(release)
	if err := <-drained; err != nil {
		t.Fatal(err)
	}
	if len(snd) != 2 {
		t.Fatalf("Drain returned with %d of 2 answers sent", len(snd))
	}
	for range 2 {
		if m := rt.Unpack(t, snd.wait(t).msg); m.Rcode != 0 {
			t.Errorf("drained answer %v", m)
		}
	}
	// After Drain, forwards are refused with SERVFAIL at once.
	if out := r.Handle(s, nil, msg, UDP, snd, client); out == nil || rt.Unpack(t, out).Rcode != dns.RcodeServerFailure {
		t.Fatalf("forward after Drain: %x", out)
	}
	if err := r.Drain(context.Background()); err != nil {
		t.Errorf("second Drain: %v", err)
	}
}

func TestDrainTimeoutCancels(t *testing.T) {
	up := &rt.Upstream{ExchangeFunc: func(ctx context.Context, q []byte) ([]byte, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}}
	r := newResolver(t, testZone(t), up, func(c *Config) { c.UpstreamTimeout = time.Hour })
	snd := make(chanSender, 1)
	r.Handle(NewScratch(), nil, rt.Query(t, "api.example.com.", dns.TypeA, 0), UDP, snd, client)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := r.Drain(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Drain = %v", err)
	}
	// The cancelled exchange still answers SERVFAIL.
	if m := rt.Unpack(t, snd.wait(t).msg); m.Rcode != dns.RcodeServerFailure {
		t.Errorf("answer %v", m)
	}
	if err := r.Drain(context.Background()); err != nil {
		t.Errorf("Drain after all finished: %v", err)
	}
}

// fakeCache is a Cache holding one answer.
type fakeCache struct {
	mu   sync.Mutex
	name string
	msg  []byte
	sets int
}

func (c *fakeCache) Get(dst, msg []byte, q *dnswire.Query) ([]byte, cache.Hit) {
	if c.msg == nil || string(q.Name()) != c.name {
		return dst, cache.Miss
	}
	start := len(dst)
	dst = append(dst, c.msg...)
	dnswire.SetID(dst[start:], q.ID)
	return dst, cache.Fresh
}

func (c *fakeCache) Set(q *dnswire.Query, reply []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sets++
}

func (c *fakeCache) Fail(q *dnswire.Query) {}

func (c *fakeCache) Stale(dst, msg []byte, q *dnswire.Query) ([]byte, bool) { return dst, false }

func TestCacheSeam(t *testing.T) {
	up := testUpstream(t)
	reply, _ := up.ExchangeFunc(context.Background(), rt.Query(t, "api.example.com.", dns.TypeA, 0))
	c := &fakeCache{name: string(rt.Wire(t, "api.example.com.")), msg: reply}
	r := newResolver(t, testZone(t), up, func(cfg *Config) { cfg.Cache = c })
	q := rt.Query(t, "api.example.com.", dns.TypeA, 0)
	dnswire.SetID(q, 0x4321)
	out := r.Handle(NewScratch(), nil, q, UDP, nil, client)
	if out == nil {
		t.Fatal("cache hit not answered synchronously")
	}
	if m := rt.Unpack(t, out); m.Id != 0x4321 || len(m.Answer) != 2 || up.Calls() != 0 {
		t.Errorf("cache hit %v, %d upstream calls", m, up.Calls())
	}
	// A miss is forwarded and offered to the cache.
	out = r.Resolve(context.Background(), NewScratch(), nil, rt.Query(t, "www.example.org.", dns.TypeA, 0), UDP, client)
	if m := rt.Unpack(t, out); m.Rcode != 0 || up.Calls() != 1 || c.sets != 1 {
		t.Errorf("miss: %v, %d calls, %d sets", m, up.Calls(), c.sets)
	}
}

func TestNew(t *testing.T) {
	z, up := testZone(t), testUpstream(t)
	for _, cfg := range []Config{
		{Upstream: up},
		{Authority: z},
		{Authority: z, Upstream: up, ClusterDomains: []string{""}},
		{Authority: z, Upstream: up, ClusterDomains: []string{"a..b"}},
		{Authority: z, Upstream: up, ClusterDomains: []string{strings.Repeat("x", 64) + ".local"}},
		{Authority: z, Upstream: up, UDPSize: 100},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
	r := newResolver(t, z, up, func(c *Config) { c.ClusterDomains = []string{"Cluster.Local.", "example.internal"} })
	for name, want := range map[string]bool{
		"cluster.local.": true, "a.b.cluster.local.": true, "x.example.internal.": true,
		"xcluster.local.": false, "local.": false, "example.com.": false, ".": false,
	} {
		if got := r.inCluster(rt.Wire(t, name)); got != want {
			t.Errorf("inCluster(%s) = %v", name, got)
		}
	}
}

func TestAppendOwnedBy(t *testing.T) {
	target := rt.Wire(t, "web.default.svc.cluster.local.")
	src := rt.Records(t, "web.default.svc.cluster.local.",
		"web.default.svc.cluster.local. 5 IN A 10.0.0.1",
		"other.default.svc.cluster.local. 5 IN A 10.0.0.2")
	// No place to point at: the owner is written out.
	out, err := appendOwnedBy(nil, src, 2, target, -1)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"web.default.svc.cluster.local.\t5\tIN\tA\t10.0.0.1", "other.default.svc.cluster.local.\t5\tIN\tA\t10.0.0.2"} {
		rr, next, err := dns.UnpackRR(out, 0)
		if err != nil || rr.String() != want {
			t.Fatalf("record %q (%v), want %q", rr, err, want)
		}
		out = out[next:]
	}
	// A pointer other than 0xC00C cannot be relocated.
	bad := append([]byte{0xC0, 0x20}, src[2:16]...)
	if _, err := appendOwnedBy(nil, bad, 1, target, -1); err == nil {
		t.Error("foreign pointer accepted")
	}
	if _, err := appendOwnedBy(nil, src[:5], 1, target, -1); err == nil {
		t.Error("truncated record accepted")
	}
}
