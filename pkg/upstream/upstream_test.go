package upstream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/nodedns/nodedns/internal/dnstest"
)

const callerID = 0xBEEF

// The method resolver.Upstream asks for (resolver is the consumer; not
// imported here).
var _ interface {
	Exchange(context.Context, []byte) ([]byte, error)
} = (*Forwarder)(nil)

func packQuery(t testing.TB, name string, qtype uint16, edns uint16) []byte {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.Id = callerID
	if edns > 0 {
		m.SetEdns0(edns, false)
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
		t.Fatalf("reply does not unpack: %v", err)
	}
	return m
}

func newForwarder(t testing.TB, cfg Config, servers ...*dnstest.Server) *Forwarder {
	t.Helper()
	for _, s := range servers {
		cfg.Servers = append(cfg.Servers, s.Addr())
	}
	f, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func startServer(t testing.TB) *dnstest.Server {
	t.Helper()
	s := dnstest.Start(t, "127.0.0.1:0")
	s.Add("api.example.com. 60 IN A 192.0.2.1")
	return s
}

// wantAnswer checks that reply answers api.example.com. A with the real
// record only.
func wantAnswer(t *testing.T, reply []byte) *dns.Msg {
	t.Helper()
	m := unpack(t, reply)
	if m.Id != callerID {
		t.Errorf("reply ID %#x, want the caller's %#x", m.Id, callerID)
	}
	if m.Rcode != dns.RcodeSuccess || m.Truncated || len(m.Answer) != 1 {
		t.Fatalf("want one answer, NOERROR, no TC; got %v", m)
	}
	if a, ok := m.Answer[0].(*dns.A); !ok || a.A.String() != "192.0.2.1" {
		t.Fatalf("answer %v, want api.example.com. A 192.0.2.1", m.Answer[0])
	}
	return m
}

func TestExchangeAnswer(t *testing.T) {
	s := startServer(t)
	f := newForwarder(t, Config{}, s)
	q := packQuery(t, "API.example.com.", dns.TypeA, 0)
	orig := bytes.Clone(q)
	reply, err := f.Exchange(t.Context(), q)
	if err != nil {
		t.Fatal(err)
	}
	m := wantAnswer(t, reply)
	if m.Question[0].Name != "API.example.com." {
		t.Errorf("question %q: case not kept", m.Question[0].Name)
	}
	if !bytes.Equal(q, orig) {
		t.Error("Exchange modified the caller's query")
	}
	if qs := s.Queries(); len(qs) != 1 || qs[0].Transport != "udp" {
		t.Errorf("server saw %+v, want one UDP query", qs)
	}
}

func TestRandomIDAndSourcePort(t *testing.T) {
	s := startServer(t)
	f := newForwarder(t, Config{}, s)
	const n = 32
	for range n {
		reply, err := f.Exchange(t.Context(), packQuery(t, "api.example.com.", dns.TypeA, 0))
		if err != nil {
			t.Fatal(err)
		}
		wantAnswer(t, reply)
	}
	ids := map[uint16]bool{}
	ports := map[uint16]bool{}
	for _, q := range s.Queries() {
		ids[q.ID] = true
		ports[q.From.Port()] = true
	}
	// 32 draws from 65536 almost never collide; a fixed or counting ID
	// scheme seeded from the caller's ID would show here.
	if len(ids) < n-4 || ids[callerID] && len(ids) == 1 {
		t.Errorf("%d distinct upstream IDs in %d queries", len(ids), n)
	}
	if len(ports) < n/2 {
		t.Errorf("%d distinct source ports in %d queries", len(ports), n)
	}
}

func TestLargeReplyOverUDP(t *testing.T) {
	s := dnstest.Start(t, "127.0.0.1:0")
	var want []string
	for i := range 100 {
		rr := "big.example.com. 60 IN A 192.0.2." + strconv.Itoa(i+1)
		s.Add(rr)
		want = append(want, rr)
	}
	f := newForwarder(t, Config{}, s)
	reply, err := f.Exchange(t.Context(), packQuery(t, "big.example.com.", dns.TypeA, 4096))
	if err != nil {
		t.Fatal(err)
	}
	if len(reply) <= 512 {
		t.Fatalf("reply is %d bytes; the test needs one over 512", len(reply))
	}
	if m := unpack(t, reply); m.Truncated || len(m.Answer) != len(want) {
		t.Errorf("TC=%v with %d records, want %d", m.Truncated, len(m.Answer), len(want))
	}
	if s.Len() != 1 || s.Queries()[0].Transport != "udp" {
		t.Errorf("want one UDP query, server saw %+v", s.Queries())
	}
}

// A UDP reply larger than our read buffer (a server ignoring the EDNS size
// we advertise) is not served cut short: it is fetched again over TCP.
func TestOversizedUDPReplyRetriedOverTCP(t *testing.T) {
	s := dnstest.Start(t, "127.0.0.1:0")
	const n = 400 // about 6.4 KB of A records, over udpBufSize
	for i := range n {
		s.Add(fmt.Sprintf("huge.example.com. 60 IN A 198.51.%d.%d", i/250, i%250+1))
	}
	f := newForwarder(t, Config{}, s)
	reply, err := f.Exchange(t.Context(), packQuery(t, "huge.example.com.", dns.TypeA, 65000))
	if err != nil {
		t.Fatal(err)
	}
	if len(reply) <= udpBufSize {
		t.Fatalf("reply is %d bytes; the test needs one over %d", len(reply), udpBufSize)
	}
	if m := unpack(t, reply); m.Truncated || len(m.Answer) != n {
		t.Errorf("TC=%v with %d records, want %d", m.Truncated, len(m.Answer), n)
	}
	var transports []string
	for _, q := range s.Queries() {
		transports = append(transports, q.Transport)
	}
	if fmt.Sprint(transports) != "[udp tcp]" {
		t.Errorf("server saw %v, want [udp tcp]", transports)
	}
}

func TestForgedRepliesDropped(t *testing.T) {
	for _, tc := range []struct {
		name     string
		b        dnstest.Behavior
		wantTCP  bool
		wantTime time.Duration
	}{
		{name: "wrong ID", b: dnstest.Behavior{Forge: dnstest.ForgeID}},
		{name: "wrong name", b: dnstest.Behavior{Forge: dnstest.ForgeName}},
		{name: "wrong type", b: dnstest.Behavior{Forge: dnstest.ForgeType}},
		{name: "all, real reply delayed", b: dnstest.Behavior{
			Forge: dnstest.ForgeID | dnstest.ForgeName | dnstest.ForgeType, Delay: 20 * time.Millisecond}},
		{name: "all, over TCP too", wantTCP: true, b: dnstest.Behavior{
			Forge: dnstest.ForgeID | dnstest.ForgeName | dnstest.ForgeType, Truncate: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t)
			s.SetBehavior(tc.b)
			f := newForwarder(t, Config{}, s)
			for _, qtype := range []uint16{dns.TypeA, dns.TypeAAAA} {
				reply, err := f.Exchange(t.Context(), packQuery(t, "api.example.com.", qtype, 0))
				if err != nil {
					t.Fatal(err)
				}
				m := unpack(t, reply)
				if m.Id != callerID || m.Question[0].Qtype != qtype || m.Question[0].Name != "api.example.com." {
					t.Fatalf("reply header/question wrong: %v", m)
				}
				for _, rr := range m.Answer {
					s := rr.String()
					if strings.Contains(s, dnstest.ForgedA.String()) || strings.Contains(s, dnstest.ForgedAAAA.String()) {
						t.Fatalf("forged reply accepted: %v", m)
					}
				}
				if qtype == dns.TypeA {
					wantAnswer(t, reply)
				} else if m.Rcode != dns.RcodeSuccess || len(m.Answer) != 0 {
					t.Fatalf("AAAA: want the real NODATA, got %v", m)
				}
			}
			tcp := 0
			for _, q := range s.Queries() {
				if q.Transport == "tcp" {
					tcp++
				}
			}
			if tc.wantTCP != (tcp > 0) {
				t.Errorf("TCP queries: %d, want TCP=%v", tcp, tc.wantTCP)
			}
		})
	}
}

func TestTruncatedRetriesOverTCP(t *testing.T) {
	s := startServer(t)
	s.SetBehavior(dnstest.Behavior{Truncate: true})
	f := newForwarder(t, Config{}, s)
	reply, err := f.Exchange(t.Context(), packQuery(t, "api.example.com.", dns.TypeA, 1232))
	if err != nil {
		t.Fatal(err)
	}
	wantAnswer(t, reply)
	qs := s.Queries()
	if len(qs) != 2 || qs[0].Transport != "udp" || qs[1].Transport != "tcp" {
		t.Errorf("want UDP then TCP, server saw %+v", qs)
	}
	if qs[0].ID == qs[1].ID {
		t.Errorf("TCP retry reused the UDP ID %#x", qs[0].ID) // fails 1 in 65536 runs
	}
}

// fakeClock is a settable clock for health tracking.
type fakeClock struct{ ns atomic.Int64 }

func newClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }
func countA(s *dnstest.Server) int           { return s.Count("api.example.com.", dns.TypeA) }
func exchange(f *Forwarder, t *testing.T) []byte {
	t.Helper()
	return mustExchange(t.Context(), t, f)
}

func mustExchange(ctx context.Context, t *testing.T, f *Forwarder) []byte {
	t.Helper()
	reply, err := f.Exchange(ctx, packQuery(t, "api.example.com.", dns.TypeA, 0))
	if err != nil {
		t.Fatal(err)
	}
	return reply
}

func TestSilentServerFailsOver(t *testing.T) {
	s1, s2 := startServer(t), startServer(t)
	s1.SetBehavior(dnstest.Behavior{Drop: true})
	clock := newClock()
	const timeout = 200 * time.Millisecond
	f := newForwarder(t, Config{Timeout: timeout, Cooldown: 5 * time.Second, Now: clock.Now}, s1, s2)

	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	start := time.Now()
	wantAnswer(t, mustExchange(ctx, t, f))
	if el := time.Since(start); el < timeout || el > 3*time.Second {
		t.Errorf("answer after %v, want one timeout (%v) and then the second server", el, timeout)
	}
	if countA(s1) != 1 || countA(s2) != 1 {
		t.Fatalf("queries: s1 %d, s2 %d; want 1 each", countA(s1), countA(s2))
	}

	// s1 is in its cooldown: the next exchange goes straight to s2.
	wantAnswer(t, exchange(f, t))
	if countA(s1) != 1 || countA(s2) != 2 {
		t.Fatalf("queries: s1 %d, s2 %d; want s1 skipped", countA(s1), countA(s2))
	}

	// After the cooldown s1 is first again; once it answers it stays first.
	clock.Advance(5*time.Second + time.Nanosecond)
	s1.SetBehavior(dnstest.Behavior{})
	wantAnswer(t, exchange(f, t))
	wantAnswer(t, exchange(f, t))
	if countA(s1) != 3 || countA(s2) != 2 {
		t.Fatalf("queries: s1 %d, s2 %d; want s1 preferred again", countA(s1), countA(s2))
	}
}

func TestRcodeFailsOver(t *testing.T) {
	for _, tc := range []struct {
		rcode     int
		rankDown  bool
		s1Queries int // after two exchanges
	}{
		{dns.RcodeServerFailure, false, 2},
		{dns.RcodeRefused, true, 1},
	} {
		t.Run(dns.RcodeToString[tc.rcode], func(t *testing.T) {
			s1, s2 := startServer(t), startServer(t)
			s1.SetBehavior(dnstest.Behavior{Rcode: tc.rcode})
			f := newForwarder(t, Config{Now: newClock().Now}, s1, s2)
			wantAnswer(t, exchange(f, t))
			wantAnswer(t, exchange(f, t))
			if countA(s1) != tc.s1Queries || countA(s2) != 2 {
				t.Errorf("queries: s1 %d, s2 %d; want s1 %d, s2 2", countA(s1), countA(s2), tc.s1Queries)
			}
		})
	}
}

func TestAllFail(t *testing.T) {
	servfail, refused, closed := startServer(t), startServer(t), startServer(t)
	servfail.SetBehavior(dnstest.Behavior{Rcode: dns.RcodeServerFailure})
	refused.SetBehavior(dnstest.Behavior{Rcode: dns.RcodeRefused})
	closed.Close() // its port now answers ICMP port unreachable
	f := newForwarder(t, Config{Timeout: 5 * time.Second}, servfail, refused, closed)
	start := time.Now()
	reply, err := f.Exchange(t.Context(), packQuery(t, "api.example.com.", dns.TypeA, 0))
	if err == nil {
		t.Fatalf("got a reply %v, want an error", unpack(t, reply))
	}
	if !errors.Is(err, ErrAllFailed) {
		t.Errorf("err = %v, want ErrAllFailed", err)
	}
	var rc *RcodeError
	if !errors.As(err, &rc) || rc.Rcode != dns.RcodeServerFailure || rc.Server != servfail.Addr() {
		t.Errorf("err does not wrap the SERVFAIL of %v: %v", servfail.Addr(), err)
	}
	for _, s := range []*dnstest.Server{servfail, refused, closed} {
		if !strings.Contains(err.Error(), s.Addr().String()) {
			t.Errorf("error does not name %v: %v", s.Addr(), err)
		}
	}
	if el := time.Since(start); el > 4*time.Second {
		t.Errorf("took %v; a refused port should fail fast, not time out", el)
	}
}

func TestAllSilentTimesOut(t *testing.T) {
	s1, s2 := startServer(t), startServer(t)
	s1.SetBehavior(dnstest.Behavior{Drop: true})
	s2.SetBehavior(dnstest.Behavior{Drop: true})
	const timeout = 100 * time.Millisecond
	f := newForwarder(t, Config{Timeout: timeout}, s1, s2)
	start := time.Now()
	_, err := f.Exchange(t.Context(), packQuery(t, "api.example.com.", dns.TypeA, 0))
	if !errors.Is(err, ErrAllFailed) {
		t.Fatalf("err = %v, want ErrAllFailed", err)
	}
	if el := time.Since(start); el < 2*timeout {
		t.Errorf("failed after %v, before both tries timed out", el)
	}
	if countA(s1) != 1 || countA(s2) != 1 {
		t.Errorf("queries: s1 %d, s2 %d; want 1 each", countA(s1), countA(s2))
	}
}

// waitQueries returns a channel that receives once per query s sees.
func waitQueries(s *dnstest.Server) <-chan dnstest.Query {
	ch := make(chan dnstest.Query, 100)
	s.OnQuery(func(q dnstest.Query) { ch <- q })
	return ch
}

func TestContextCancel(t *testing.T) {
	s := startServer(t)
	s.SetBehavior(dnstest.Behavior{Drop: true})
	arrived := waitQueries(s)
	f := newForwarder(t, Config{Timeout: time.Minute}, s)

	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() {
		_, err := f.Exchange(ctx, packQuery(t, "api.example.com.", dns.TypeA, 0))
		errc <- err
	}()
	<-arrived
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Exchange did not return after cancel")
	}

	// Cancelling is not the server's fault: it is still tried first.
	s.SetBehavior(dnstest.Behavior{})
	wantAnswer(t, exchange(f, t))

	// A context already done sends nothing.
	s.Reset()
	if _, err := f.Exchange(ctx, packQuery(t, "api.example.com.", dns.TypeA, 0)); !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
	if s.Len() != 0 {
		t.Errorf("a done context still sent %d queries", s.Len())
	}
}

func TestContextDeadline(t *testing.T) {
	s1, s2 := startServer(t), startServer(t)
	s1.SetBehavior(dnstest.Behavior{Drop: true})
	f := newForwarder(t, Config{Timeout: time.Minute}, s1, s2)
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := f.Exchange(ctx, packQuery(t, "api.example.com.", dns.TypeA, 0))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want context.DeadlineExceeded", err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("returned after %v, long past the context's deadline", el)
	}
	if countA(s2) != 0 {
		t.Errorf("s2 queried %d times after the deadline", countA(s2))
	}
}

func TestMaxInFlight(t *testing.T) {
	s := startServer(t)
	s.SetBehavior(dnstest.Behavior{Drop: true})
	arrived := waitQueries(s)
	f := newForwarder(t, Config{Timeout: time.Minute, MaxInFlight: 2}, s)

	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() { f.Exchange(ctx, packQuery(t, "api.example.com.", dns.TypeA, 0)) })
	}
	<-arrived
	<-arrived // both slots are taken
	start := time.Now()
	third, cancelThird := context.WithTimeout(t.Context(), 2*time.Second) // bounds a broken limit
	defer cancelThird()
	_, err := f.Exchange(third, packQuery(t, "api.example.com.", dns.TypeA, 0))
	if !errors.Is(err, ErrOverloaded) {
		t.Errorf("third exchange: err = %v, want ErrOverloaded", err)
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("ErrOverloaded took %v, want at once", el)
	}
	if s.Len() != 2 {
		t.Errorf("server saw %d queries, want 2", s.Len())
	}
	cancel()
	wg.Wait()

	// The slots are released.
	s.SetBehavior(dnstest.Behavior{})
	for range 3 {
		wantAnswer(t, exchange(f, t))
	}
}

func TestBadQuery(t *testing.T) {
	s := startServer(t)
	f := newForwarder(t, Config{}, s)
	good := packQuery(t, "api.example.com.", dns.TypeA, 0)
	resp := bytes.Clone(good)
	resp[2] |= 0x80
	two := bytes.Clone(good)
	two[5] = 2
	pointer := append(bytes.Clone(good[:12]), 0xC0, 0x0C, 0, 1, 0, 1)
	for name, q := range map[string][]byte{
		"empty": nil, "short header": good[:11], "cut question": good[:len(good)-1],
		"response": resp, "two questions": two, "compressed name": pointer,
		"too big": append(bytes.Clone(good), make([]byte, 65536)...),
	} {
		if _, err := f.Exchange(t.Context(), q); !errors.Is(err, ErrBadQuery) {
			t.Errorf("%s: err = %v, want ErrBadQuery", name, err)
		}
	}
	if s.Len() != 0 {
		t.Errorf("bad queries reached the server: %+v", s.Queries())
	}
}

func TestNewValidates(t *testing.T) {
	ok := netip.MustParseAddrPort("127.0.0.1:53")
	for name, cfg := range map[string]Config{
		"no servers":   {},
		"zero port":    {Servers: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")}},
		"invalid":      {Servers: []netip.AddrPort{{}}},
		"neg timeout":  {Servers: []netip.AddrPort{ok}, Timeout: -1},
		"neg inflight": {Servers: []netip.AddrPort{ok}, MaxInFlight: -1},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: New accepted %+v", name, cfg)
		}
	}
	f, err := New(Config{Servers: []netip.AddrPort{ok}})
	if err != nil {
		t.Fatal(err)
	}
	if f.timeout != DefaultTimeout || f.maxInFlight != DefaultMaxInFlight || f.cooldown != DefaultCooldown {
		t.Errorf("defaults not applied: %v %v %v", f.timeout, f.maxInFlight, f.cooldown)
	}
	if got := f.Servers(); len(got) != 1 || got[0] != ok {
		t.Errorf("Servers() = %v", got)
	}
}

func TestOrder(t *testing.T) {
	const now = 1000
	servers := make([]server, 5)
	for i, until := range []int64{0, 1500, 999, 1200, 1000} { // 1200 fails sooner than 1500
		servers[i].failedUntil.Store(until)
	}
	got := order(nil, servers, now)
	want := []int{0, 2, 4, 3, 1}
	if len(got) != len(want) {
		t.Fatalf("order = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("order = %v, want %v", got, want)
		}
	}
	many := make([]server, 20) // past the stack array
	many[0].failedUntil.Store(now + 1)
	if got := order(nil, many, now); len(got) != 20 || got[0] != 1 || got[19] != 0 {
		t.Errorf("order of 20 = %v", got)
	}
}
