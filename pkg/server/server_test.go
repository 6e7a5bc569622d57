package server

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/nodedns/nodedns/internal/testproc"
	"github.com/nodedns/nodedns/pkg/resolver"
	rt "github.com/nodedns/nodedns/pkg/resolver/resolvertest"
	"github.com/nodedns/nodedns/pkg/zone"
)

const (
	web = "web.default.svc.cluster.local."
	big = "big.default.svc.cluster.local."
	soa = "cluster.local. 30 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 5"
)

func testZone(t testing.TB) *rt.Zone {
	z := new(rt.Zone)
	z.Set(t, web, dns.TypeA, rt.Result(t, zone.KindAnswer, web, []string{web + " 5 IN A 10.0.0.1"}, nil, nil))
	var rrs []string
	for i := range 100 {
		rrs = append(rrs, big+" 5 IN A "+netip.AddrFrom4([4]byte{10, 1, byte(i / 256), byte(i)}).String())
	}
	z.Set(t, big, dns.TypeA, rt.Result(t, zone.KindAnswer, big, rrs, nil, nil))
	nx := "nope.default.svc.cluster.local."
	z.Set(t, nx, dns.TypeA, rt.Result(t, zone.KindNXDomain, nx, nil, []string{soa}, nil))
	return z
}

type testServer struct {
	srv  *Server
	addr string // ip:port, UDP and TCP
}

func start(t *testing.T, up resolver.Upstream, mod ...func(*Config)) *testServer {
	return startTB(t, up, mod...)
}

func startB(b *testing.B) *testServer { return startTB(b, nil) }

var client = netip.MustParseAddrPort("127.0.0.1:5353")

type failing struct{}

func (failing) Exchange(context.Context, []byte) ([]byte, error) {
	return nil, errors.New("no upstream")
}

func startTB(t testing.TB, up resolver.Upstream, mod ...func(*Config)) *testServer {
	t.Helper()
	if up == nil {
		up = rt.Static(t, "api.example.com. 60 IN A 192.0.2.10")
	}
	r, err := resolver.New(resolver.Config{
		Authority: testZone(t), Upstream: up, ClusterDomains: []string{"cluster.local"},
		UpstreamTimeout: 2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Addrs: []string{"127.0.0.1:0"}, Resolver: r, UDPReaders: 2, UDPSockets: 2}
	for _, f := range mod {
		f(&cfg)
	}
	return serve(t, cfg)
}

// serve starts a server on cfg and shuts it down when t ends.
func serve(t testing.TB, cfg Config) *testServer {
	t.Helper()
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	bound, err := srv.Start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return &testServer{srv: srv, addr: bound[0].String()}
}

// waitIdle waits until n TCP connections wait for their next message.
func (ts *testServer) waitIdle(t *testing.T, n int) {
	t.Helper()
	testproc.WaitFor(t, fmt.Sprintf("%d idle connections", n), 5*time.Second, func() bool {
		ts.srv.mu.Lock()
		defer ts.srv.mu.Unlock()
		idle := 0
		for _, st := range ts.srv.conns {
			if st.idleSince.Load() != 0 {
				idle++
			}
		}
		return idle == n
	})
}

// waitConns waits until the server has n TCP connections.
func (ts *testServer) waitConns(t *testing.T, n int) {
	t.Helper()
	testproc.WaitFor(t, fmt.Sprintf("%d connections", n), 5*time.Second, func() bool {
		ts.srv.mu.Lock()
		defer ts.srv.mu.Unlock()
		return len(ts.srv.conns) == n
	})
}

func (ts *testServer) exchange(t *testing.T, net string, m *dns.Msg) *dns.Msg {
	t.Helper()
	c := &dns.Client{Net: net, Timeout: 5 * time.Second, UDPSize: 65535}
	r, _, err := c.Exchange(m, ts.addr)
	if err != nil {
		t.Fatalf("%s exchange: %v", net, err)
	}
	return r
}

func msg(name string, qtype uint16, edns uint16) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	if edns > 0 {
		m.SetEdns0(edns, false)
	}
	return m
}

func TestAnswers(t *testing.T) {
	ts := start(t, nil)
	for _, proto := range []string{"udp", "tcp"} {
		t.Run(proto, func(t *testing.T) {
			r := ts.exchange(t, proto, msg("WEB.default.svc.cluster.local.", dns.TypeA, 1232))
			if r.Rcode != 0 || !r.Authoritative {
				t.Errorf("header %+v", r.MsgHdr)
			}
			rt.CheckSection(t, "answer", r.Answer, "WEB.default.svc.cluster.local. 5 IN A 10.0.0.1")
			r = ts.exchange(t, proto, msg("nope.default.svc.cluster.local.", dns.TypeA, 0))
			if r.Rcode != dns.RcodeNameError {
				t.Errorf("rcode %d", r.Rcode)
			}
			rt.CheckSection(t, "authority", r.Ns, soa)
			r = ts.exchange(t, proto, msg("api.example.com.", dns.TypeA, 0))
			if r.Rcode != 0 || r.Authoritative {
				t.Errorf("forwarded header %+v", r.MsgHdr)
			}
			rt.CheckSection(t, "forwarded answer", r.Answer, "api.example.com. 60 IN A 192.0.2.10")
		})
	}
}

func TestTruncatedThenTCP(t *testing.T) {
	ts := start(t, nil)
	// 100 A records are ~1.7 kB: over 1232 (our cap) whatever the client says.
	r := ts.exchange(t, "udp", msg(big, dns.TypeA, 4096))
	if !r.Truncated || len(r.Answer) != 0 || len(r.Question) != 1 {
		t.Fatalf("UDP answer not truncated: tc %v, %d answers", r.Truncated, len(r.Answer))
	}
	if r.IsEdns0() == nil || r.IsEdns0().UDPSize() != 1232 {
		t.Errorf("OPT %v", r.IsEdns0())
	}
	r = ts.exchange(t, "tcp", msg(big, dns.TypeA, 4096))
	if r.Truncated || len(r.Answer) != 100 {
		t.Fatalf("TCP answer: tc %v, %d answers", r.Truncated, len(r.Answer))
	}
	// A small answer fits in UDP.
	if r := ts.exchange(t, "udp", msg(web, dns.TypeA, 0)); r.Truncated || len(r.Answer) != 1 {
		t.Errorf("small answer: %v", r)
	}
}

// udpRaw sends b and returns the reply, or nil if none came within wait.
func udpRaw(t *testing.T, c *net.UDPConn, b []byte, wait time.Duration) []byte {
	t.Helper()
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 65535)
	n, err := c.Read(buf)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil
		}
		t.Fatal(err)
	}
	return buf[:n]
}

func header(flags, qd uint16, body ...byte) []byte {
	return append([]byte{0xab, 0xcd, byte(flags >> 8), byte(flags), byte(qd >> 8), byte(qd), 0, 0, 0, 0, 0, 0}, body...)
}

func TestMalformed(t *testing.T) {
	ts := start(t, nil)
	c, err := net.Dial("udp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	uc := c.(*net.UDPConn)
	q := []byte("\x03www\x07example\x03com\x00\x00\x01\x00\x01")
	label64 := append(append([]byte{64}, make([]byte, 64)...), 0, 0, 1, 0, 1)
	good, _ := msg(web, dns.TypeA, 0).Pack()
	tests := []struct {
		name  string
		b     []byte
		rcode int // -1: dropped
	}{
		{"truncated header", header(0x0100, 1)[:7], -1},
		{"qdcount 0", header(0x0100, 0), dns.RcodeFormatError},
		{"qdcount 2", header(0x0100, 2, append(q, q...)...), dns.RcodeFormatError},
		{"label 64", header(0x0100, 1, label64...), dns.RcodeFormatError},
		{"compressed question", header(0x0100, 1, 1, 'a', 0xC0, 12, 0, 1, 0, 1), dns.RcodeFormatError},
		{"truncated question", header(0x0100, 1, 3, 'w', 'w'), dns.RcodeFormatError},
		{"response", header(0x8100, 1, q...), -1},
		{"opcode 2", header(2<<11, 1, q...), dns.RcodeNotImplemented},
		{"opcode 15", header(15<<11, 1, q...), dns.RcodeNotImplemented},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A dropped packet gets no answer; a short wait is enough to
			// catch a wrong one, and the good query after it proves the
			// server kept going.
			wait := 5 * time.Second
			if tt.rcode < 0 {
				wait = 200 * time.Millisecond
			}
			reply := udpRaw(t, uc, tt.b, wait)
			switch {
			case tt.rcode < 0 && reply != nil:
				t.Errorf("dropped packet answered: %x", reply)
			case tt.rcode >= 0 && reply == nil:
				t.Errorf("no answer")
			case tt.rcode >= 0:
				m := rt.Unpack(t, reply)
				if m.Rcode != tt.rcode || m.Id != 0xabcd || !m.Response {
					t.Errorf("answer %v, want rcode %s", m.MsgHdr, dns.RcodeToString[tt.rcode])
				}
			}
			reply = udpRaw(t, uc, good, 5*time.Second)
			if reply == nil || len(rt.Unpack(t, reply).Answer) != 1 {
				t.Fatalf("server stopped answering after %s", tt.name)
			}
		})
	}
}

func TestUpstreamFailure(t *testing.T) {
	ts := start(t, rt.Failing())
	for _, proto := range []string{"udp", "tcp"} {
		r := ts.exchange(t, proto, msg("api.example.com.", dns.TypeA, 0))
		if r.Rcode != dns.RcodeServerFailure {
			t.Errorf("%s: rcode %s", proto, dns.RcodeToString[r.Rcode])
		}
	}
}

// tcpConn dials the server over TCP.
func tcpConn(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func readFramed(t *testing.T, c net.Conn) *dns.Msg {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var hdr [2]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		t.Fatalf("read length: %v", err)
	}
	b := make([]byte, binary.BigEndian.Uint16(hdr[:]))
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatalf("read message: %v", err)
	}
	return rt.Unpack(t, b)
}

func framed(t *testing.T, m *dns.Msg, id uint16) []byte {
	m.Id = id
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return append([]byte{byte(len(b) >> 8), byte(len(b))}, b...)
}

func TestTCPPipelining(t *testing.T) {
	ts := start(t, nil)
	c := tcpConn(t, ts.addr)
	// Three queries in one write, one of them forwarded: answered in order.
	var b []byte
	b = append(b, framed(t, msg(web, dns.TypeA, 0), 1)...)
	b = append(b, framed(t, msg("api.example.com.", dns.TypeA, 0), 2)...)
	b = append(b, framed(t, msg("nope.default.svc.cluster.local.", dns.TypeA, 0), 3)...)
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	for id, rcode := range []int{0, 0, dns.RcodeNameError} {
		m := readFramed(t, c)
		if int(m.Id) != id+1 || m.Rcode != rcode {
			t.Errorf("answer %d: id %d rcode %d", id+1, m.Id, m.Rcode)
		}
	}
}

// expectClosed waits (at most 5 s) for the server to close c and returns
// how long it took.
func expectClosed(t *testing.T, c net.Conn) time.Duration {
	t.Helper()
	start := time.Now()
	c.SetReadDeadline(start.Add(5 * time.Second))
	_, err := c.Read(make([]byte, 1))
	if err == nil {
		t.Fatal("read data, want close")
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("connection not closed by the server")
	}
	return time.Since(start)
}

func TestTCPIdleAndPartial(t *testing.T) {
	const idle = 150 * time.Millisecond
	ts := start(t, nil, func(c *Config) { c.TCPIdleTimeout = idle })
	t.Run("idle", func(t *testing.T) {
		c := tcpConn(t, ts.addr)
		if d := expectClosed(t, c); d < idle/2 {
			t.Errorf("closed after %v, before the idle timeout %v", d, idle)
		}
	})
	t.Run("idle after a query", func(t *testing.T) {
		c := tcpConn(t, ts.addr)
		c.Write(framed(t, msg(web, dns.TypeA, 0), 9))
		if m := readFramed(t, c); m.Id != 9 {
			t.Fatalf("id %d", m.Id)
		}
		expectClosed(t, c)
	})
	t.Run("length prefix larger than the message", func(t *testing.T) {
		c := tcpConn(t, ts.addr)
		c.Write([]byte{0, 100, 1, 2, 3, 4, 5})
		expectClosed(t, c)
	})
	t.Run("half a length prefix", func(t *testing.T) {
		c := tcpConn(t, ts.addr)
		c.Write([]byte{0})
		expectClosed(t, c)
	})
	// The server still answers.
	if r := ts.exchange(t, "tcp", msg(web, dns.TypeA, 0)); len(r.Answer) != 1 {
		t.Errorf("after idle connections: %v", r)
	}
}

// TestTCPMaxConns: at the bound, the connection idle the longest gives
// up its slot to a new one, one per newcomer; connections busy with a
// query keep their slots, and a new one is closed unanswered.
func TestTCPMaxConns(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	busy := make(chan struct{}, 2)
	up := &rt.Upstream{ExchangeFunc: func(ctx context.Context, q []byte) ([]byte, error) {
		busy <- struct{}{}
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil, errors.New("released")
	}}
	ts := start(t, up, func(c *Config) { c.TCPMaxConns = 2; c.TCPIdleTimeout = time.Minute })

	// Two idle connections, each proven served (so both are counted),
	// the first idle longer.
	var idle []net.Conn
	for i := range 2 {
		c := tcpConn(t, ts.addr)
		c.Write(framed(t, msg(web, dns.TypeA, 0), uint16(i)))
		readFramed(t, c)
		ts.waitIdle(t, i+1)
		idle = append(idle, c)
	}
	// A third is answered at once, and the first idle one is closed for it
	// (with a one-minute idle timeout, a close within expectClosed's 5 s
	// is the reclaim at work); the second keeps its slot and is answered.
	c := tcpConn(t, ts.addr)
	c.Write(framed(t, msg(web, dns.TypeA, 0), 3))
	if r := readFramed(t, c); len(r.Answer) != 1 {
		t.Fatalf("third connection: %v", r)
	}
	expectClosed(t, idle[0])
	idle[1].Write(framed(t, msg(web, dns.TypeA, 0), 4))
	if r := readFramed(t, idle[1]); len(r.Answer) != 1 {
		t.Fatalf("second idle connection after the third came: %v", r)
	}
	c.Close()
	idle[1].Close()
	ts.waitConns(t, 0)

	// Two connections busy with a query waiting on the upstream keep
	// their slots: a new connection is closed unanswered. (Two names: the
	// same one would share one upstream exchange.)
	for i, name := range []string{"a.example.com.", "b.example.com."} {
		bc := tcpConn(t, ts.addr)
		bc.Write(framed(t, msg(name, dns.TypeA, 0), uint16(10+i)))
		<-busy
	}
	c = tcpConn(t, ts.addr)
	c.Write(framed(t, msg(web, dns.TypeA, 0), 20))
	expectClosed(t, c)
	// UDP is unaffected.
	if r := ts.exchange(t, "udp", msg(web, dns.TypeA, 0)); len(r.Answer) != 1 {
		t.Errorf("udp: %v", r)
	}
}

// TestReclaimIdleSkipsUnreadInput: the longest idle connection is
// reclaimed, unless its next message has arrived unread: closing it would
// lose that query.
func TestReclaimIdleSkipsUnreadInput(t *testing.T) {
	r, err := resolver.New(resolver.Config{Authority: testZone(t), Upstream: rt.Failing()})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{Addrs: []string{"127.0.0.1:0"}, Resolver: r})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// pair returns both ends of a connection; the server's end is tracked
	// as idle since `since`, and served by no goroutine.
	pair := func(since int64) (client net.Conn, server *deadlineConn) {
		client = tcpConn(t, ln.Addr().String())
		c, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		server = &deadlineConn{TCPConn: c.(*net.TCPConn)}
		st := &connState{}
		st.idleSince.Store(since)
		s.conns[server] = st
		return client, server
	}
	reclaimed := func(c *deadlineConn) bool {
		d := c.readDeadline()
		return !d.IsZero() && d.Before(time.Now())
	}
	olderClient, older := pair(1)
	_, younger := pair(2)
	olderClient.Write([]byte{0, 12})
	testproc.WaitFor(t, "the octets in the older connection's socket", 5*time.Second, func() bool { return hasInput(older) })

	if !s.reclaimIdle() {
		t.Fatal("reclaimIdle found no idle connection")
	}
	if reclaimed(older) {
		t.Fatal("the older connection, with input, was reclaimed")
	}
	older.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(older, make([]byte, 2)); err != nil {
		t.Fatal(err)
	}
	if !reclaimed(younger) {
		t.Error("the younger connection, without input, was not reclaimed")
	}
	// Its input read, the older one is idle and goes next.
	delete(s.conns, younger)
	if !s.reclaimIdle() || !reclaimed(older) {
		t.Error("the older connection, now without input, was not reclaimed")
	}
	s.conns[older].idleSince.Store(0)
	if s.reclaimIdle() {
		t.Error("reclaimIdle reclaimed a connection that is not idle")
	}
}

// deadlineConn records its last read deadline.
type deadlineConn struct {
	*net.TCPConn
	mu       sync.Mutex
	deadline time.Time
}

func (c *deadlineConn) SetReadDeadline(d time.Time) error {
	c.mu.Lock()
	c.deadline = d
	c.mu.Unlock()
	return c.TCPConn.SetReadDeadline(d)
}

func (c *deadlineConn) readDeadline() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.deadline
}

func TestStartErrors(t *testing.T) {
	r, _ := resolver.New(resolver.Config{Authority: testZone(t), Upstream: rt.Failing()})
	for _, addrs := range [][]string{nil, {"localhost:53"}, {"127.0.0.1"}, {"1.2.3.4:99999"}} {
		if _, err := New(Config{Addrs: addrs, Resolver: r}); err == nil {
			t.Errorf("New(%q) succeeded", addrs)
		}
	}
	if _, err := New(Config{Addrs: []string{"127.0.0.1:0"}}); err == nil {
		t.Error("New without a Resolver succeeded")
	}

	// An address already taken (without SO_REUSEPORT) fails, naming it, and
	// releases the addresses bound before it.
	taken, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	takenAddr := taken.LocalAddr().String()
	srv, err := New(Config{Addrs: []string{"127.0.0.1:0", takenAddr}, Resolver: r})
	if err != nil {
		t.Fatal(err)
	}
	_, err = srv.Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), takenAddr) {
		t.Fatalf("Start = %v, want an error naming %s", err, takenAddr)
	}
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown after failed Start: %v", err)
	}
}

func TestShutdown(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 2)
	up := &rt.Upstream{ExchangeFunc: func(ctx context.Context, q []byte) ([]byte, error) {
		entered <- struct{}{}
		<-release
		return rt.Static(t, "api.example.com. 60 IN A 192.0.2.10", "tcp.example.com. 60 IN A 192.0.2.11").ExchangeFunc(ctx, q)
	}}
	r, _ := resolver.New(resolver.Config{Authority: testZone(t), Upstream: up})
	srv, err := New(Config{Addrs: []string{"127.0.0.1:0"}, Resolver: r})
	if err != nil {
		t.Fatal(err)
	}
	bound, err := srv.Start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Start(context.Background()); err == nil {
		t.Error("second Start succeeded")
	}
	addr := bound[0].String()

	// One UDP and one TCP query wait for the upstream while we shut down
	// (different names: the resolver merges identical misses into one
	// exchange, and each must reach the upstream).
	type result struct {
		m   *dns.Msg
		err error
	}
	results := make(chan result, 2)
	for _, q := range []struct{ proto, name string }{{"udp", "api.example.com."}, {"tcp", "tcp.example.com."}} {
		go func() {
			c := &dns.Client{Net: q.proto, Timeout: 10 * time.Second}
			m, _, err := c.Exchange(msg(q.name, dns.TypeA, 0), addr)
			results <- result{m, err}
		}()
	}
	<-entered
	<-entered
	idle := tcpConn(t, addr) // an idle connection must not hold Shutdown up

	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			errs[i] = srv.Shutdown(ctx)
		}()
	}
	close(release)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Shutdown %d: %v", i, err)
		}
	}
	for range 2 {
		res := <-results
		if res.err != nil || res.m.Rcode != 0 || len(res.m.Answer) != 1 {
			t.Errorf("in-flight query: %v %v", res.m, res.err)
		}
	}
	expectClosed(t, idle)
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Errorf("third Shutdown: %v", err)
	}
	// Nothing listens any more.
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Error("TCP still accepting")
	}
	if _, err := srv.Start(context.Background()); err == nil {
		t.Error("Start after Shutdown succeeded")
	}
}

func TestShutdownGraceExpires(t *testing.T) {
	entered := make(chan struct{}, 1)
	up := &rt.Upstream{ExchangeFunc: func(ctx context.Context, q []byte) ([]byte, error) {
		entered <- struct{}{}
		<-ctx.Done()
		return nil, ctx.Err()
	}}
	r, _ := resolver.New(resolver.Config{Authority: testZone(t), Upstream: up, UpstreamTimeout: time.Hour})
	srv, _ := New(Config{Addrs: []string{"127.0.0.1:0"}, Resolver: r})
	bound, err := srv.Start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	c := tcpConn(t, bound[0].String())
	c.Write(framed(t, msg("api.example.com.", dns.TypeA, 0), 1))
	<-entered // the query is in the server, waiting for the upstream
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v", err)
	}
	expectClosed(t, c)
}
