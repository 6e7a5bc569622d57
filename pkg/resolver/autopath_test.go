package resolver

import (
	"bytes"
	"context"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/nodedns/nodedns/pkg/cache"
	"github.com/nodedns/nodedns/pkg/metrics"
	rt "github.com/nodedns/nodedns/pkg/resolver/resolvertest"
	"github.com/nodedns/nodedns/pkg/zone"
)

// logUpstream is a fake upstream that logs the names asked and answers
// like a real server: the records of the name and type, NODATA when the
// name has records of other types only, else NXDOMAIN.
type logUpstream struct {
	mu   sync.Mutex
	log  []string
	recs []dns.RR
	fail bool
}

func newLogUpstream(t testing.TB, rrs ...string) *logUpstream {
	u := &logUpstream{}
	for _, s := range rrs {
		rr, err := dns.NewRR(s)
		if err != nil {
			t.Fatal(err)
		}
		u.recs = append(u.recs, rr)
	}
	return u
}

func (u *logUpstream) Exchange(_ context.Context, query []byte) ([]byte, error) {
	q := new(dns.Msg)
	if err := q.Unpack(query); err != nil {
		return nil, err
	}
	qq := q.Question[0]
	u.mu.Lock()
	u.log = append(u.log, strings.ToLower(qq.Name)+" "+dns.TypeToString[qq.Qtype])
	fail := u.fail
	u.mu.Unlock()
	if fail {
		return nil, rt.ErrUpstream
	}
	m := new(dns.Msg)
	m.SetReply(q)
	m.RecursionAvailable = true
	m.Rcode = dns.RcodeNameError
	for _, rr := range u.recs {
		h := rr.Header()
		if !strings.EqualFold(h.Name, qq.Name) {
			continue
		}
		m.Rcode = dns.RcodeSuccess
		if h.Rrtype == qq.Qtype {
			m.Answer = append(m.Answer, rr)
		}
	}
	if len(m.Answer) == 0 { // NXDOMAIN or NODATA: the SOA, to be cached (RFC 2308)
		m.Ns = []dns.RR{&dns.SOA{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 30},
			Ns: "ns.example.", Mbox: "h.example.", Serial: 1, Refresh: 1, Retry: 1, Expire: 1, Minttl: 30}}
	}
	if opt := q.IsEdns0(); opt != nil {
		m.SetEdns0(4096, opt.Do())
	}
	m.Compress = true
	return m.Pack()
}

// take returns and clears the log.
func (u *logUpstream) take() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	l := u.log
	u.log = nil
	return l
}

var (
	podDefault = netip.MustParseAddr("10.244.0.5")
	podTest    = netip.MustParseAddr("10.244.0.6")
	podHostNet = netip.MustParseAddr("10.0.0.1")
	stranger   = netip.MustParseAddr("10.9.9.9")
)

// autopathZone is a real zone with Pods of two namespaces on this node
// and a hostNetwork one.
func autopathZone(t testing.TB) *zone.Store {
	store := new(zone.Store)
	b, err := zone.NewBuilder(zone.Config{Domains: []string{"cluster.local"}}, store)
	if err != nil {
		t.Fatal(err)
	}
	b.ReplaceAll(zone.Objects{
		Namespaces: []string{"default", "test"},
		Services: []*zone.Service{
			{Namespace: "default", Name: "web", ClusterIPs: []netip.Addr{netip.MustParseAddr("10.96.0.10")}},
			{Namespace: "default", Name: "ext", ExternalName: "api.example.com"},
		},
		Pods: []*zone.Pod{
			{Namespace: "default", Name: "a", IPs: []netip.Addr{podDefault}},
			{Namespace: "test", Name: "b", IPs: []netip.Addr{podTest}},
			{Namespace: "default", Name: "h", IPs: []netip.Addr{podHostNet}, HostNetwork: true},
		},
	})
	b.SetSynced()
	b.Flush()
	return store
}

func autopathResolver(t testing.TB, store *zone.Store, up Upstream, on bool, mod ...func(*Config)) *Resolver {
	return newResolver(t, StoreAuthority{Store: store}, up, append([]func(*Config){func(c *Config) {
		c.Autopath = on
		c.SearchDomains = []string{"corp.example"}
		c.PodNamespace = func(a netip.Addr) (string, bool) { return store.Load().PodNamespace(a) }
	}}, mod...)...)
}

// ask sends name/qtype from src through Handle and returns the answer,
// synchronous or not.
func ask(t *testing.T, r *Resolver, name string, qtype uint16, src netip.Addr) []byte {
	t.Helper()
	snd := make(chanSender, 1)
	from := netip.AddrPortFrom(src, 40000)
	out := r.Handle(NewScratch(), nil, rt.Query(t, name, qtype, 1232), UDP, snd, from)
	if out != nil {
		return out
	}
	s := snd.wait(t)
	if s.to != from {
		t.Errorf("%s: answer sent to %v, want %v", name, s.to, from)
	}
	return s.msg
}

func TestAutopath(t *testing.T) {
	store := autopathZone(t)
	up := newLogUpstream(t,
		"api.example.com. 60 IN A 192.0.2.10",
		"api.example.com. 60 IN A 192.0.2.11",
		"intranet.corp.example. 40 IN A 192.0.2.30",
	)
	m := metrics.New()
	r := autopathResolver(t, store, up, true, func(c *Config) { c.Metrics = m })
	off := autopathResolver(t, store, up, false)

	const nx = -1 // want: the zone's own NXDOMAIN for the asked name
	tests := []struct {
		what     string
		name     string
		qtype    uint16
		src      netip.Addr
		rcode    int
		an       []string
		upstream []string
	}{
		{"external name, A", "api.example.com.default.svc.cluster.local.", dns.TypeA, podDefault, 0, []string{
			"api.example.com.default.svc.cluster.local. 5 IN CNAME api.example.com.",
			"api.example.com. 60 IN A 192.0.2.10", "api.example.com. 60 IN A 192.0.2.11",
		}, []string{"api.example.com.corp.example. A", "api.example.com. A"}},
		{"external name, AAAA: same target, NODATA", "api.example.com.default.svc.cluster.local.", dns.TypeAAAA, podDefault, 0, []string{
			"api.example.com.default.svc.cluster.local. 5 IN CNAME api.example.com.",
		}, []string{"api.example.com.corp.example. AAAA", "api.example.com. AAAA"}},
		{"question case kept", "API.example.com.Default.svc.cluster.local.", dns.TypeA, podDefault, 0, []string{
			"API.example.com.Default.svc.cluster.local. 5 IN CNAME api.example.com.",
			"api.example.com. 60 IN A 192.0.2.10", "api.example.com. 60 IN A 192.0.2.11",
		}, []string{"api.example.com.corp.example. A", "api.example.com. A"}},
		{"unknown source", "api.example.com.default.svc.cluster.local.", dns.TypeA, stranger, nx, nil, nil},
		{"Pod of another namespace", "api.example.com.default.svc.cluster.local.", dns.TypeA, podTest, nx, nil, nil},
		{"hostNetwork Pod", "api.example.com.default.svc.cluster.local.", dns.TypeA, podHostNet, nx, nil, nil},
		{"existing name: no autopath", "web.default.svc.cluster.local.", dns.TypeA, podDefault, 0, []string{
			"web.default.svc.cluster.local. 5 IN A 10.96.0.10",
		}, nil},
		{"short cluster name web.default from test", "web.default.test.svc.cluster.local.", dns.TypeA, podTest, 0, []string{
			"web.default.test.svc.cluster.local. 5 IN CNAME web.default.svc.cluster.local.",
			"web.default.svc.cluster.local. 5 IN A 10.96.0.10",
		}, nil},
		{"short cluster name, AAAA: same target, NODATA", "web.default.test.svc.cluster.local.", dns.TypeAAAA, podTest, 0, []string{
			"web.default.test.svc.cluster.local. 5 IN CNAME web.default.svc.cluster.local.",
		}, nil},
		{"ExternalName through autopath", "ext.default.test.svc.cluster.local.", dns.TypeA, podTest, 0, []string{
			"ext.default.test.svc.cluster.local. 5 IN CNAME ext.default.svc.cluster.local.",
			"ext.default.svc.cluster.local. 5 IN CNAME api.example.com.",
			"api.example.com. 60 IN A 192.0.2.10", "api.example.com. 60 IN A 192.0.2.11",
		}, []string{"api.example.com. A"}},
		{"node search domain", "intranet.default.svc.cluster.local.", dns.TypeA, podDefault, 0, []string{
			"intranet.default.svc.cluster.local. 5 IN CNAME intranet.corp.example.",
			"intranet.corp.example. 40 IN A 192.0.2.30",
		}, []string{"intranet.corp.example. A"}},
		{"nowhere", "nowhere.invalid.default.svc.cluster.local.", dns.TypeA, podDefault, nx, nil,
			[]string{"nowhere.invalid.corp.example. A", "nowhere.invalid. A"}},
		{"single label nowhere", "nowhere.default.svc.cluster.local.", dns.TypeAAAA, podDefault, nx, nil,
			[]string{"nowhere.corp.example. AAAA", "nowhere. AAAA"}},
	}
	for _, tt := range tests {
		t.Run(tt.what, func(t *testing.T) {
			got := ask(t, r, tt.name, tt.qtype, tt.src)
			up.take()
			if tt.rcode == nx {
				want := ask(t, off, tt.name, tt.qtype, tt.src)
				if !bytes.Equal(got, want) {
					t.Errorf("got  %x\nwant %x (the answer without autopath)", got, want)
				}
				if m := rt.Unpack(t, want); m.Rcode != dns.RcodeNameError {
					t.Errorf("without autopath: rcode %d", m.Rcode)
				}
			} else {
				m := rt.Unpack(t, got)
				if m.Rcode != tt.rcode {
					t.Errorf("rcode %d, want %d", m.Rcode, tt.rcode)
				}
				rt.CheckSection(t, "answer", m.Answer, tt.an...)
			}
		})
	}
	// Run again, each upstream log checked on its own (the first pass has
	// filled no cache: there is none; flights are over).
	for _, tt := range tests {
		ask(t, r, tt.name, tt.qtype, tt.src)
		if got := up.take(); !slices.Equal(got, tt.upstream) {
			t.Errorf("%s: upstream asked %q, want %q", tt.what, got, tt.upstream)
		}
	}
	for _, want := range []struct {
		src string
		n   float64
	}{{"upstream", 2 * 5}, {"zone", 2 * 4}} {
		if got := sample(t, m.Registry(), "nodedns_responses_total", map[string]string{"source": want.src}); got != want.n {
			t.Errorf("responses with source %s: %v, want %v", want.src, got, want.n)
		}
	}
}

// TestAutopathNotTaken: where autopath must not act, the zone's answer
// goes out synchronously, as without it, and the search-suffix path stays
// free of allocations.
func TestAutopathNotTaken(t *testing.T) {
	store := autopathZone(t)
	up := newLogUpstream(t, "api.example.com. 60 IN A 192.0.2.10")
	r := autopathResolver(t, store, up, true)
	s := NewScratch()
	buf := make([]byte, 0, 4096)
	snd := make(chanSender, 1)
	for _, c := range []struct {
		name string
		src  netip.Addr
	}{
		{"api.example.com.default.svc.cluster.local.", stranger},
		{"api.example.com.default.svc.cluster.local.", podTest},
		{"api.example.com.default.svc.cluster.local.", podHostNet},
		{"default.svc.cluster.local.", podDefault}, // X empty
		{"api.example.com.svc.cluster.local.", podDefault},
		{"api.example.com.cluster.local.", podDefault},
	} {
		q := rt.Query(t, c.name, dns.TypeA, 1232)
		from := netip.AddrPortFrom(c.src, 53000)
		if out := r.Handle(s, buf, q, UDP, snd, from); out == nil {
			t.Errorf("%s from %v: no synchronous answer", c.name, c.src)
			continue
		}
		if n := testing.AllocsPerRun(100, func() { r.Handle(s, buf, q, UDP, snd, from) }); n != 0 {
			t.Errorf("%s from %v: %v allocations", c.name, c.src, n)
		}
	}
	// DO: our CNAME is unsigned; Resolve without a source address.
	q := rt.Query(t, "api.example.com.default.svc.cluster.local.", dns.TypeA, 1232)
	do := new(dns.Msg)
	if err := do.Unpack(q); err != nil {
		t.Fatal(err)
	}
	do.IsEdns0().SetDo()
	for what, out := range map[string][]byte{
		"DO":  r.Handle(s, nil, packMsg(t, do), UDP, snd, netip.AddrPortFrom(podDefault, 1)),
		"TCP": r.Resolve(context.Background(), s, nil, q, TCP, netip.AddrPort{}),
	} {
		if out == nil || rt.Unpack(t, out).Rcode != dns.RcodeNameError {
			t.Errorf("%s: want the zone's NXDOMAIN at once, got %x", what, out)
		}
	}
	if l := up.take(); len(l) != 0 {
		t.Errorf("upstream asked %q", l)
	}
}

// TestAutopathUpstreamFails: when a candidate cannot be resolved, the
// client gets the zone's NXDOMAIN and walks its list itself.
func TestAutopathUpstreamFails(t *testing.T) {
	store := autopathZone(t)
	up := newLogUpstream(t, "api.example.com. 60 IN A 192.0.2.10")
	up.fail = true
	r := autopathResolver(t, store, up, true)
	got := rt.Unpack(t, ask(t, r, "api.example.com.default.svc.cluster.local.", dns.TypeA, podDefault))
	if got.Rcode != dns.RcodeNameError || len(got.Answer) != 0 || len(got.Ns) != 1 {
		t.Errorf("got %v, want the zone's NXDOMAIN", got)
	}
	if l := up.take(); len(l) != 1 {
		t.Errorf("upstream asked %q, want the first candidate only", l)
	}
}

// TestAutopathConfig: Autopath needs PodNamespace.
func TestAutopathConfig(t *testing.T) {
	_, err := New(Config{Authority: new(rt.Zone), Upstream: rt.Failing(), Autopath: true})
	if err == nil {
		t.Error("Autopath without PodNamespace accepted")
	}
}

// TestAutopathCached: the candidates go through the cache like forwarded
// queries: a second autopath, and the client's plain query for the name,
// are answered without the upstream.
func TestAutopathCached(t *testing.T) {
	store := autopathZone(t)
	up := newLogUpstream(t, "api.example.com. 30 IN A 192.0.2.10")
	c, err := cache.New(cache.Config{MaxTTL: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	r := autopathResolver(t, store, up, true, func(cfg *Config) { cfg.Cache = c })
	for i := range 2 {
		m := rt.Unpack(t, ask(t, r, "api.example.com.default.svc.cluster.local.", dns.TypeA, podDefault))
		rt.CheckSection(t, "answer", m.Answer,
			"api.example.com.default.svc.cluster.local. 5 IN CNAME api.example.com.",
			"api.example.com. 30 IN A 192.0.2.10")
		want := []string{"api.example.com.corp.example. A", "api.example.com. A"}
		if i > 0 {
			want = nil
		}
		if got := up.take(); !slices.Equal(got, want) {
			t.Errorf("lookup %d: upstream asked %q, want %q", i, got, want)
		}
	}
	m := rt.Unpack(t, ask(t, r, "api.example.com.", dns.TypeA, podDefault))
	rt.CheckSection(t, "answer", m.Answer, "api.example.com. 30 IN A 192.0.2.10")
	if got := up.take(); len(got) != 0 {
		t.Errorf("plain query after autopath: upstream asked %q", got)
	}
}

// BenchmarkAutopathNotTaken is the search-suffix NXDOMAIN with autopath on,
// from sources it does not apply to: the cost of deciding so.
func BenchmarkAutopathNotTaken(b *testing.B) {
	store := autopathZone(b)
	r := autopathResolver(b, store, newLogUpstream(b), true)
	q := rt.Query(b, "api.example.com.default.svc.cluster.local.", dns.TypeA, 1232)
	snd := make(chanSender, 1)
	for _, bc := range []struct {
		name string
		src  netip.Addr
	}{{"unknown", stranger}, {"otherns", podTest}} {
		b.Run(bc.name, func(b *testing.B) {
			s := NewScratch()
			buf := make([]byte, 0, 4096)
			from := netip.AddrPortFrom(bc.src, 53000)
			b.ReportAllocs()
			for b.Loop() {
				if r.Handle(s, buf, q, UDP, snd, from) == nil {
					b.Fatal("no answer")
				}
			}
		})
	}
}
