package resolver

import (
	"context"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/nodedns/nodedns/internal/dnstest"
	"github.com/nodedns/nodedns/internal/dnswire"
	"github.com/nodedns/nodedns/pkg/cache"
	"github.com/nodedns/nodedns/pkg/metrics"
	rt "github.com/nodedns/nodedns/pkg/resolver/resolvertest"
	"github.com/nodedns/nodedns/pkg/upstream"
)

// The resolver with the real cache (pkg/cache) in front of an upstream:
// hits, coalescing, prefetch, serve-stale and failure caching end to end.

// fakeClock is the cache's clock, moved by hand.
type fakeClock struct{ ns atomic.Int64 }

func (f *fakeClock) Now() time.Time {
	return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).Add(time.Duration(f.ns.Load()))
}
func (f *fakeClock) Advance(d time.Duration) { f.ns.Add(int64(d)) }

// signalCache is a *cache.Cache that reports each Set and Fail, so tests
// can wait for background work without sleeping.
type signalCache struct {
	*cache.Cache
	sets, fails chan struct{}
}

func (c *signalCache) Set(q *dnswire.Query, reply []byte) {
	c.Cache.Set(q, reply)
	c.sets <- struct{}{}
}

func (c *signalCache) Fail(q *dnswire.Query) {
	c.Cache.Fail(q)
	c.fails <- struct{}{}
}

func newCache(t testing.TB, clk *fakeClock) *signalCache {
	t.Helper()
	c, err := cache.New(cache.Config{Now: clk.Now, StaleWindow: time.Hour, Prefetch: true, PrefetchHits: 3})
	if err != nil {
		t.Fatal(err)
	}
	return &signalCache{Cache: c, sets: make(chan struct{}, 100), fails: make(chan struct{}, 100)}
}

func recv(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatalf("no %s", what)
	}
}

// switchUpstream answers from Static records, or fails while down.
type switchUpstream struct {
	rt.Upstream
	down atomic.Bool
}

func newSwitchUpstream(t testing.TB, rrs ...string) *switchUpstream {
	u := &switchUpstream{}
	static := rt.Static(t, rrs...)
	u.ExchangeFunc = func(ctx context.Context, q []byte) ([]byte, error) {
		if u.down.Load() {
			return nil, rt.ErrUpstream
		}
		return static.ExchangeFunc(ctx, q)
	}
	return u
}

func queryID(t testing.TB, name string, qtype uint16, id uint16, edns uint16) []byte {
	b := rt.Query(t, name, qtype, edns)
	dnswire.SetID(b, id)
	return b
}

func TestCachedResolve(t *testing.T) {
	clk := new(fakeClock)
	c := newCache(t, clk)
	up := newSwitchUpstream(t, "api.example.com. 60 IN A 192.0.2.10", "api.example.com. 60 IN A 192.0.2.11")
	r := newResolver(t, testZone(t), up, func(cfg *Config) { cfg.Cache = c })
	s := NewScratch()

	// A miss: forwarded, stored, answered with the capped TTL.
	out := r.Resolve(context.Background(), s, nil, rt.Query(t, "api.example.com.", dns.TypeA, 1232), UDP, client)
	m := rt.Unpack(t, out)
	rt.CheckSection(t, "miss", m.Answer, "api.example.com. 30 IN A 192.0.2.10", "api.example.com. 30 IN A 192.0.2.11")
	recv(t, c.sets, "Set")
	if up.Calls() != 1 {
		t.Fatalf("%d upstream calls", up.Calls())
	}

	// Hits: synchronous through Handle (no Sender needed), the query's ID
	// and case, TTLs aged by the cache's clock.
	clk.Advance(12 * time.Second)
	out = r.Handle(s, nil, queryID(t, "API.Example.com.", dns.TypeA, 0x7777, 0), UDP, nil, client)
	if out == nil {
		t.Fatal("cache hit not answered synchronously")
	}
	m = rt.Unpack(t, out)
	if m.Id != 0x7777 || m.Question[0].Name != "API.Example.com." || m.IsEdns0() != nil {
		t.Errorf("hit header/question/OPT: %v", m)
	}
	rt.CheckSection(t, "hit", m.Answer, "API.Example.com. 18 IN A 192.0.2.10", "API.Example.com. 18 IN A 192.0.2.11")
	if up.Calls() != 1 {
		t.Errorf("hit went upstream: %d calls", up.Calls())
	}

	// Zone answers and ExternalName chases are not cached.
	before := c.Stats().Inserts
	r.Resolve(context.Background(), s, nil, rt.Query(t, "web.default.svc.cluster.local.", dns.TypeA, 0), UDP, client)
	for range 2 {
		r.Resolve(context.Background(), s, nil, rt.Query(t, "ext.default.svc.cluster.local.", dns.TypeA, 0), UDP, client)
	}
	if c.Stats().Inserts != before || up.Calls() != 3 {
		t.Errorf("zone or chase answers cached: %d inserts, %d calls", c.Stats().Inserts-before, up.Calls())
	}
}

// TestCachedTruncation: a cached answer larger than the client's UDP
// size is sent truncated, and in full over TCP.
func TestCachedTruncation(t *testing.T) {
	var rrs []string
	for i := range 60 {
		rrs = append(rrs, "big.example.com. 60 IN A "+netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}).String())
	}
	c := newCache(t, new(fakeClock))
	r := newResolver(t, testZone(t), rt.Static(t, rrs...), func(cfg *Config) { cfg.Cache = c })
	s := NewScratch()
	r.Resolve(context.Background(), s, nil, rt.Query(t, "big.example.com.", dns.TypeA, 1232), TCP, client)
	for _, tt := range []struct {
		proto  Proto
		edns   uint16
		wantTC bool
	}{{UDP, 0, true}, {UDP, 1232, false}, {TCP, 0, false}} {
		out := r.Handle(s, nil, rt.Query(t, "big.example.com.", dns.TypeA, tt.edns), tt.proto, nil, client)
		m := rt.Unpack(t, out)
		if m.Truncated != tt.wantTC || (tt.wantTC && len(m.Answer) != 0) || (!tt.wantTC && len(m.Answer) != 60) {
			t.Errorf("proto %d edns %d: TC %v, %d answers", tt.proto, tt.edns, m.Truncated, len(m.Answer))
		}
	}
	if c.Stats().Hits != 3 {
		t.Errorf("stats %+v", c.Stats())
	}
}

// TestCoalescing: identical misses while one exchange is in the air go
// upstream once; each waiter gets its own ID, question case and OPT.
func TestCoalescing(t *testing.T) {
	for _, withCache := range []bool{true, false} {
		name := "no cache"
		if withCache {
			name = "cache"
		}
		t.Run(name, func(t *testing.T) {
			entered, release := make(chan struct{}, 10), make(chan struct{})
			static := testUpstream(t)
			up := &rt.Upstream{ExchangeFunc: func(ctx context.Context, q []byte) ([]byte, error) {
				entered <- struct{}{}
				<-release
				return static.ExchangeFunc(ctx, q)
			}}
			var c *signalCache
			r := newResolver(t, testZone(t), up, func(cfg *Config) {
				if withCache {
					c = newCache(t, new(fakeClock))
					cfg.Cache = c
				}
			})
			snd := make(chanSender, 20)
			s := NewScratch()
			names := []string{"api.example.com.", "API.example.com.", "Api.Example.Com.", "api.EXAMPLE.com."}
			const n = 12
			for i := range n {
				var edns uint16
				if i%2 == 1 {
					edns = 1232
				}
				msg := queryID(t, names[i%len(names)], dns.TypeA, uint16(0x100+i), edns)
				if out := r.Handle(s, nil, msg, UDP, snd, client); out != nil {
					t.Fatalf("query %d answered synchronously", i)
				}
				if i == 0 {
					recv(t, entered, "upstream exchange")
				}
			}
			// A different key (DO) is a separate exchange.
			do := rt.Unpack(t, rt.Query(t, "api.example.com.", dns.TypeA, 1232))
			do.IsEdns0().SetDo()
			r.Handle(s, nil, packMsg(t, do), UDP, snd, client)
			recv(t, entered, "DO exchange")
			close(release)

			seen := map[uint16]bool{}
			gotDO := false
			for range n + 1 { // the DO answer may come in between
				m := rt.Unpack(t, snd.wait(t).msg)
				if m.Id == 0x1234 {
					if gotDO || !m.IsEdns0().Do() {
						t.Errorf("DO answer %v", m)
					}
					gotDO = true
					continue
				}
				i := int(m.Id) - 0x100
				if i < 0 || i >= n || seen[m.Id] {
					t.Fatalf("answer with ID %#x", m.Id)
				}
				seen[m.Id] = true
				if m.Question[0].Name != names[i%len(names)] || (m.IsEdns0() != nil) != (i%2 == 1) || len(m.Answer) != 2 {
					t.Errorf("answer %d: %v", i, m)
				}
				if !strings.EqualFold(m.Answer[0].Header().Name, "api.example.com.") {
					t.Errorf("answer %d owner %q", i, m.Answer[0].Header().Name)
				}
			}
			if up.Calls() != 2 {
				t.Errorf("%d upstream exchanges for one key (and one DO), want 2", up.Calls())
			}
			// A Resolve (TCP) after the flight: from the cache, or a new
			// exchange without one.
			out := r.Resolve(context.Background(), s, nil, rt.Query(t, "api.example.com.", dns.TypeA, 0), TCP, client)
			if m := rt.Unpack(t, out); len(m.Answer) != 2 {
				t.Errorf("Resolve after: %v", m)
			}
			want := int64(2)
			if !withCache {
				want = 3
			}
			if up.Calls() != want {
				t.Errorf("%d upstream exchanges, want %d", up.Calls(), want)
			}
			if err := r.Drain(context.Background()); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestCoalescingUpstream: the same through the real forwarder against an
// authoritative test server, counted in its query log.
func TestCoalescingUpstream(t *testing.T) {
	srv := dnstest.Start(t, "127.0.0.1:0", dnstest.WithZone("example.com"),
		dnstest.WithRecords("api.example.com. 60 IN A 192.0.2.10"))
	arrived, release := make(chan struct{}, 10), make(chan struct{})
	srv.OnQuery(func(dnstest.Query) {
		arrived <- struct{}{}
		<-release // hold the answer until every query has joined
	})
	fwd, err := upstream.New(upstream.Config{Servers: []netip.AddrPort{srv.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	c := newCache(t, new(fakeClock))
	r := newResolver(t, testZone(t), fwd, func(cfg *Config) { cfg.Cache = c })
	snd := make(chanSender, 50)
	s := NewScratch()
	const n = 50
	for i := range n {
		r.Handle(s, nil, queryID(t, "api.example.com.", dns.TypeA, uint16(i), 1232), UDP, snd, client)
		if i == 0 {
			recv(t, arrived, "query at the server")
		}
	}
	close(release)
	for range n {
		if m := rt.Unpack(t, snd.wait(t).msg); m.Rcode != 0 || len(m.Answer) != 1 {
			t.Fatalf("answer %v", m)
		}
	}
	if got := srv.Count("api.example.com.", dns.TypeA); got != 1 {
		t.Errorf("server got %d queries for %d identical misses", got, n)
	}
	// Now cached: more queries, no more upstream traffic.
	for range 10 {
		if out := r.Handle(s, nil, rt.Query(t, "api.example.com.", dns.TypeA, 0), UDP, snd, client); out == nil {
			t.Fatal("not a synchronous hit")
		}
	}
	if got := srv.Len(); got != 1 {
		t.Errorf("server got %d queries", got)
	}
	if err := r.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestPrefetchRefresh: a hot entry is refreshed while still valid, driven
// by the cache's clock, so it never misses.
func TestPrefetchRefresh(t *testing.T) {
	srv := dnstest.Start(t, "127.0.0.1:0", dnstest.WithRecords("hot.example.com. 60 IN A 192.0.2.10"))
	fwd, err := upstream.New(upstream.Config{Servers: []netip.AddrPort{srv.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	clk := new(fakeClock)
	c := newCache(t, clk)
	r := newResolver(t, testZone(t), fwd, func(cfg *Config) { cfg.Cache = c })
	snd := make(chanSender, 10)
	s := NewScratch()
	msg := rt.Query(t, "hot.example.com.", dns.TypeA, 0)
	r.Resolve(context.Background(), s, nil, msg, UDP, client) // the miss: stored, TTL 30
	recv(t, c.sets, "Set")
	hit := func() *dns.Msg {
		t.Helper()
		out := r.Handle(s, nil, msg, UDP, snd, client)
		if out == nil {
			t.Fatal("miss")
		}
		return rt.Unpack(t, out)
	}
	hit()
	hit()
	clk.Advance(27 * time.Second) // 3 s left: a tenth of 30
	if got := srv.Count("hot.example.com.", dns.TypeA); got != 1 {
		t.Fatalf("%d queries before the prefetch", got)
	}
	if m := hit(); m.Answer[0].Header().Ttl != 3 { // 3rd hit: prefetch starts, answer served
		t.Errorf("TTL %d", m.Answer[0].Header().Ttl)
	}
	recv(t, c.sets, "prefetch Set")
	if got := srv.Count("hot.example.com.", dns.TypeA); got != 2 {
		t.Fatalf("upstream got %d queries, want a second one while the entry was valid", got)
	}
	// Past the first entry's expiry: still a hit, from the refreshed one.
	clk.Advance(10 * time.Second)
	if m := hit(); m.Answer[0].Header().Ttl != 20 {
		t.Errorf("refreshed TTL %d", m.Answer[0].Header().Ttl)
	}
	if st := c.Stats(); st.Prefetches != 1 || st.Misses != 1 {
		t.Errorf("stats %+v", st)
	}
	if err := r.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestServeStaleResolver: when the upstream fails, an expired answer
// within the window is served with TTL 30 (and again, without asking,
// for 30 s); past the window, SERVFAIL.
func TestServeStaleResolver(t *testing.T) {
	clk := new(fakeClock)
	c := newCache(t, clk)
	up := newSwitchUpstream(t, "api.example.com. 60 IN A 192.0.2.10")
	met := metrics.New()
	r := newResolver(t, testZone(t), up, func(cfg *Config) { cfg.Cache = c; cfg.Metrics = met })
	s := NewScratch()
	snd := make(chanSender, 10)
	msg := rt.Query(t, "api.example.com.", dns.TypeA, 1232)
	r.Resolve(context.Background(), s, nil, msg, UDP, client)
	recv(t, c.sets, "Set")

	up.down.Store(true)
	clk.Advance(31 * time.Second) // expired
	if out := r.Handle(s, nil, msg, UDP, snd, client); out != nil {
		t.Fatal("expired answer served before asking the upstream")
	}
	m := rt.Unpack(t, snd.wait(t).msg)
	if m.Rcode != 0 || len(m.Answer) != 1 || m.Answer[0].Header().Ttl != cache.StaleTTL {
		t.Fatalf("stale answer %v", m)
	}
	recv(t, c.fails, "Fail")
	calls := up.Calls()
	// Within 30 s of the failure: stale at once, no upstream attempt.
	clk.Advance(20 * time.Second)
	out := r.Handle(s, nil, msg, UDP, snd, client)
	if out == nil || rt.Unpack(t, out).Answer[0].Header().Ttl != cache.StaleTTL || up.Calls() != calls {
		t.Fatalf("after the failure: %v, %d calls", out, up.Calls()-calls)
	}
	// TCP too.
	out = r.Resolve(context.Background(), s, nil, msg, TCP, client)
	if m := rt.Unpack(t, out); len(m.Answer) != 1 || up.Calls() != calls {
		t.Fatalf("TCP after the failure: %v", m)
	}
	if st := c.Stats(); st.Stale != 3 {
		t.Errorf("stale answers counted: %d", st.Stale)
	}
	// Answered from the cache's stale entry, so labelled stale, not cache.
	for src, want := range map[string]float64{"stale": 3, "cache": 0} {
		if got := sample(t, met.Registry(), "nodedns_responses_total", map[string]string{"source": src}); got != want {
			t.Errorf("responses_total{source=%q} = %v, want %v", src, got, want)
		}
	}
	// Past the window: SERVFAIL, and then SERVFAIL from the cache briefly.
	clk.Advance(2 * time.Hour)
	r.Handle(s, nil, msg, UDP, snd, client)
	if m := rt.Unpack(t, snd.wait(t).msg); m.Rcode != dns.RcodeServerFailure {
		t.Fatalf("past the window: %v", m)
	}
	recv(t, c.fails, "Fail")
	calls = up.Calls()
	out = r.Handle(s, nil, msg, UDP, snd, client)
	if out == nil || rt.Unpack(t, out).Rcode != dns.RcodeServerFailure || up.Calls() != calls {
		t.Fatalf("cached SERVFAIL: %v", out)
	}
	clk.Advance(cache.DefaultServFailTTL)
	up.down.Store(false) // recovered
	r.Handle(s, nil, msg, UDP, snd, client)
	if m := rt.Unpack(t, snd.wait(t).msg); m.Rcode != 0 || m.Answer[0].Header().Ttl != 30 {
		t.Fatalf("after recovery: %v", m)
	}
	if err := r.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestServeStaleSilentUpstream: the same with a real forwarder and a
// server that stops answering: the timeout is the failure.
func TestServeStaleSilentUpstream(t *testing.T) {
	srv := dnstest.Start(t, "127.0.0.1:0", dnstest.WithRecords("api.example.com. 60 IN A 192.0.2.10"))
	fwd, err := upstream.New(upstream.Config{Servers: []netip.AddrPort{srv.Addr()}, Timeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	clk := new(fakeClock)
	c := newCache(t, clk)
	r := newResolver(t, testZone(t), fwd, func(cfg *Config) { cfg.Cache = c; cfg.UpstreamTimeout = time.Second })
	msg := rt.Query(t, "api.example.com.", dns.TypeA, 0)
	s := NewScratch()
	r.Resolve(context.Background(), s, nil, msg, UDP, client)
	srv.SetBehavior(dnstest.Behavior{Drop: true})
	clk.Advance(time.Minute)
	m := rt.Unpack(t, r.Resolve(context.Background(), s, nil, msg, UDP, client))
	if m.Rcode != 0 || len(m.Answer) != 1 || m.Answer[0].Header().Ttl != cache.StaleTTL {
		t.Fatalf("stale answer %v", m)
	}
	if got := srv.Count("api.example.com.", dns.TypeA); got != 2 {
		t.Errorf("server got %d queries", got)
	}
}

// TestServFailCached: an upstream SERVFAIL is answered SERVFAIL and
// cached briefly: the next query does not go upstream.
func TestServFailCached(t *testing.T) {
	clk := new(fakeClock)
	c := newCache(t, clk)
	up := &rt.Upstream{ExchangeFunc: func(ctx context.Context, q []byte) ([]byte, error) {
		m := rt.Unpack(t, q)
		m.Response, m.Rcode = true, dns.RcodeServerFailure
		return packMsg(t, m), nil
	}}
	r := newResolver(t, testZone(t), up, func(cfg *Config) { cfg.Cache = c })
	s := NewScratch()
	msg := rt.Query(t, "broken.example.com.", dns.TypeA, 0)
	for i, want := range []int64{1, 1, 2} {
		if i == 2 {
			clk.Advance(cache.DefaultServFailTTL)
		}
		out := r.Resolve(context.Background(), s, nil, msg, UDP, client)
		if m := rt.Unpack(t, out); m.Rcode != dns.RcodeServerFailure || up.Calls() != want {
			t.Errorf("query %d: rcode %d, %d calls, want %d", i, m.Rcode, up.Calls(), want)
		}
	}
}

func BenchmarkHandleCacheHit(b *testing.B) {
	clk := new(fakeClock)
	c := newCache(b, clk)
	up := testUpstream(b)
	r := newResolver(b, testZone(b), up, func(cfg *Config) { cfg.Cache = c })
	msg := rt.Query(b, "api.example.com.", dns.TypeA, 1232)
	s := NewScratch()
	buf := make([]byte, 0, 65535)
	r.Resolve(context.Background(), s, buf, msg, UDP, client)
	clk.Advance(time.Second)
	if out := r.Handle(s, buf, msg, UDP, nil, client); out == nil {
		b.Fatal("no hit")
	}
	b.ReportAllocs()
	for b.Loop() {
		r.Handle(s, buf, msg, UDP, nil, client)
	}
}
