package resolver

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/nodedns/nodedns/internal/testproc"
	"github.com/nodedns/nodedns/pkg/cache"
	"github.com/nodedns/nodedns/pkg/metrics"
	rt "github.com/nodedns/nodedns/pkg/resolver/resolvertest"
)

// TestSearchSuffixKinds: search-suffix NXDOMAINs are counted by the suffix
// the client's search list added; forwarded NXDOMAINs under a node search
// domain as node_search, from the upstream and from the negative cache.
func TestSearchSuffixKinds(t *testing.T) {
	store := autopathZone(t)
	up := newLogUpstream(t, "intranet.corp.example. 40 IN A 192.0.2.30")
	c, err := cache.New(cache.Config{MaxTTL: 30 * time.Second, MaxNegativeTTL: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	m := metrics.New()
	r := newResolver(t, StoreAuthority{Store: store}, up, func(cfg *Config) {
		cfg.Metrics, cfg.Cache, cfg.SearchDomains = m, c, []string{"corp.example"}
	})
	for _, q := range []struct {
		name  string
		qtype uint16
		rcode int
	}{
		{"api.example.com.default.svc.cluster.local.", dns.TypeA, dns.RcodeNameError},   // namespace
		{"API.example.com.test.svc.cluster.local.", dns.TypeAAAA, dns.RcodeNameError},   // namespace
		{"api.example.com.svc.cluster.local.", dns.TypeA, dns.RcodeNameError},           // svc ("com" is no namespace)
		{"nowhere.svc.cluster.local.", dns.TypeA, dns.RcodeNameError},                   // svc
		{"api.example.com.cluster.local.", dns.TypeA, dns.RcodeNameError},               // zone
		{"a.b.10-0-0-1.default.pod.cluster.local.", dns.TypeA, dns.RcodeNameError},      // zone
		{"api.example.com.corp.example.", dns.TypeA, dns.RcodeNameError},                // node_search, upstream
		{"api.example.com.corp.example.", dns.TypeA, dns.RcodeNameError},                // node_search, cache
		{"nope.default.svc.cluster.local.", dns.TypeA, dns.RcodeNameError},              // a real question: not counted
		{"intranet.corp.example.", dns.TypeA, dns.RcodeSuccess},                         // exists: not counted
		{"nowhere.invalid.", dns.TypeA, dns.RcodeNameError},                             // outside the search list
		{"corp.example.", dns.TypeA, dns.RcodeNameError},                                // the domain itself
		{"web.default.svc.cluster.local.", dns.TypeA, dns.RcodeSuccess},                 // answer
		{"a\\004corp.example.", dns.TypeA, dns.RcodeNameError},                          // ends like corp.example, not at a label boundary
		{"_http._tcp.nope.default.svc.cluster.local.", dns.TypeSRV, dns.RcodeNameError}, // a real question
	} {
		out := r.Resolve(context.Background(), NewScratch(), nil, rt.Query(t, q.name, q.qtype, 1232), UDP, client)
		if got := rt.Unpack(t, out).Rcode; got != q.rcode {
			t.Errorf("%s: rcode %d, want %d", q.name, got, q.rcode)
		}
	}
	for kind, want := range map[string]float64{"namespace": 2, "svc": 2, "zone": 2, "node_search": 2} {
		if got := sample(t, m.Registry(), "nodedns_search_suffix_answers_total", map[string]string{"kind": kind}); got != want {
			t.Errorf("search_suffix_answers_total{kind=%q} = %v, want %v", kind, got, want)
		}
	}
	if got := up.take(); len(got) != 5 {
		t.Errorf("upstream asked %q: want 5 names, the node-search NXDOMAIN once (cached)", got)
	}

	// Each kind is counted without allocating, the real zone included.
	s := NewScratch()
	buf := make([]byte, 0, 4096)
	for _, name := range []string{
		"api.example.com.default.svc.cluster.local.", "api.example.com.svc.cluster.local.",
		"api.example.com.cluster.local.", "api.example.com.corp.example.",
	} {
		q := rt.Query(t, name, dns.TypeA, 1232)
		if out := r.Handle(s, buf, q, UDP, nil, client); out == nil {
			t.Fatalf("%s: no synchronous answer", name)
		}
		if n := testing.AllocsPerRun(200, func() { r.Handle(s, buf, q, UDP, nil, client) }); n != 0 {
			t.Errorf("%s: Handle allocates %v times", name, n)
		}
	}
}

// TestAutopathMetrics: every zone NXDOMAIN for X.<ns>.svc.<zone> of an
// existing namespace is counted once by what autopath made of it; second
// steps of a walk are not counted.
func TestAutopathMetrics(t *testing.T) {
	store := autopathZone(t)
	up := newLogUpstream(t, "api.example.com. 60 IN A 192.0.2.10")
	m := metrics.New()
	r := autopathResolver(t, store, up, true, func(c *Config) { c.Metrics = m })
	const ext = "api.example.com.default.svc.cluster.local."
	ask(t, r, ext, dns.TypeA, podDefault)                                          // answered
	ask(t, r, "web.default.test.svc.cluster.local.", dns.TypeA, podTest)           // answered
	ask(t, r, "nowhere.invalid.default.svc.cluster.local.", dns.TypeA, podDefault) // nxdomain
	ask(t, r, ext, dns.TypeA, stranger)                                            // unknown_source
	ask(t, r, ext, dns.TypeA, podHostNet)                                          // unknown_source
	ask(t, r, ext, dns.TypeA, podTest)                                             // other_namespace
	ask(t, r, ext, dns.TypeANY, podDefault)                                        // skipped
	ask(t, r, "api.example.com.svc.cluster.local.", dns.TypeA, podDefault)         // second step: not counted
	ask(t, r, "api.example.com.cluster.local.", dns.TypeA, podDefault)             // third step: not counted
	ask(t, r, "web.default.svc.cluster.local.", dns.TypeA, podDefault)             // exists: not counted
	do := new(dns.Msg)
	do.SetQuestion(ext, dns.TypeA)
	do.SetEdns0(1232, true)
	snd := make(chanSender, 1)
	if r.Handle(NewScratch(), nil, packMsg(t, do), UDP, snd, netip.AddrPortFrom(podDefault, 1)) == nil { // skipped
		t.Error("DO: no synchronous answer")
	}
	up.mu.Lock()
	up.fail = true
	up.mu.Unlock()
	ask(t, r, "down.example.default.svc.cluster.local.", dns.TypeA, podDefault) // failed
	for result, want := range map[string]float64{
		"answered": 2, "nxdomain": 1, "failed": 1, "unknown_source": 2, "other_namespace": 1, "skipped": 2,
	} {
		if got := sample(t, m.Registry(), "nodedns_autopath_total", map[string]string{"result": result}); got != want {
			t.Errorf("autopath_total{result=%q} = %v, want %v", result, got, want)
		}
	}
	// An autopath that fell through is the zone's search-suffix NXDOMAIN,
	// counted by kind like any other.
	if got := sample(t, m.Registry(), "nodedns_search_suffix_answers_total", map[string]string{"kind": "namespace"}); got != 7 {
		t.Errorf("search_suffix_answers_total{kind=namespace} = %v, want 7", got)
	}
}

// TestAutopathTCP: Resolve autopaths with the connection's peer address
// as Handle does with the datagram's: the same answers, and the whole
// answer a UDP client was given truncated.
func TestAutopathTCP(t *testing.T) {
	store := autopathZone(t)
	rrs := []string{"api.example.com. 60 IN A 192.0.2.10"}
	for i := range 100 {
		rrs = append(rrs, fmt.Sprintf("big.example.com. 60 IN A 192.0.2.%d", i))
	}
	up := newLogUpstream(t, rrs...)
	m := metrics.New()
	r := autopathResolver(t, store, up, true, func(c *Config) { c.Metrics = m })
	from := netip.AddrPortFrom(podDefault, 40000)
	tcp := func(name string, qtype uint16) *dns.Msg {
		t.Helper()
		out := r.Resolve(context.Background(), NewScratch(), make([]byte, 0, 512), rt.Query(t, name, qtype, 1232), TCP, from)
		if out == nil {
			t.Fatalf("%s: no answer", name)
		}
		return rt.Unpack(t, out)
	}
	for _, qtype := range []uint16{dns.TypeA, dns.TypeAAAA} {
		const name = "api.example.com.default.svc.cluster.local."
		udp := rt.Unpack(t, ask(t, r, name, qtype, podDefault))
		viaTCP := tcp(name, qtype)
		if udp.Rcode != dns.RcodeSuccess || len(udp.Answer) == 0 {
			t.Fatalf("UDP: %v", udp)
		}
		if viaTCP.Rcode != udp.Rcode || fmt.Sprint(viaTCP.Answer) != fmt.Sprint(udp.Answer) {
			t.Errorf("%s: TCP answer\n%v\nUDP answer\n%v", dns.TypeToString[qtype], viaTCP, udp)
		}
	}
	up.take()

	const big = "big.example.com.default.svc.cluster.local."
	if udp := rt.Unpack(t, ask(t, r, big, dns.TypeA, podDefault)); !udp.Truncated {
		t.Fatalf("UDP answer not truncated: %d records", len(udp.Answer))
	}
	whole := tcp(big, dns.TypeA)
	if whole.Truncated || len(whole.Answer) != 101 {
		t.Errorf("TCP answer: truncated %v, %d records, want the CNAME and 100 A", whole.Truncated, len(whole.Answer))
	}
	// Not taken over TCP either: the zone's NXDOMAIN, as without autopath.
	if m := tcp("api.example.com.test.svc.cluster.local.", dns.TypeA); m.Rcode != dns.RcodeNameError || len(m.Answer) != 0 {
		t.Errorf("another namespace's name over TCP: %v", m)
	}
	if got := sample(t, m.Registry(), "nodedns_autopath_total", map[string]string{"result": "answered"}); got != 6 {
		t.Errorf("autopath_total{answered} = %v, want 6", got)
	}
	if got := sample(t, m.Registry(), "nodedns_requests_total", map[string]string{"transport": "tcp", "qtype": "A", "rcode": "NOERROR"}); got != 2 {
		t.Errorf("requests_total{tcp,A,NOERROR} = %v, want 2", got)
	}
}

// logBuffer collects JSON log lines; safe for concurrent use.
type logBuffer struct{ testproc.SyncBuffer }

func (b *logBuffer) queries(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range strings.SplitSeq(strings.TrimSpace(b.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if m["msg"] == "query" {
			out = append(out, m)
		}
	}
	return out
}

func TestQueryLog(t *testing.T) {
	logs := &logBuffer{}
	m := metrics.New()
	r := newResolver(t, testZone(t), testUpstream(t), func(c *Config) {
		c.Logger = slog.New(slog.NewJSONHandler(logs, nil))
		c.Metrics, c.QueryLog, c.QueryLogRate = m, true, 1000
	})
	s := NewScratch()
	if out := r.Handle(s, nil, rt.Query(t, "WEB.default.svc.cluster.local.", dns.TypeA, 1232), UDP, nil, client); out == nil {
		t.Fatal("no answer")
	}
	snd := make(chanSender, 1)
	if r.Handle(s, nil, rt.Query(t, "api.example.com.", dns.TypeAAAA, 0), UDP, snd, client) != nil {
		t.Fatal("forwarded query answered at once")
	}
	snd.wait(t)
	peer := netip.MustParseAddrPort("[fd00::7]:41000")
	r.Resolve(context.Background(), s, nil, rt.Query(t, "nope.default.svc.cluster.local.", dns.TypeA, 0), TCP, peer)
	r.Handle(s, nil, rawMsg(0x0100, 2, 0, 0, 0, qA, qA), UDP, nil, client) // FORMERR

	got := logs.queries(t)
	want := []map[string]string{
		{"client": client.String(), "transport": "udp", "name": "web.default.svc.cluster.local.", "qtype": "A", "rcode": "NOERROR", "source": "zone"},
		{"client": client.String(), "transport": "udp", "name": "api.example.com.", "qtype": "AAAA", "rcode": "NXDOMAIN", "source": "upstream"},
		{"client": peer.String(), "transport": "tcp", "name": "nope.default.svc.cluster.local.", "qtype": "A", "rcode": "NXDOMAIN", "source": "zone"},
		{"client": client.String(), "transport": "udp", "name": "", "qtype": "", "rcode": "FORMERR", "source": "local"},
	}
	if len(got) != len(want) {
		t.Fatalf("%d query lines, want %d: %v", len(got), len(want), got)
	}
	for i, w := range want {
		for k, v := range w {
			if got[i][k] != v {
				t.Errorf("line %d: %s=%v, want %q", i, k, got[i][k], v)
			}
		}
		if _, ok := got[i]["duration"].(float64); !ok {
			t.Errorf("line %d: no duration: %v", i, got[i])
		}
	}
	if got := sample(t, m.Registry(), "nodedns_query_log_dropped_total", nil); got != 0 {
		t.Errorf("query_log_dropped_total = %v, want 0", got)
	}
}

// TestSetQueryLog: the log turns on and off while the resolver runs.
func TestSetQueryLog(t *testing.T) {
	logs := &logBuffer{}
	r := newResolver(t, testZone(t), testUpstream(t), func(c *Config) {
		c.Logger = slog.New(slog.NewJSONHandler(logs, nil))
	})
	s := NewScratch()
	ask := func() {
		r.Handle(s, nil, rt.Query(t, "web.default.svc.cluster.local.", dns.TypeA, 1232), UDP, nil, client)
	}
	ask()
	if err := r.SetQueryLog(true, 0); err != nil {
		t.Fatal(err)
	}
	ask()
	if err := r.SetQueryLog(false, 0); err != nil {
		t.Fatal(err)
	}
	ask()
	if n := len(logs.queries(t)); n != 1 {
		t.Errorf("%d query lines, want 1: only the query asked while the log was on", n)
	}
	if err := r.SetQueryLog(true, -1); err == nil {
		t.Error("a negative rate was accepted")
	}
}

// TestQueryLogRate: over the rate, lines are dropped and counted, without
// allocating; only the lines written allocate.
func TestQueryLogRate(t *testing.T) {
	logs := &logBuffer{}
	m := metrics.New()
	r := newResolver(t, testZone(t), testUpstream(t), func(c *Config) {
		c.Logger = slog.New(slog.NewJSONHandler(logs, nil))
		c.Metrics, c.QueryLog, c.QueryLogRate = m, true, 1 // a burst of one line, then one a second
	})
	s := NewScratch()
	buf := make([]byte, 0, 4096)
	msg := rt.Query(t, "web.default.svc.cluster.local.", dns.TypeA, 1232)
	const runs = 200
	n := testing.AllocsPerRun(runs, func() { r.Handle(s, buf, msg, UDP, nil, client) })
	if n != 0 {
		t.Errorf("Handle with the query log over its rate allocates %v times per query", n)
	}
	lines := len(logs.queries(t))
	dropped := sample(t, m.Registry(), "nodedns_query_log_dropped_total", nil)
	if lines < 1 || float64(lines)+dropped != runs+1 { // AllocsPerRun runs once more to warm up
		t.Errorf("%d lines written, %v dropped, want at least 1 and %d in all", lines, dropped, runs+1)
	}
}

// TestQueryLogBucket: the token bucket, on a clock of its own.
func TestQueryLogBucket(t *testing.T) {
	l := newQueryLog(slog.New(slog.DiscardHandler), nil, 10)
	ms := int64(time.Millisecond)
	count := func(now int64, n int) int {
		ok := 0
		for range n {
			if l.allow(now) {
				ok++
			}
		}
		return ok
	}
	for _, step := range []struct {
		now        int64
		tries, got int
	}{
		{0, 20, 10},           // a full bucket: one second's worth
		{50 * ms, 5, 0},       // half a token
		{100 * ms, 5, 1},      // one token a tenth of a second
		{350 * ms, 5, 2},      // and no more
		{10_000 * ms, 50, 10}, // idle for long: full again, not fuller
	} {
		if got := count(step.now, step.tries); got != step.got {
			t.Errorf("at %v: %d of %d allowed, want %d", time.Duration(step.now), got, step.tries, step.got)
		}
	}
	if l := newQueryLog(slog.New(slog.DiscardHandler), nil, 0); l.interval != int64(time.Second)/DefaultQueryLogRate {
		t.Errorf("rate 0: interval %v, want the default rate's", time.Duration(l.interval))
	}
	if _, err := New(Config{Authority: new(rt.Zone), Upstream: rt.Failing(), QueryLog: true, QueryLogRate: -1}); err == nil {
		t.Error("negative QueryLogRate accepted")
	}
}

// BenchmarkSearchSuffix is one search-suffix NXDOMAIN per kind through the
// real zone, with the metrics (the kind costs a label walk, and for
// namespace and svc one more lookup) and without.
func BenchmarkSearchSuffix(b *testing.B) {
	store := autopathZone(b)
	for _, withMetrics := range []bool{false, true} {
		r := newResolver(b, StoreAuthority{Store: store}, newLogUpstream(b), func(c *Config) {
			if withMetrics {
				c.Metrics = metrics.New()
			}
		})
		for _, bc := range []struct{ kind, name string }{
			{"namespace", "api.example.com.default.svc.cluster.local."},
			{"svc", "api.example.com.svc.cluster.local."},
			{"zone", "api.example.com.cluster.local."},
		} {
			b.Run(fmt.Sprintf("metrics=%v/%s", withMetrics, bc.kind), func(b *testing.B) {
				q := rt.Query(b, bc.name, dns.TypeA, 1232)
				s := NewScratch()
				buf := make([]byte, 0, 4096)
				b.ReportAllocs()
				for b.Loop() {
					if r.Handle(s, buf, q, UDP, nil, client) == nil {
						b.Fatal("no answer")
					}
				}
			})
		}
	}
}
