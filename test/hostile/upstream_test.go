package hostile

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/nodedns/nodedns/internal/dnstest"
)

// Failing upstreams: the daemon runs from the zone file (no API server)
// and forwards to test servers on 127.0.0.2 and 127.0.0.3, in that order.

const upstreamTimeout = 300 * time.Millisecond

// deadline is the longest a client may wait for any answer: the bound
// cmd/nodedns puts on the upstream part of one query (2 tries of
// --upstream-timeout plus a second), plus scheduling slack for a loaded
// machine and the race-detected client.
var deadline = 2*upstreamTimeout + time.Second + 300*time.Millisecond

// failingPair starts upstream A (127.0.0.2, tried first) and B (127.0.0.3)
// with the same records, and a daemon forwarding to both.
func failingPair(t *testing.T, extra ...string) (d *daemon, a, b *dnstest.Server) {
	t.Helper()
	records := []string{
		"api.example.com. 60 IN A 192.0.2.10",
		"api.example.com. 60 IN AAAA 2001:db8::10",
		"stale.example.com. 1 IN A 192.0.2.55",
	}
	a = dnstest.Start(t, "127.0.0.2:0", dnstest.WithZone("example.com."), dnstest.WithRecords(records...))
	b = dnstest.Start(t, "127.0.0.3:0", dnstest.WithZone("example.com."), dnstest.WithRecords(records...))
	for i := range 40 {
		a.Add(fmt.Sprintf("n%d.example.com. 60 IN A 192.0.2.%d", i, 100+i))
		b.Add(fmt.Sprintf("n%d.example.com. 60 IN A 192.0.2.%d", i, 100+i))
	}
	args := append([]string{"--zone-file", exampleZone,
		"--upstream", a.Addr().String(), "--upstream", b.Addr().String(),
		"--upstream-timeout", upstreamTimeout.String()}, extra...)
	d = startDaemon(t, args...)
	d.WaitReady(15 * time.Second)
	return d, a, b
}

// askN asks n%d.example.com for i in [from, to) over UDP, checks every
// answer is the real one and within the deadline, and returns the
// latencies.
func askN(t *testing.T, d *daemon, from, to int) []time.Duration {
	t.Helper()
	var ds []time.Duration
	for i := from; i < to; i++ {
		name := fmt.Sprintf("n%d.example.com.", i)
		r, el, err := d.ask("udp", name, dns.TypeA)
		want := fmt.Sprintf("192.0.2.%d", 100+i)
		if err != nil || r.Rcode != dns.RcodeSuccess || firstA(r) != want {
			t.Errorf("%s: %v %v, want %s", name, r, err, want)
			continue
		}
		if el > deadline {
			t.Errorf("%s answered after %v, over the %v deadline", name, el, deadline)
		}
		ds = append(ds, el)
	}
	return ds
}

func maxDur(ds []time.Duration) time.Duration {
	var m time.Duration
	for _, d := range ds {
		m = max(m, d)
	}
	return m
}

// TestSilentUpstreamFailsOver: the first upstream never answers; the
// second does. The first query waits one try, then the silent server
// ranks behind the healthy one for its cooldown and answers come at once.
func TestSilentUpstreamFailsOver(t *testing.T) {
	d, a, b := failingPair(t)
	a.SetBehavior(dnstest.Behavior{Drop: true})
	first := askN(t, d, 0, 1)
	rest := askN(t, d, 1, 20)
	if len(first) == 1 && first[0] < upstreamTimeout {
		t.Errorf("first answer after %v: faster than the silent server's timeout, so it was not asked first?", first[0])
	}
	if n := a.Len(); n > 3 {
		t.Errorf("silent server asked %d times for 20 names: it should rank behind the healthy one", n)
	}
	if b.Len() < 20 {
		t.Errorf("healthy server asked %d times, want 20", b.Len())
	}
	figure(t, "silent upstream: first answer after %v (one %v try, then failover), next 19 p50 %v max %v; silent server asked %d times",
		maxDur(first).Round(time.Millisecond), upstreamTimeout, percentile(rest, 50).Round(time.Microsecond), maxDur(rest).Round(time.Millisecond), a.Len())
}

// TestSlowUpstream: a server slower than --upstream-timeout is failed
// over like a silent one; one within it is simply waited for.
func TestSlowUpstream(t *testing.T) {
	d, a, _ := failingPair(t)
	a.SetBehavior(dnstest.Behavior{Delay: 3 * upstreamTimeout})
	over := askN(t, d, 0, 10)
	// Past the cooldown the slow server is first again; within the timeout it wins.
	d2, a2, b2 := failingPair(t)
	a2.SetBehavior(dnstest.Behavior{Delay: upstreamTimeout / 3})
	within := askN(t, d2, 0, 10)
	if b2.Len() != 0 {
		t.Errorf("a server answering within the timeout was failed over %d times", b2.Len())
	}
	d.Alive()
	d2.Alive()
	figure(t, "upstream 3x slower than the timeout: first answer %v, max %v (failover); upstream at 1/3 of the timeout: p50 %v, max %v (waited for)",
		over[0].Round(time.Millisecond), maxDur(over).Round(time.Millisecond), percentile(within, 50).Round(time.Millisecond), maxDur(within).Round(time.Millisecond))
}

// TestServfailUpstream: a server that answers only SERVFAIL is failed over
// at once, without waiting for a timeout; when every server does, the
// client gets SERVFAIL at once too.
func TestServfailUpstream(t *testing.T) {
	d, a, b := failingPair(t)
	a.SetBehavior(dnstest.Behavior{Rcode: dns.RcodeServerFailure})
	ds := askN(t, d, 0, 10)
	if maxDur(ds) > upstreamTimeout {
		t.Errorf("SERVFAIL failover took %v, as long as a timeout", maxDur(ds))
	}
	b.SetBehavior(dnstest.Behavior{Rcode: dns.RcodeServerFailure})
	r, el, err := d.ask("udp", "n30.example.com.", dns.TypeA)
	if err != nil || r.Rcode != dns.RcodeServerFailure {
		t.Errorf("both upstreams SERVFAIL: %v %v, want SERVFAIL", r, err)
	}
	if el > upstreamTimeout {
		t.Errorf("SERVFAIL from both took %v", el)
	}
	figure(t, "SERVFAIL-only upstream: failover p50 %v max %v; both SERVFAIL -> SERVFAIL in %v",
		percentile(ds, 50).Round(time.Microsecond), maxDur(ds).Round(time.Millisecond), el.Round(time.Millisecond))
}

// TestTruncatingUpstream: a server that truncates every UDP answer is
// asked again over TCP and its full answer relayed.
func TestTruncatingUpstream(t *testing.T) {
	d, a, b := failingPair(t)
	a.SetBehavior(dnstest.Behavior{Truncate: true})
	ds := askN(t, d, 0, 10)
	tcp := 0
	for _, q := range a.Queries() {
		if q.Transport == "tcp" {
			tcp++
		}
	}
	if tcp < 10 || b.Len() != 0 {
		t.Errorf("truncating server: %d TCP retries to it (want 10), %d queries to the other (want 0)", tcp, b.Len())
	}
	figure(t, "truncating upstream: %d/10 answered over the TCP retry, p50 %v max %v",
		tcp, percentile(ds, 50).Round(time.Microsecond), maxDur(ds).Round(time.Millisecond))
}

// poisoned reports whether r carries a forged address.
func poisoned(r *dns.Msg) bool {
	if r == nil {
		return false
	}
	for _, sec := range [][]dns.RR{r.Answer, r.Ns, r.Extra} {
		for _, rr := range sec {
			switch v := rr.(type) {
			case *dns.A:
				if v.A.String() == dnstest.ForgedA.String() {
					return true
				}
			case *dns.AAAA:
				if v.AAAA.String() == dnstest.ForgedAAAA.String() {
					return true
				}
			}
		}
	}
	return false
}

// TestForgingUpstream: replies with a wrong ID, a wrong question name or a
// wrong question type, each carrying a poison address, arrive before the
// real answer (UDP, and over TCP after a truncated answer). None reaches a
// client or the cache; when only forgeries arrive in time, the query fails
// over or fails, never accepting one.
func TestForgingUpstream(t *testing.T) {
	d, a, b := failingPair(t)
	all := dnstest.ForgeID | dnstest.ForgeName | dnstest.ForgeType
	forged, asked := 0, 0
	check := func(what string, r *dns.Msg, err error, want string) {
		t.Helper()
		asked++
		if poisoned(r) {
			forged++
			t.Errorf("%s: forged answer reached the client: %v", what, r)
			return
		}
		if err != nil || firstA(r) != want && want != "" {
			t.Errorf("%s: %v %v, want %s", what, r, err, want)
		}
	}
	// Each query to a forging server draws 3 forgeries.
	forgedSent := func() int { return 3 * a.Len() }
	// 1. Forgeries first, the real answer 50 ms later, over UDP.
	a.SetBehavior(dnstest.Behavior{Forge: all, Delay: 50 * time.Millisecond})
	for i := range 5 {
		r, _, err := d.ask("udp", fmt.Sprintf("n%d.example.com.", i), dns.TypeA)
		check("udp forgeries before the answer", r, err, fmt.Sprintf("192.0.2.%d", 100+i))
	}
	// 2. The same over TCP, after a truncated UDP answer.
	a.SetBehavior(dnstest.Behavior{Forge: all, Truncate: true})
	for i := 5; i < 10; i++ {
		r, _, err := d.ask("udp", fmt.Sprintf("n%d.example.com.", i), dns.TypeA)
		check("tcp forgeries before the answer", r, err, fmt.Sprintf("192.0.2.%d", 100+i))
	}
	// 3. Only forgeries in time (the real answer after the timeout): the
	// healthy server answers.
	a.SetBehavior(dnstest.Behavior{Forge: all, Delay: 4 * upstreamTimeout})
	var failover []time.Duration
	for i := 10; i < 15; i++ {
		r, el, err := d.ask("udp", fmt.Sprintf("n%d.example.com.", i), dns.TypeA)
		check("only forgeries in time", r, err, fmt.Sprintf("192.0.2.%d", 100+i))
		failover = append(failover, el)
	}
	// 4. Both forge and are late: SERVFAIL, within the deadline.
	b.SetBehavior(dnstest.Behavior{Forge: all, Delay: 4 * upstreamTimeout})
	bBefore := b.Len()
	r, el, err := d.ask("udp", "n20.example.com.", dns.TypeA)
	sent := forgedSent() + 3*(b.Len()-bBefore)
	check("every server forges", r, err, "")
	if err == nil && r.Rcode != dns.RcodeServerFailure {
		t.Errorf("every server forges: rcode %s, want SERVFAIL", dns.RcodeToString[r.Rcode])
	}
	if el > deadline {
		t.Errorf("every server forges: answered after %v, over %v", el, deadline)
	}
	// The cache: every name asked again comes from it (both servers now
	// useless) and is the real answer; the forged questions' names were
	// not stored either.
	a.SetBehavior(dnstest.Behavior{})
	b.SetBehavior(dnstest.Behavior{})
	for i := range 15 {
		r, _, err := d.ask("udp", fmt.Sprintf("n%d.example.com.", i), dns.TypeA)
		check("from the cache", r, err, fmt.Sprintf("192.0.2.%d", 100+i))
	}
	for _, name := range []string{"x0.example.com.", "x5.example.com."} { // ForgeName turns n0 into x0
		r, _, err := d.ask("udp", name, dns.TypeA)
		check("forged question name", r, err, "")
		if err == nil && r.Rcode != dns.RcodeNameError {
			t.Errorf("%s: %v, want NXDOMAIN from the upstream (a forged reply named it)", name, r)
		}
	}
	r, _, err = d.ask("udp", "n0.example.com.", dns.TypeAAAA) // ForgeType turned A into AAAA
	check("forged question type", r, err, "")
	if err == nil && (r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0) {
		t.Errorf("n0 AAAA: %v, want NODATA (a forged reply claimed an AAAA)", r)
	}
	d.Alive()
	figure(t, "forging upstream: %d forged replies sent, %d reached a client of %d answers; failover when only forgeries came in time: max %v; all forging: SERVFAIL in %v",
		sent, forged, asked, maxDur(failover).Round(time.Millisecond), el.Round(time.Millisecond))
}

// TestServeStale: when every upstream fails, an answer expired in the
// cache is served with TTL 30 (RFC 8767), within the deadline; a name
// never cached gets SERVFAIL within it.
func TestServeStale(t *testing.T) {
	d, a, b := failingPair(t)
	r, _, err := d.ask("udp", "stale.example.com.", dns.TypeA)
	if err != nil || firstA(r) != "192.0.2.55" {
		t.Fatalf("priming: %v %v", r, err)
	}
	a.SetBehavior(dnstest.Behavior{Drop: true})
	b.SetBehavior(dnstest.Behavior{Drop: true})
	outage := time.Now()
	var staleAt time.Duration
	var worst time.Duration
	n := 0
	waitFor(t, "a stale answer (TTL 30)", 10*time.Second, func() bool {
		r, el, err := d.ask("udp", "stale.example.com.", dns.TypeA)
		n++
		worst = max(worst, el)
		if err != nil || firstA(r) != "192.0.2.55" {
			t.Fatalf("answer %d during the outage: %v %v, want 192.0.2.55 (fresh, then stale)", n, r, err)
		}
		if el > deadline {
			t.Errorf("answer %d after %v, over the %v deadline", n, el, deadline)
		}
		if r.Answer[0].Header().Ttl == 30 {
			staleAt = time.Since(outage)
			return true
		}
		return false
	})
	// Once failed, the name is answered stale at once for a while.
	var again []time.Duration
	for range 10 {
		r, el, err := d.ask("udp", "stale.example.com.", dns.TypeA)
		if err != nil || firstA(r) != "192.0.2.55" || r.Answer[0].Header().Ttl != 30 {
			t.Errorf("repeated stale answer: %v %v", r, err)
		}
		again = append(again, el)
	}
	r, el, err := d.ask("udp", "never-cached.example.com.", dns.TypeA)
	if err != nil || r.Rcode != dns.RcodeServerFailure {
		t.Errorf("a name never cached, every upstream silent: %v %v, want SERVFAIL", r, err)
	}
	if el > deadline {
		t.Errorf("SERVFAIL after %v, over %v", el, deadline)
	}
	// The cache counts every stale answer; the responses counter labels
	// only the first (after the failed exchange) "stale", the ones served
	// from the failure mark "cache".
	cacheStale := d.Metric("nodedns_cache_stale_answers_total")
	if cacheStale < 11 {
		t.Errorf("nodedns_cache_stale_answers_total = %v, want >= 11", cacheStale)
	}
	sourceStale := d.Metric(`nodedns_responses_total{source="stale"}`)
	figure(t, "all upstreams silent: stale answer (TTL 30) %v after the outage began (TTL 1 entry), slowest answer %v, then stale p50 %v; uncached name SERVFAIL in %v; stale answers: cache counter %v, responses_total{source=stale} %v",
		staleAt.Round(time.Millisecond), worst.Round(time.Millisecond), percentile(again, 50).Round(time.Microsecond), el.Round(time.Millisecond), cacheStale, sourceStale)
}

// poisoner is an upstream that adds records about names it was not asked
// for (out of bailiwick for the question): a CNAME target's address, an NS
// and glue for another zone, an address for another name.
type poisoner struct {
	addr  string
	mu    sync.Mutex
	asked map[string]int // lowercased question name -> queries
}

const poisonA = "203.0.113.66"

func (p *poisoner) count(name string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.asked[strings.ToLower(name)]
}

func mustRRs(texts ...string) []dns.RR {
	var out []dns.RR
	for _, s := range texts {
		rr, err := dns.NewRR(s)
		if err != nil {
			panic(err)
		}
		out = append(out, rr)
	}
	return out
}

func startPoisoner(t *testing.T, ip string) *poisoner {
	t.Helper()
	pc, err := net.ListenPacket("udp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	p := &poisoner{addr: pc.LocalAddr().String(), asked: map[string]int{}}
	truth := map[string]string{
		"victim.example.com.": "192.0.2.77",
		"other.example.com.":  "192.0.2.78",
		"api.example.com.":    "192.0.2.10",
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		m := new(dns.Msg).SetReply(req)
		m.RecursionAvailable = true
		qn := strings.ToLower(req.Question[0].Name)
		p.mu.Lock()
		p.asked[qn]++
		p.mu.Unlock()
		switch ip, ok := truth[qn]; {
		case req.Question[0].Qtype != dns.TypeA:
			m.Rcode = dns.RcodeNameError
		case qn == "www.poison.test.":
			m.Answer = mustRRs("www.poison.test. 300 IN CNAME victim.example.com.",
				"victim.example.com. 300 IN A "+poisonA,
				"other.example.com. 300 IN A "+poisonA)
			m.Ns = mustRRs("example.com. 300 IN NS ns.evil.test.")
			m.Extra = mustRRs("ns.evil.test. 300 IN A "+poisonA, "api.example.com. 300 IN A "+poisonA)
		case ok:
			m.Answer = mustRRs(qn + " 60 IN A " + ip)
		default:
			m.Rcode = dns.RcodeNameError
		}
		w.WriteMsg(m)
	})}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go srv.ActivateAndServe()
	<-started
	t.Cleanup(func() { srv.Shutdown() })
	return p
}

// TestOutOfBailiwickNotCached: records an upstream adds about other names
// (a CNAME target, another zone's NS and glue, an unrelated address) may
// travel with the answer to the name asked, but the cache never answers
// another name from them: each of those names is asked upstream and gets
// its real address.
func TestOutOfBailiwickNotCached(t *testing.T) {
	p := startPoisoner(t, "127.0.0.4")
	d := startDaemon(t, "--zone-file", exampleZone, "--upstream", p.addr, "--upstream-timeout", upstreamTimeout.String())
	d.WaitReady(15 * time.Second)
	r, _, err := d.ask("udp", "www.poison.test.", dns.TypeA)
	if err != nil || r.Rcode != dns.RcodeSuccess {
		t.Fatalf("www.poison.test: %v %v", r, err)
	}
	relayed := 0
	for _, sec := range [][]dns.RR{r.Answer, r.Ns, r.Extra} {
		for _, rr := range sec {
			if a, ok := rr.(*dns.A); ok && a.A.String() == poisonA && !strings.EqualFold(a.Hdr.Name, "victim.example.com.") {
				relayed++
			}
		}
	}
	served := 0
	for _, c := range []struct{ name, want string }{
		{"victim.example.com.", "192.0.2.77"},
		{"other.example.com.", "192.0.2.78"},
		{"api.example.com.", "192.0.2.10"},
	} {
		before := p.count(c.name)
		for range 3 { // the second and third are cache hits of the real answer
			r, _, err := d.ask("udp", c.name, dns.TypeA)
			if err != nil || firstA(r) != c.want {
				t.Errorf("%s: %v %v, want %s from the upstream", c.name, r, err, c.want)
				if firstA(r) == poisonA {
					served++
				}
			}
		}
		if got := p.count(c.name) - before; got != 1 {
			t.Errorf("%s asked upstream %d times, want once (then cached)", c.name, got)
		}
	}
	r, _, err = d.ask("udp", "ns.evil.test.", dns.TypeA)
	if err != nil || r.Rcode != dns.RcodeNameError {
		t.Errorf("ns.evil.test (glue in another answer): %v %v, want NXDOMAIN from the upstream", r, err)
		if firstA(r) == poisonA {
			served++
		}
	}
	d.Alive()
	figure(t, "out-of-bailiwick records: %d served from the cache for another name (of 4 names); %d unrelated poison records relayed with the answer to the name asked (a forwarder passes its upstream's sections)",
		served, relayed)
}
