package cache

import (
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/nodedns/nodedns/internal/dnswire"
)

// fakeClock is a clock tests move by hand; safe for concurrent use.
type fakeClock struct{ ns atomic.Int64 }

var clockBase = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func (f *fakeClock) Now() time.Time          { return clockBase.Add(time.Duration(f.ns.Load())) }
func (f *fakeClock) Advance(d time.Duration) { f.ns.Add(int64(d)) }

func newCache(t testing.TB, mod ...func(*Config)) (*Cache, *fakeClock) {
	t.Helper()
	clk := new(fakeClock)
	cfg := Config{Now: clk.Now, StaleWindow: time.Hour}
	for _, f := range mod {
		f(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c, clk
}

// req is a parsed query and its message.
type req struct {
	msg []byte
	q   dnswire.Query
}

// query builds and parses a query for name/qtype, ID 0x1234, RD, with an
// OPT record (payload 1232) when edns; mod may change the message first.
func query(t testing.TB, name string, qtype uint16, edns bool, mod ...func(*dns.Msg)) *req {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.Id = 0x1234
	if edns {
		m.SetEdns0(1232, false)
	}
	for _, f := range mod {
		f(m)
	}
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	r := &req{msg: b}
	if err := dnswire.ParseQuery(b, &r.q); err != nil {
		t.Fatal(err)
	}
	return r
}

func withDO(m *dns.Msg) {
	if o := m.IsEdns0(); o != nil {
		o.SetDo()
		return
	}
	m.SetEdns0(1232, true)
}
func withCD(m *dns.Msg) { m.CheckingDisabled = true }

// answer builds the upstream's reply to r: rcode, records in zone-file
// syntax per section, compressed, with an OPT record when r had one.
func answer(t testing.TB, r *req, rcode int, an, ns, ar []string) []byte {
	t.Helper()
	q := new(dns.Msg)
	if err := q.Unpack(r.msg); err != nil {
		t.Fatal(err)
	}
	m := new(dns.Msg)
	m.SetReply(q)
	m.Id = 0xBEEF // an upstream ID, not the client's
	m.RecursionAvailable, m.Rcode, m.Compress = true, rcode, true
	for _, sec := range []struct {
		to  *[]dns.RR
		rrs []string
	}{{&m.Answer, an}, {&m.Ns, ns}, {&m.Extra, ar}} {
		for _, s := range sec.rrs {
			rr, err := dns.NewRR(s)
			if err != nil {
				t.Fatalf("NewRR(%q): %v", s, err)
			}
			*sec.to = append(*sec.to, rr)
		}
	}
	if opt := q.IsEdns0(); opt != nil {
		m.SetEdns0(4096, opt.Do())
	}
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func unpack(t testing.TB, b []byte) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	if err := m.Unpack(b); err != nil {
		t.Fatalf("Unpack: %v (%x)", err, b)
	}
	return m
}

// rrs renders records in zone-file syntax, sorted, OPT left out.
func rrs(sections ...[]dns.RR) string {
	var out []string
	for _, sec := range sections {
		for _, rr := range sec {
			if rr.Header().Rrtype != dns.TypeOPT {
				out = append(out, strings.ReplaceAll(rr.String(), "\t", " "))
			}
		}
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}

// normalize renders records written loosely the way rrs does.
func normalize(t testing.TB, in ...string) string {
	t.Helper()
	var parsed []dns.RR
	for _, s := range in {
		rr, err := dns.NewRR(s)
		if err != nil {
			t.Fatal(err)
		}
		parsed = append(parsed, rr)
	}
	return rrs(parsed)
}

// get does a Get and unpacks the answer; nil on a miss.
func get(t testing.TB, c *Cache, r *req) *dns.Msg {
	t.Helper()
	out, hit := c.Get(nil, r.msg, &r.q)
	if hit == Miss {
		if len(out) != 0 {
			t.Fatalf("miss appended %x", out)
		}
		return nil
	}
	return unpack(t, out)
}

// ttls returns the TTLs of every record but OPT, in message order.
func ttls(m *dns.Msg) []uint32 {
	var out []uint32
	for _, sec := range [][]dns.RR{m.Answer, m.Ns, m.Extra} {
		for _, rr := range sec {
			if rr.Header().Rrtype != dns.TypeOPT {
				out = append(out, rr.Header().Ttl)
			}
		}
	}
	return out
}

func equalTTLs(a, b []uint32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
