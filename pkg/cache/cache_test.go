package cache

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/nodedns/nodedns/internal/dnswire"
)

const (
	soa     = "example.com. 60 IN SOA ns1.example.com. hostmaster.example.com. 1 7200 1800 86400 3"
	soaLong = "example.com. 3600 IN SOA ns1.example.com. hostmaster.example.com. 1 7200 1800 86400 3600"
)

// TestTTL pins the TTL policy: what is cached, for how long, and the TTLs
// the first hit carries.
func TestTTL(t *testing.T) {
	name := "www.example.com."
	tests := []struct {
		name     string
		rcode    int
		an, ns   []string
		ar       []string
		tc       bool
		want     uint32   // entry TTL; 0: not cached
		wantTTLs []uint32 // in the cached answer, at age 0
	}{
		{"positive: smallest TTL", 0, []string{name + " 20 IN CNAME web.example.com.", "web.example.com. 25 IN A 192.0.2.1"}, nil, nil, false,
			20, []uint32{20, 20}},
		{"positive: capped by MaxTTL", 0, []string{name + " 300 IN A 192.0.2.1"}, nil, nil, false, 30, []uint32{30}},
		{"positive: authority counts", 0, []string{name + " 300 IN A 192.0.2.1"}, []string{"example.com. 12 IN NS ns1.example.com."}, nil, false,
			12, []uint32{12, 12}},
		{"positive: additional does not count, is capped", 0, []string{name + " 20 IN MX 10 mx.example.com."}, nil,
			[]string{"mx.example.com. 3 IN A 192.0.2.2", "mx.example.com. 600 IN AAAA 2001:db8::2"}, false, 20, []uint32{20, 3, 20}},
		{"positive: top bit set counts as large", 0, []string{name + " 2147483648 IN A 192.0.2.1"}, nil, nil, false, 30, []uint32{30}},
		{"NXDOMAIN: SOA MINIMUM", dns.RcodeNameError, nil, []string{soa}, nil, false, 3, []uint32{3}},
		{"NXDOMAIN: SOA TTL below MINIMUM", dns.RcodeNameError, nil,
			[]string{"example.com. 2 IN SOA ns1.example.com. h.example.com. 1 7200 1800 86400 300"}, nil, false, 2, []uint32{2}},
		{"NXDOMAIN: capped by MaxNegativeTTL", dns.RcodeNameError, nil, []string{soaLong}, nil, false, 5, []uint32{5}},
		{"NXDOMAIN after a CNAME", dns.RcodeNameError, []string{name + " 60 IN CNAME gone.example.com."}, []string{soaLong}, nil, false,
			5, []uint32{5, 5}},
		{"NODATA: SOA", 0, nil, []string{soaLong}, nil, false, 5, []uint32{5}},
		{"NXDOMAIN without SOA: not cached (RFC 2308 §5)", dns.RcodeNameError, nil, nil, nil, false, 0, nil},
		{"NODATA without SOA: not cached", 0, nil, []string{"example.com. 60 IN NS ns1.example.com."}, nil, false, 0, nil},
		{"TTL 0: not cached", 0, []string{name + " 0 IN A 192.0.2.1", name + " 60 IN A 192.0.2.2"}, nil, nil, false, 0, nil},
		{"TC: not cached", 0, []string{name + " 60 IN A 192.0.2.1"}, nil, nil, true, 0, nil},
		{"SERVFAIL: not stored by Set", dns.RcodeServerFailure, nil, nil, nil, false, 0, nil},
		{"REFUSED: not cached", dns.RcodeRefused, nil, nil, nil, false, 0, nil},
		{"FORMERR: not cached", dns.RcodeFormatError, nil, nil, nil, false, 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := newCache(t)
			r := query(t, name, dns.TypeA, true)
			up := answer(t, r, tt.rcode, tt.an, tt.ns, tt.ar)
			if tt.tc {
				up[2] |= byte(dnswire.FlagTC >> 8)
			}
			var l dnswire.Reply
			if err := dnswire.ParseReply(up, &l); err != nil {
				t.Fatal(err)
			}
			if got := ttl(up, &l, c.maxTTL, c.maxNeg); got != tt.want {
				t.Errorf("ttl = %d, want %d", got, tt.want)
			}
			c.Set(&r.q, up)
			m := get(t, c, r)
			if tt.want == 0 {
				if m != nil || c.Len() != 0 {
					t.Fatalf("cached: %v", m)
				}
				return
			}
			if m == nil {
				t.Fatal("not cached")
			}
			if m.Rcode != tt.rcode || !equalTTLs(ttls(m), tt.wantTTLs) {
				t.Errorf("rcode %d TTLs %v, want %d %v", m.Rcode, ttls(m), tt.rcode, tt.wantTTLs)
			}
			// Set capped the TTLs of the reply it was given too, so that
			// the answer relayed now says what the hits will say.
			if rm := unpack(t, up); !equalTTLs(ttls(rm), tt.wantTTLs) {
				t.Errorf("reply TTLs after Set %v, want %v", ttls(rm), tt.wantTTLs)
			}
		})
	}
}

// TestTTLDecrement: a hit's TTLs are lowered by the entry's age, whole
// seconds, and never reach 0 while it is fresh.
func TestTTLDecrement(t *testing.T) {
	c, clk := newCache(t)
	r := query(t, "www.example.com.", dns.TypeA, false)
	c.Set(&r.q, answer(t, r, 0, []string{"www.example.com. 30 IN A 192.0.2.1"}, nil,
		[]string{"www.example.com. 4 IN TXT \"extra\""}))
	for _, step := range []struct {
		at   time.Duration
		want []uint32 // nil: a miss
	}{
		{0, []uint32{30, 4}},
		{999 * time.Millisecond, []uint32{30, 4}},
		{time.Second, []uint32{29, 3}},
		{10 * time.Second, []uint32{20, 0}},
		{29*time.Second + 900*time.Millisecond, []uint32{1, 0}},
		{30 * time.Second, nil},
	} {
		clk.ns.Store(int64(step.at))
		m := get(t, c, r)
		switch {
		case step.want == nil && m != nil:
			t.Errorf("at %v: hit %v after expiry", step.at, ttls(m))
		case step.want != nil && m == nil:
			t.Errorf("at %v: miss", step.at)
		case m != nil && !equalTTLs(ttls(m), step.want):
			t.Errorf("at %v: TTLs %v, want %v", step.at, ttls(m), step.want)
		}
	}
}

// TestHitPatches: a hit carries the query's ID, question case, RD, and an
// OPT record only when the query had one, with our payload size and its DO.
func TestHitPatches(t *testing.T) {
	c, _ := newCache(t)
	stored := query(t, "example.com.", dns.TypeA, true)
	c.Set(&stored.q, answer(t, stored, 0, []string{"example.com. 30 IN A 192.0.2.1"}, nil, nil))

	for _, tt := range []struct {
		name string
		edns bool
		mod  func(*dns.Msg)
	}{
		{"case and ID", true, func(m *dns.Msg) { m.Id = 0x4321 }},
		{"no EDNS: no OPT", false, func(m *dns.Msg) { m.Id = 0x4321 }},
		{"RD clear", false, func(m *dns.Msg) { m.Id, m.RecursionDesired = 0x4321, false }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := query(t, "ExAmPle.COM.", dns.TypeA, tt.edns, tt.mod)
			m := get(t, c, r)
			if m == nil {
				t.Fatal("miss")
			}
			in := unpack(t, r.msg)
			if m.Id != 0x4321 || !m.Response || m.RecursionDesired != in.RecursionDesired || !m.RecursionAvailable {
				t.Errorf("header %+v", m.MsgHdr)
			}
			if m.Question[0].Name != "ExAmPle.COM." {
				t.Errorf("question %q: not the query's case", m.Question[0].Name)
			}
			// The owner points at the question: it takes its case too.
			if got, want := rrs(m.Answer), normalize(t, "ExAmPle.COM. 30 IN A 192.0.2.1"); got != want {
				t.Errorf("answer %q, want %q", got, want)
			}
			opt := m.IsEdns0()
			if (opt != nil) != tt.edns {
				t.Fatalf("OPT %v, query EDNS %v", opt, tt.edns)
			}
			if opt != nil && (opt.UDPSize() != dnswire.DefaultUDPSize || opt.Do()) {
				t.Errorf("OPT %v", opt)
			}
		})
	}
}

// TestKeyBits: DO and CD make separate entries; EDNS alone does not.
func TestKeyBits(t *testing.T) {
	c, _ := newCache(t)
	name := "www.example.com."
	plain := query(t, name, dns.TypeA, true)
	do := query(t, name, dns.TypeA, true, withDO)
	cd := query(t, name, dns.TypeA, true, withCD)
	c.Set(&do.q, answer(t, do, 0, []string{name + " 30 IN A 192.0.2.1", name + " 30 IN RRSIG A 13 3 30 20260101000000 20250101000000 1 example.com. AAAA"}, nil, nil))
	if get(t, c, plain) != nil || get(t, c, cd) != nil {
		t.Fatal("a DO answer served to a query without DO")
	}
	if m := get(t, c, do); m == nil || len(m.Answer) != 2 || !m.IsEdns0().Do() {
		t.Fatalf("DO hit %v", m)
	}
	c.Set(&cd.q, answer(t, cd, 0, []string{name + " 30 IN A 192.0.2.9"}, nil, nil))
	if m := get(t, c, cd); m == nil || !m.CheckingDisabled || m.Answer[0].(*dns.A).A.String() != "192.0.2.9" {
		t.Fatalf("CD hit %v", m)
	}
	if get(t, c, plain) != nil {
		t.Fatal("a CD answer served to a query without CD")
	}
	if m := get(t, c, query(t, name, dns.TypeAAAA, true, withCD)); m != nil {
		t.Fatal("type not in the key")
	}
	c.Set(&plain.q, answer(t, plain, 0, []string{name + " 30 IN A 192.0.2.5"}, nil, nil))
	if m := get(t, c, query(t, name, dns.TypeA, false)); m == nil || m.Answer[0].(*dns.A).A.String() != "192.0.2.5" {
		t.Fatalf("EDNS should not be in the key: %v", m)
	}
	if c.Len() != 3 {
		t.Errorf("%d entries, want 3", c.Len())
	}
}

// TestCollision: with every key hashing alike, the stored question keeps
// each query from another name's answer.
func TestCollision(t *testing.T) {
	c, _ := newCache(t)
	c.testHash = func(uint64) uint64 { return 42 }
	a := query(t, "a.example.com.", dns.TypeA, false)
	b := query(t, "b.example.com.", dns.TypeA, false)
	aaaa := query(t, "a.example.com.", dns.TypeAAAA, false)
	c.Set(&a.q, answer(t, a, 0, []string{"a.example.com. 30 IN A 192.0.2.1"}, nil, nil))
	for _, r := range []*req{b, aaaa, query(t, "a.example.com.", dns.TypeA, false, withDO)} {
		if m := get(t, c, r); m != nil {
			t.Fatalf("%v answered from another key's entry: %v", r.q.Type, m)
		}
		if _, ok := c.Stale(nil, r.msg, &r.q); ok {
			t.Fatal("Stale answered from another key's entry")
		}
	}
	// A Set of b takes the slot; a is then a miss, b a hit.
	c.Set(&b.q, answer(t, b, 0, []string{"b.example.com. 30 IN A 192.0.2.2"}, nil, nil))
	if get(t, c, a) != nil {
		t.Error("a still answered")
	}
	if m := get(t, c, b); m == nil || m.Answer[0].Header().Name != "b.example.com." {
		t.Errorf("b: %v", m)
	}
	// Set refuses a reply whose question is not the query's.
	c.Set(&a.q, answer(t, b, 0, []string{"b.example.com. 30 IN A 192.0.2.66"}, nil, nil))
	if m := get(t, c, b); m == nil || m.Answer[0].(*dns.A).A.String() != "192.0.2.2" {
		t.Errorf("b after a mismatched Set: %v", m)
	}
	if get(t, c, a) != nil {
		t.Error("mismatched reply stored for a")
	}
}

// TestSizeBound: a flood of unique names never grows the cache past Size;
// each insert over it evicts one entry.
func TestSizeBound(t *testing.T) {
	const size, names = 1000, 100_000
	c, _ := newCache(t, func(cfg *Config) { cfg.Size = size })
	if len(c.shards) != DefaultShards {
		t.Fatalf("%d shards", len(c.shards))
	}
	// One query and reply, renamed in place per name (packing 100k
	// messages would dominate the test).
	r := query(t, "n000000.example.com.", dns.TypeA, false)
	up := answer(t, r, 0, []string{"n000000.example.com. 30 IN A 192.0.2.1"}, nil, nil)
	reply := make([]byte, len(up))
	for i := range names {
		digits := fmt.Sprintf("%06d", i)
		copy(r.msg[14:20], digits)
		if err := dnswire.ParseQuery(r.msg, &r.q); err != nil {
			t.Fatal(err)
		}
		copy(reply, up)
		copy(reply[14:20], digits)
		c.Set(&r.q, reply)
		if i%997 == 0 {
			if n := c.Len(); n > size {
				t.Fatalf("after %d names: %d entries", i+1, n)
			}
			if get(t, c, r) == nil {
				t.Fatalf("name %d not stored", i)
			}
		}
	}
	st := c.Stats()
	// 100k names over 64 shards fill every shard: exactly Size remain.
	if st.Entries != size || st.Inserts != names || st.Evictions != names-size {
		t.Errorf("stats %+v, want %d entries, %d inserts, %d evictions", st, size, names, names-size)
	}
}

// TestShardSizes: the shards' capacities add up to Size exactly, and a
// Size below the shard count uses fewer shards.
func TestShardSizes(t *testing.T) {
	for _, tt := range []struct{ size, shards, wantShards int }{
		{10_000, 64, 64}, {1000, 64, 64}, {100, 64, 64}, {63, 64, 32}, {1, 64, 1}, {5, 3, 4}, {1000, 1, 1},
	} {
		c, _ := newCache(t, func(cfg *Config) { cfg.Size, cfg.Shards = tt.size, tt.shards })
		sum := 0
		for i := range c.shards {
			sum += c.shards[i].size
		}
		if len(c.shards) != tt.wantShards || sum != tt.size {
			t.Errorf("Size %d Shards %d: %d shards holding %d", tt.size, tt.shards, len(c.shards), sum)
		}
	}
}

// TestEvictionOrder: the least recently used entry goes first.
func TestEvictionOrder(t *testing.T) {
	c, _ := newCache(t, func(cfg *Config) { cfg.Size, cfg.Shards = 2, 1 })
	set := func(name string) *req {
		r := query(t, name, dns.TypeA, false)
		c.Set(&r.q, answer(t, r, 0, []string{name + " 30 IN A 192.0.2.1"}, nil, nil))
		return r
	}
	a, b := set("a.example."), set("b.example.")
	if get(t, c, a) == nil { // a is now the most recent
		t.Fatal("a missing")
	}
	cc := set("c.example.")
	if get(t, c, b) != nil || get(t, c, a) == nil || get(t, c, cc) == nil {
		t.Error("evicted the wrong entry")
	}
	if st := c.Stats(); st.Evictions != 1 || st.Entries != 2 {
		t.Errorf("stats %+v", st)
	}
}

// TestServFail: a failure without stale data is answered SERVFAIL from
// the cache for ServFailTTL, then asked again.
func TestServFail(t *testing.T) {
	c, clk := newCache(t)
	r := query(t, "down.example.com.", dns.TypeA, true)
	c.Fail(&r.q)
	for _, at := range []time.Duration{0, 1999 * time.Millisecond} {
		clk.ns.Store(int64(at))
		m := get(t, c, r)
		if m == nil || m.Rcode != dns.RcodeServerFailure || len(m.Answer) != 0 || m.Id != 0x1234 || m.IsEdns0() == nil {
			t.Fatalf("at %v: %v", at, m)
		}
	}
	clk.ns.Store(int64(2 * time.Second))
	if m := get(t, c, r); m != nil {
		t.Fatalf("SERVFAIL kept past ServFailTTL: %v", m)
	}
	if c.Len() != 0 {
		t.Error("expired failure mark kept")
	}
	if st := c.Stats(); st.FailHits != 2 {
		t.Errorf("stats %+v", st)
	}
	// A good answer replaces a failure mark.
	c.Fail(&r.q)
	c.Set(&r.q, answer(t, r, 0, []string{"down.example.com. 30 IN A 192.0.2.1"}, nil, nil))
	if m := get(t, c, r); m == nil || m.Rcode != 0 {
		t.Errorf("after recovery: %v", m)
	}
}

// TestServeStale: an expired answer is kept for StaleWindow; Stale serves
// it with TTL 30 and counts it, and after a failure Get serves it for
// StaleTTL seconds without a miss.
func TestServeStale(t *testing.T) {
	c, clk := newCache(t, func(cfg *Config) { cfg.StaleWindow = time.Hour })
	r := query(t, "www.example.com.", dns.TypeA, false)
	c.Set(&r.q, answer(t, r, 0, []string{"www.example.com. 10 IN A 192.0.2.1"}, nil, []string{"www.example.com. 1 IN TXT \"x\""}))
	if _, ok := c.Stale(nil, r.msg, &r.q); !ok {
		t.Fatal("Stale does not serve a fresh answer")
	}
	clk.Advance(11 * time.Second)
	if m := get(t, c, r); m != nil {
		t.Fatal("expired answer served by Get before any failure")
	}
	out, ok := c.Stale(nil, r.msg, &r.q)
	if !ok {
		t.Fatal("no stale answer within the window")
	}
	if m := unpack(t, out); !equalTTLs(ttls(m), []uint32{StaleTTL, StaleTTL}) || m.Id != 0x1234 {
		t.Errorf("stale answer TTLs %v", ttls(m))
	}
	// After a failure, Get serves the stale answer for 30 s.
	c.Fail(&r.q)
	for _, d := range []time.Duration{0, 29 * time.Second} {
		clk.Advance(d)
		if m := get(t, c, r); m == nil || !equalTTLs(ttls(m), []uint32{StaleTTL, StaleTTL}) {
			t.Fatalf("+%v after a failure: %v", d, m)
		}
	}
	clk.Advance(time.Second)
	if m := get(t, c, r); m != nil {
		t.Fatal("stale answer served without a recheck after StaleTTL")
	}
	if st := c.Stats(); st.Stale != 3 {
		t.Errorf("stale answers counted %d, want 3", st.Stale)
	}
	// Past the window: gone.
	clk.ns.Store(int64(10*time.Second + time.Hour))
	if _, ok := c.Stale(nil, r.msg, &r.q); ok {
		t.Error("stale answer past the window")
	}
	c.Fail(&r.q) // no data: a SERVFAIL mark
	if m := get(t, c, r); m == nil || m.Rcode != dns.RcodeServerFailure {
		t.Errorf("failure past the window: %v", m)
	}
}

func TestServeStaleDisabled(t *testing.T) {
	c, clk := newCache(t, func(cfg *Config) { cfg.StaleWindow = 0 })
	r := query(t, "www.example.com.", dns.TypeA, false)
	c.Set(&r.q, answer(t, r, 0, []string{"www.example.com. 10 IN A 192.0.2.1"}, nil, nil))
	c.Fail(&r.q) // e.g. a failed prefetch, while fresh
	clk.Advance(10 * time.Second)
	if _, ok := c.Stale(nil, r.msg, &r.q); ok {
		t.Error("stale answer with serve-stale disabled")
	}
	if m := get(t, c, r); m != nil {
		t.Errorf("expired answer served: %v", m)
	}
	if c.Len() != 0 {
		t.Error("expired entry kept with serve-stale disabled")
	}
}

// TestSetSupersedes: a valid answer that may not be cached drops what the
// key held, so that no older answer is served stale.
func TestSetSupersedes(t *testing.T) {
	c, clk := newCache(t)
	r := query(t, "www.example.com.", dns.TypeA, false)
	c.Set(&r.q, answer(t, r, 0, []string{"www.example.com. 10 IN A 192.0.2.1"}, nil, nil))
	c.Set(&r.q, answer(t, r, dns.RcodeNameError, nil, nil, nil)) // NXDOMAIN without SOA
	if get(t, c, r) != nil {
		t.Fatal("old answer still served")
	}
	clk.Advance(time.Minute)
	if _, ok := c.Stale(nil, r.msg, &r.q); ok {
		t.Fatal("superseded answer served stale")
	}
	// A failure reply passed to Set changes nothing.
	c.Set(&r.q, answer(t, r, 0, []string{"www.example.com. 10 IN A 192.0.2.1"}, nil, nil))
	c.Set(&r.q, answer(t, r, dns.RcodeServerFailure, nil, nil, nil))
	if get(t, c, r) == nil {
		t.Fatal("SERVFAIL passed to Set dropped the answer")
	}
}

func TestSetRejects(t *testing.T) {
	c, _ := newCache(t, func(cfg *Config) { cfg.MaxEntryBytes = 200 })
	r := query(t, "www.example.com.", dns.TypeA, false)
	good := answer(t, r, 0, []string{"www.example.com. 30 IN A 192.0.2.1"}, nil, nil)
	var big []string
	for i := range 20 {
		big = append(big, fmt.Sprintf("www.example.com. 30 IN A 192.0.2.%d", i))
	}
	for name, reply := range map[string][]byte{
		"truncated":   good[:len(good)-2],
		"short":       good[:5],
		"query":       r.msg,
		"too large":   answer(t, r, 0, big, nil, nil),
		"other name":  answer(t, query(t, "www.example.org.", dns.TypeA, false), 0, []string{"www.example.org. 30 IN A 192.0.2.1"}, nil, nil),
		"other type":  answer(t, query(t, "www.example.com.", dns.TypeAAAA, false), 0, []string{"www.example.com. 30 IN AAAA 2001:db8::1"}, nil, nil),
		"no question": {0, 0, 0x81, 0x80, 0, 0, 0, 0, 0, 0, 0, 0},
	} {
		c.Set(&r.q, reply)
		if m := get(t, c, r); m != nil {
			t.Errorf("%s: stored %v", name, m)
		}
	}
}

// TestPrefetch: an entry hit PrefetchHits times asks for a refresh once,
// when less than a tenth of its TTL remains.
func TestPrefetch(t *testing.T) {
	c, clk := newCache(t, func(cfg *Config) { cfg.Prefetch, cfg.PrefetchHits = true, 3 })
	r := query(t, "hot.example.com.", dns.TypeA, false)
	up := answer(t, r, 0, []string{"hot.example.com. 30 IN A 192.0.2.1"}, nil, nil)
	c.Set(&r.q, up)
	pf := func() bool {
		t.Helper()
		_, hit := c.Get(nil, r.msg, &r.q)
		if hit == Miss {
			t.Fatal("miss")
		}
		return hit == Prefetch
	}
	if pf() || pf() { // hits 1, 2 with 30 s left
		t.Fatal("prefetch too early")
	}
	clk.Advance(26 * time.Second) // 4 s left: more than 3
	if pf() {
		t.Fatal("prefetch with more than a tenth of the TTL left")
	}
	clk.Advance(time.Second) // 3 s left, 4th hit
	if !pf() {
		t.Fatal("no prefetch for a hot entry about to expire")
	}
	if pf() {
		t.Fatal("second prefetch for the same entry")
	}
	// The refresh stores a new entry: its own life, its own prefetch.
	c.Set(&r.q, answer(t, r, 0, []string{"hot.example.com. 30 IN A 192.0.2.1"}, nil, nil))
	clk.Advance(28 * time.Second)
	if pf() || pf() || !pf() {
		t.Error("refreshed entry: prefetch not on its third hit")
	}
	if st := c.Stats(); st.Prefetches != 2 {
		t.Errorf("prefetches %d", st.Prefetches)
	}

	// A cold entry (one hit) is not refreshed; nor anything when disabled.
	for _, on := range []bool{true, false} {
		c, clk := newCache(t, func(cfg *Config) { cfg.Prefetch, cfg.PrefetchHits = on, 3 })
		c.Set(&r.q, up)
		hits := 1
		if !on {
			hits = 10
		}
		clk.Advance(29 * time.Second)
		for range hits {
			if _, hit := c.Get(nil, r.msg, &r.q); hit == Prefetch {
				t.Errorf("prefetch on=%v after %d hits", on, hits)
			}
		}
	}
}

// TestConcurrent exercises every method from many goroutines (run with
// -race) and checks the bound holds.
func TestConcurrent(t *testing.T) {
	const size = 64
	c, clk := newCache(t, func(cfg *Config) { cfg.Size, cfg.Prefetch = size, true })
	var reqs []*req
	var replies [][]byte
	for i := range 200 {
		name := fmt.Sprintf("n%d.example.com.", i)
		r := query(t, name, dns.TypeA, i%2 == 0)
		reqs = append(reqs, r)
		replies = append(replies, answer(t, r, 0, []string{name + " 5 IN A 192.0.2.1"}, nil, nil))
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 1))
			buf := make([]byte, 0, 512)
			for range 5000 {
				i := rng.IntN(len(reqs))
				r := reqs[i]
				switch rng.IntN(10) {
				case 0:
					// Set caps TTLs in place: each goroutine its own copy.
					c.Set(&r.q, append([]byte(nil), replies[i]...))
				case 1:
					c.Fail(&r.q)
				case 2:
					c.Stale(buf[:0], r.msg, &r.q)
				case 3:
					clk.Advance(100 * time.Millisecond)
				default:
					if out, hit := c.Get(buf[:0], r.msg, &r.q); hit != Miss && dnswire.ID(out) != 0x1234 {
						t.Errorf("answer with ID %#x", dnswire.ID(out))
						return
					}
				}
			}
		})
	}
	wg.Wait()
	if n := c.Len(); n > size {
		t.Errorf("%d entries, Size %d", n, size)
	}
}

func TestNewErrors(t *testing.T) {
	for _, cfg := range []Config{
		{Size: -1},
		{MaxTTL: 500 * time.Millisecond},
		{MaxNegativeTTL: -time.Second},
		{ServFailTTL: time.Millisecond},
		{StaleWindow: -1},
		{EDNSSize: 100},
		{Shards: -2},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
	c, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	if c.maxTTL != 30 || c.maxNeg != 5 || c.servFail != int64(2*time.Second) || c.stale != 0 || c.prefetch || len(c.shards) != 64 {
		t.Errorf("defaults: %+v", c)
	}
}

// The hot path must not allocate (DESIGN: examples 5).
func TestGetAllocs(t *testing.T) {
	c, clk := newCache(t)
	fresh := query(t, "Fresh.Example.com.", dns.TypeA, true)
	c.Set(&fresh.q, answer(t, fresh, 0, []string{"fresh.example.com. 30 IN A 192.0.2.1", "fresh.example.com. 30 IN A 192.0.2.2"}, nil, nil))
	stale := query(t, "stale.example.com.", dns.TypeA, false)
	c.Set(&stale.q, answer(t, stale, 0, []string{"stale.example.com. 1 IN A 192.0.2.1"}, nil, nil))
	failed := query(t, "failed.example.com.", dns.TypeA, true)
	miss := query(t, "miss.example.com.", dns.TypeA, true)
	clk.Advance(2 * time.Second) // fresh is 2 s old; stale expired
	c.Fail(&stale.q)
	c.Fail(&failed.q)
	buf := make([]byte, 0, 4096)
	for _, tt := range []struct {
		name  string
		r     *req
		rcode int
		hit   Hit
	}{
		{"fresh", fresh, 0, Fresh}, {"stale", stale, 0, Stale}, {"SERVFAIL mark", failed, dns.RcodeServerFailure, Failed}, {"miss", miss, 0, Miss},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out, hit := c.Get(buf, tt.r.msg, &tt.r.q)
			if hit != tt.hit || (hit != Miss && unpack(t, out).Rcode != tt.rcode) {
				t.Fatalf("hit %v, want %v", hit, tt.hit)
			}
			if n := testing.AllocsPerRun(200, func() { c.Get(buf, tt.r.msg, &tt.r.q) }); n != 0 {
				t.Errorf("Get allocates %v times", n)
			}
			if n := testing.AllocsPerRun(200, func() { c.Stale(buf, tt.r.msg, &tt.r.q) }); n != 0 {
				t.Errorf("Stale allocates %v times", n)
			}
		})
	}
}
