package resolver

import (
	"context"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/nodedns/nodedns/internal/dnswire"
	"github.com/nodedns/nodedns/pkg/metrics"
	rt "github.com/nodedns/nodedns/pkg/resolver/resolvertest"
	"github.com/nodedns/nodedns/pkg/zone"
)

// The zone path must not allocate (SPEC: ndots:5; DESIGN: examples 5).
func TestZonePathAllocs(t *testing.T) {
	up := testUpstream(t)
	reply, _ := up.ExchangeFunc(context.Background(), rt.Query(t, "cached.example.com.", dns.TypeA, 0))
	c := &fakeCache{name: string(rt.Wire(t, "cached.example.com.")), msg: reply}
	// With metrics on: counting an answer must not allocate either.
	r := newResolver(t, testZone(t), up, func(cfg *Config) { cfg.Cache = c; cfg.Metrics = metrics.New() })
	tests := []struct {
		name  string
		msg   []byte
		rcode int
	}{
		{"answer", rt.Query(t, "web.default.svc.cluster.local.", dns.TypeA, 1232), dns.RcodeSuccess},
		{"search suffix NXDOMAIN", rt.Query(t, "api.example.com.default.svc.cluster.local.", dns.TypeA, 1232), dns.RcodeNameError},
		{"NODATA", rt.Query(t, "web.default.svc.cluster.local.", dns.TypeAAAA, 0), dns.RcodeSuccess},
		{"NXDOMAIN", rt.Query(t, "nope.default.svc.cluster.local.", dns.TypeA, 0), dns.RcodeNameError},
		{"not synced", rt.Query(t, "early.default.svc.cluster.local.", dns.TypeA, 0), dns.RcodeServerFailure},
		{"ANY outside", rt.Query(t, "api.example.com.", dns.TypeANY, 0), dns.RcodeSuccess},
		{"cache hit (a cached NXDOMAIN)", rt.Query(t, "cached.example.com.", dns.TypeA, 0), dns.RcodeNameError},
		{"FORMERR", rawMsg(0x0100, 2, 0, 0, 0, qA, qA), dns.RcodeFormatError},
		{"NOTIMP", rawMsg(2<<11, 1, 0, 0, 0, qA), dns.RcodeNotImplemented},
	}
	s := NewScratch()
	buf := make([]byte, 0, 65535)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := r.Handle(s, buf, tt.msg, UDP, nil, client)
			if out == nil {
				t.Fatal("no synchronous answer")
			}
			if m := rt.Unpack(t, out); m.Rcode != tt.rcode {
				t.Fatalf("rcode %d, want %d", m.Rcode, tt.rcode)
			}
			if n := testing.AllocsPerRun(200, func() { r.Handle(s, buf, tt.msg, UDP, nil, client) }); n != 0 {
				t.Errorf("Handle allocates %v times per query", n)
			}
			if n := testing.AllocsPerRun(200, func() { r.Resolve(context.Background(), s, buf, tt.msg, TCP, client) }); n != 0 {
				t.Errorf("Resolve allocates %v times per query", n)
			}
		})
	}
	// Through the StoreAuthority adapter and an (unsynced) zone.Store too.
	t.Run("store", func(t *testing.T) {
		r := newResolver(t, StoreAuthority{Store: new(zoneStore)}, up)
		msg := rt.Query(t, "web.default.svc.cluster.local.", dns.TypeA, 0)
		if n := testing.AllocsPerRun(200, func() { r.Handle(s, buf, msg, UDP, nil, client) }); n != 0 {
			t.Errorf("Handle allocates %v times per query", n)
		}
	})
}

// Cache hits through the real cache must not allocate either: fresh (TTLs
// aged), stale after a failure, and a cached SERVFAIL.
func TestCachePathAllocs(t *testing.T) {
	clk := new(fakeClock)
	c := newCache(t, clk)
	up := newSwitchUpstream(t, "api.example.com. 60 IN A 192.0.2.10", "old.example.com. 60 IN A 192.0.2.11")
	r := newResolver(t, testZone(t), up, func(cfg *Config) { cfg.Cache = c })
	s := NewScratch()
	buf := make([]byte, 0, 65535)
	old := rt.Query(t, "old.example.com.", dns.TypeA, 1232)
	r.Resolve(context.Background(), s, buf, old, UDP, client)
	clk.Advance(40 * time.Second) // old expires
	fresh := rt.Query(t, "Api.Example.com.", dns.TypeA, 1232)
	r.Resolve(context.Background(), s, buf, fresh, UDP, client)
	clk.Advance(5 * time.Second)
	up.down.Store(true)
	r.Resolve(context.Background(), s, buf, old, UDP, client) // fails: served stale, marked
	failed := rt.Query(t, "down.example.com.", dns.TypeA, 0)
	r.Resolve(context.Background(), s, buf, failed, UDP, client) // fails: SERVFAIL cached
	tests := []struct {
		name  string
		msg   []byte
		rcode int
		ttl   uint32
	}{
		{"fresh hit", fresh, dns.RcodeSuccess, 25},
		{"stale after a failure", old, dns.RcodeSuccess, 30},
		{"cached SERVFAIL", failed, dns.RcodeServerFailure, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls := up.Calls()
			out := r.Handle(s, buf, tt.msg, UDP, nil, client)
			if out == nil {
				t.Fatal("no synchronous answer")
			}
			m := rt.Unpack(t, out)
			if m.Rcode != tt.rcode || (len(m.Answer) > 0 && m.Answer[0].Header().Ttl != tt.ttl) {
				t.Fatalf("answer %v", m)
			}
			if n := testing.AllocsPerRun(200, func() { r.Handle(s, buf, tt.msg, UDP, nil, client) }); n != 0 {
				t.Errorf("Handle allocates %v times per query", n)
			}
			if n := testing.AllocsPerRun(200, func() { r.Resolve(context.Background(), s, buf, tt.msg, TCP, client) }); n != 0 {
				t.Errorf("Resolve allocates %v times per query", n)
			}
			if up.Calls() != calls {
				t.Error("went upstream")
			}
		})
	}
}

func benchHandle(b *testing.B, name string, qtype uint16) {
	r := newResolver(b, testZone(b), testUpstream(b))
	msg := rt.Query(b, name, qtype, 1232)
	s := NewScratch()
	buf := make([]byte, 0, 65535)
	if out := r.Handle(s, buf, msg, UDP, nil, client); out == nil {
		b.Fatal("no answer")
	}
	b.ReportAllocs()
	for b.Loop() {
		r.Handle(s, buf, msg, UDP, nil, client)
	}
}

func BenchmarkHandleZoneAnswer(b *testing.B) {
	benchHandle(b, "web.default.svc.cluster.local.", dns.TypeA)
}

func BenchmarkHandleSearchSuffix(b *testing.B) {
	benchHandle(b, "api.example.com.default.svc.cluster.local.", dns.TypeA)
}

func BenchmarkHandleNoData(b *testing.B) {
	benchHandle(b, "web.default.svc.cluster.local.", dns.TypeAAAA)
}

func BenchmarkHandleANY(b *testing.B) {
	benchHandle(b, "api.example.com.", dns.TypeANY)
}

// BenchmarkHandleForward measures the asynchronous path with an upstream
// that answers at once from a prepared reply.
func BenchmarkHandleForward(b *testing.B) {
	msg := rt.Query(b, "api.example.com.", dns.TypeA, 1232)
	reply, _ := testUpstream(b).ExchangeFunc(context.Background(), msg)
	up := &rt.Upstream{ExchangeFunc: func(_ context.Context, q []byte) ([]byte, error) {
		out := append([]byte(nil), reply...)
		dnswire.SetID(out, dnswire.ID(q))
		return out, nil
	}}
	r := newResolver(b, testZone(b), up, func(c *Config) { c.MaxInFlight = 1 << 20 })
	snd := make(chanSender, 1024)
	done := make(chan struct{})
	go func() {
		for range snd {
		}
		close(done)
	}()
	s := NewScratch()
	b.ReportAllocs()
	for b.Loop() {
		r.Handle(s, nil, msg, UDP, snd, client)
	}
	if err := r.Drain(context.Background()); err != nil {
		b.Fatal(err)
	}
	close(snd)
	<-done
}

type zoneStore = zone.Store
