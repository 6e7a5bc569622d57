package upstream

import (
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/nodedns/nodedns/internal/dnstest"
)

// eventually polls cond until it holds, failing the test after 5 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond) // polling interval, not synchronisation
	}
}

// tcpServer starts a server whose UDP answers are truncated, so every
// Exchange goes on to TCP.
func tcpServer(t *testing.T) *dnstest.Server {
	s := startServer(t)
	s.SetBehavior(dnstest.Behavior{Truncate: true})
	return s
}

func TestTCPConnectionReused(t *testing.T) {
	s := tcpServer(t)
	obs := newRecObserver()
	f := newForwarder(t, Config{Observer: obs}, s)
	const n = 10
	for range n {
		wantAnswer(t, exchange(f, t))
	}
	if c := s.TCPClients(); len(c) != 1 {
		t.Errorf("%d sequential TCP exchanges used %d connections (%v), want 1", n, len(c), c)
	}
	ids := map[uint16]bool{}
	for _, q := range s.Queries() {
		if q.Transport == "tcp" {
			ids[q.ID] = true
		}
	}
	if len(ids) < n-2 {
		t.Errorf("%d distinct IDs in %d TCP queries on one connection", len(ids), n)
	}
	if got := f.servers[0].pool.len(); got != 1 {
		t.Errorf("pool holds %d connections, want 1", got)
	}
	o := obs.server(s.Addr())
	if o.requests[TCP].Load() != n || o.replies[TCP].Load() != n || o.errors[ErrorTruncated].Load() != n {
		t.Errorf("observer: tcp requests %d, replies %d, truncated %d; want %d each",
			o.requests[TCP].Load(), o.replies[TCP].Load(), o.errors[ErrorTruncated].Load(), n)
	}
}

func TestTCPRetryAfterServerClosedIdleConn(t *testing.T) {
	s := tcpServer(t)
	obs := newRecObserver()
	f := newForwarder(t, Config{Observer: obs}, s)
	for round := range 3 {
		wantAnswer(t, exchange(f, t))
		if f.servers[0].pool.len() != 1 {
			t.Fatalf("round %d: no idle connection to reuse", round)
		}
		s.CloseTCPConns()
		eventually(t, "the server to close its side", func() bool { return s.TCPConns() == 0 })
	}
	wantAnswer(t, exchange(f, t))
	if c := s.TCPClients(); len(c) != 4 {
		t.Errorf("server saw TCP queries from %d connections, want 4", len(c))
	}
	o := obs.server(s.Addr())
	if o.requests[TCP].Load() != 4 || o.replies[TCP].Load() != 4 {
		t.Errorf("observer: tcp requests %d, replies %d; want 4 each (a retry is part of its request)",
			o.requests[TCP].Load(), o.replies[TCP].Load())
	}
	if e := o.errors[ErrorNetwork].Load() + o.errors[ErrorTimeout].Load(); e != 0 {
		t.Errorf("observer: %d errors for a closed idle connection, want 0", e)
	}
	if !o.healthy.Load() {
		t.Error("server ranked down for closing an idle connection")
	}
}

func TestTCPForgedRepliesOnReusedConn(t *testing.T) {
	s := startServer(t)
	s.SetBehavior(dnstest.Behavior{Truncate: true, Forge: dnstest.ForgeID | dnstest.ForgeName | dnstest.ForgeType})
	obs := newRecObserver()
	f := newForwarder(t, Config{Observer: obs}, s)
	const n = 5
	for range n {
		wantAnswer(t, exchange(f, t)) // fails on the forged A record
	}
	if c := s.TCPClients(); len(c) != 1 {
		t.Errorf("TCP queries from %d connections, want 1", len(c))
	}
	// Three forged replies ahead of the truncated UDP one and three ahead
	// of the TCP one, per exchange.
	if got := obs.server(s.Addr()).errors[ErrorMismatch].Load(); got != 6*n {
		t.Errorf("observer: %d mismatched replies dropped, want %d", got, 6*n)
	}
}

// startStreamServer serves DNS over TCP on loopback with answer, which
// gets each query and returns the messages to send back (a message made
// by cutShort is sent only in part) and whether to close the connection
// after them. It returns the address and a count of
// accepted connections.
func startStreamServer(t *testing.T, answer func(req *dns.Msg) (msgs []*dns.Msg, hangUp bool)) (netip.AddrPort, *atomic.Int64) {
	t.Helper()
	return serveTCP(t, func(c net.Conn) {
		var l [2]byte
		for {
			if _, err := io.ReadFull(c, l[:]); err != nil {
				return
			}
			b := make([]byte, binary.BigEndian.Uint16(l[:]))
			if _, err := io.ReadFull(c, b); err != nil {
				return
			}
			req := new(dns.Msg)
			if req.Unpack(b) != nil {
				return
			}
			msgs, hangUp := answer(req)
			for _, m := range msgs {
				out, _ := m.Pack()
				frame := binary.BigEndian.AppendUint16(nil, uint16(len(out)))
				if m.Id == cutShortID {
					frame = append(frame, out[:len(out)/2]...)
				} else {
					frame = append(frame, out...)
				}
				c.Write(frame)
			}
			if hangUp {
				return
			}
		}
	})
}

// serveTCP accepts TCP connections on a loopback port and runs serve on
// each (which returns when done with it); connections and the listener are
// closed, and every goroutine waited for, when tb ends. It returns the
// address and a count of accepted connections.
func serveTCP(tb testing.TB, serve func(c net.Conn)) (netip.AddrPort, *atomic.Int64) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	var accepted atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	tb.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				serve(c)
			})
		}
	})
	return ln.Addr().(*net.TCPAddr).AddrPort(), &accepted
}

// cutShortID marks a message the stream server sends only half of.
const cutShortID = 0xC07

func cutShort(m *dns.Msg) *dns.Msg {
	m.Id = cutShortID
	return m
}

func answerA(req *dns.Msg, a string) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(req)
	rr, _ := dns.NewRR(req.Question[0].Name + " 60 IN A " + a)
	m.Answer = []dns.RR{rr}
	return m
}

// A reply that comes after the real one (a duplicate, or a late answer)
// waits in the idle connection; the next query on it must drop it.
func TestTCPLateReplyOnReusedConnDropped(t *testing.T) {
	addr, accepted := startStreamServer(t, func(req *dns.Msg) ([]*dns.Msg, bool) {
		return []*dns.Msg{answerA(req, "192.0.2.1"), answerA(req, dnstest.ForgedA.String())}, false
	})
	obs := newRecObserver()
	f, err := New(Config{Servers: []netip.AddrPort{addr}, Observer: obs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	const n = 5
	for i := range n {
		// A new name each time, so even an ID that repeats by chance
		// cannot make the previous question's late reply match.
		name := "n" + strconv.Itoa(i) + ".example.com."
		q := packQuery(t, name, dns.TypeA, 0)
		qEnd, _ := questionEnd(q)
		reply, err := f.exchangeTCP(t.Context(), &f.servers[0], q, qEnd)
		if err != nil {
			t.Fatal(err)
		}
		m := unpack(t, reply)
		if len(m.Answer) != 1 || m.Answer[0].(*dns.A).A.String() != "192.0.2.1" || m.Question[0].Name != name {
			t.Fatalf("exchange %d: got %v", i, m)
		}
	}
	if accepted.Load() != 1 {
		t.Errorf("%d connections, want 1", accepted.Load())
	}
	if got := obs.server(addr).errors[ErrorMismatch].Load(); got != n-1 {
		t.Errorf("dropped %d late replies, want %d", got, n-1)
	}
}

// exchangeTCP runs f's TCP exchange with its first server.
func exchangeTCP(t *testing.T, f *Forwarder) ([]byte, error) {
	q := packQuery(t, "api.example.com.", dns.TypeA, 0)
	qEnd, _ := questionEnd(q)
	return f.exchangeTCP(t.Context(), &f.servers[0], q, qEnd)
}

// A server that hangs up on every query: the reused connection fails, the
// query is sent once more on a new one, which fails too. No third try.
func TestTCPRetriedOnlyOnce(t *testing.T) {
	var queries atomic.Int64
	addr, accepted := startStreamServer(t, func(req *dns.Msg) ([]*dns.Msg, bool) {
		if queries.Add(1) == 1 {
			return []*dns.Msg{answerA(req, "192.0.2.1")}, false
		}
		return nil, true
	})
	f, err := New(Config{Servers: []netip.AddrPort{addr}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if _, err := exchangeTCP(t, f); err != nil {
		t.Fatal(err)
	}
	if _, err := exchangeTCP(t, f); err == nil || isTimeout(err) {
		t.Fatalf("err = %v, want a network error", err)
	}
	if queries.Load() != 3 || accepted.Load() != 2 {
		t.Errorf("%d queries on %d connections, want 3 on 2", queries.Load(), accepted.Load())
	}
	if f.servers[0].pool.len() != 0 {
		t.Error("a failed connection went back to the pool")
	}
}

// A reused connection that breaks in the middle of a reply is not
// retried: the server got the query, and the next server is tried.
func TestTCPNoRetryAfterPartialReply(t *testing.T) {
	var queries atomic.Int64
	addr, accepted := startStreamServer(t, func(req *dns.Msg) ([]*dns.Msg, bool) {
		if queries.Add(1) == 2 {
			return []*dns.Msg{cutShort(answerA(req, "192.0.2.1"))}, true
		}
		return []*dns.Msg{answerA(req, "192.0.2.1")}, false
	})
	f, err := New(Config{Servers: []netip.AddrPort{addr}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if _, err := exchangeTCP(t, f); err != nil {
		t.Fatal(err)
	}
	if _, err := exchangeTCP(t, f); err == nil {
		t.Fatal("a reply cut short was accepted")
	}
	if queries.Load() != 2 || accepted.Load() != 1 {
		t.Errorf("%d queries on %d connections, want 2 on 1", queries.Load(), accepted.Load())
	}
}

// A reused connection that times out is not retried: the try's time is
// spent, and the server is slow rather than gone.
func TestTCPTimeoutOnReusedConnNotRetried(t *testing.T) {
	var queries atomic.Int64
	addr, accepted := startStreamServer(t, func(req *dns.Msg) ([]*dns.Msg, bool) {
		if queries.Add(1) == 2 {
			return nil, false // no answer, connection kept open
		}
		return []*dns.Msg{answerA(req, "192.0.2.1")}, false
	})
	f, err := New(Config{Servers: []netip.AddrPort{addr}, Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if _, err := exchangeTCP(t, f); err != nil {
		t.Fatal(err)
	}
	if _, err := exchangeTCP(t, f); !isTimeout(err) {
		t.Fatalf("err = %v, want a timeout", err)
	}
	if queries.Load() != 2 || accepted.Load() != 1 {
		t.Errorf("%d queries on %d connections, want 2 on 1", queries.Load(), accepted.Load())
	}
	if f.servers[0].pool.len() != 0 {
		t.Error("a connection that timed out went back to the pool")
	}
	// The next exchange gets a new connection.
	if _, err := exchangeTCP(t, f); err != nil || accepted.Load() != 2 {
		t.Errorf("after a timeout: err %v, %d connections; want nil, 2", err, accepted.Load())
	}
}

func TestTCPPoolBoundAndClose(t *testing.T) {
	s := tcpServer(t)
	const n = 5
	arrived := make(chan struct{}, n)
	release := make(chan struct{})
	s.OnQuery(func(q dnstest.Query) {
		if q.Transport == "tcp" {
			arrived <- struct{}{}
			<-release // hold each connection busy until all n are open
		}
	})
	f := newForwarder(t, Config{}, s)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() { wantAnswer(t, exchange(f, t)) })
	}
	for range n {
		<-arrived
	}
	s.OnQuery(nil)
	close(release)
	wg.Wait()
	if c := s.TCPClients(); len(c) != n {
		t.Fatalf("%d concurrent exchanges used %d connections, want %d", n, len(c), n)
	}
	if got := f.servers[0].pool.len(); got != DefaultTCPIdleConns {
		t.Errorf("pool holds %d, want %d", got, DefaultTCPIdleConns)
	}
	eventually(t, "surplus connections closed", func() bool { return s.TCPConns() == DefaultTCPIdleConns })

	f.Close()
	if got := f.servers[0].pool.len(); got != 0 {
		t.Errorf("pool holds %d after Close", got)
	}
	eventually(t, "idle connections closed by Close", func() bool { return s.TCPConns() == 0 })

	// A closed Forwarder still answers (exchanges racing a reload), but
	// keeps no connection.
	wantAnswer(t, exchange(f, t))
	if got := f.servers[0].pool.len(); got != 0 {
		t.Errorf("pool holds %d after an exchange on a closed Forwarder", got)
	}
	eventually(t, "connection of a closed Forwarder closed", func() bool { return s.TCPConns() == 0 })
	f.Close() // twice is fine
}

func TestTCPIdleConnClosed(t *testing.T) {
	s := tcpServer(t)
	f := newForwarder(t, Config{TCPIdleTimeout: 50 * time.Millisecond}, s)
	for range 2 { // the second arms the reaper again
		wantAnswer(t, exchange(f, t))
		if f.servers[0].pool.len() != 1 {
			t.Fatal("connection not pooled")
		}
		eventually(t, "idle connection closed", func() bool {
			return f.servers[0].pool.len() == 0 && s.TCPConns() == 0
		})
	}
	if c := s.TCPClients(); len(c) != 2 {
		t.Errorf("%d connections, want 2 (none reused after its idle timeout)", len(c))
	}
}

func TestTCPNoIdleConns(t *testing.T) {
	s := tcpServer(t)
	f := newForwarder(t, Config{TCPIdleConns: -1}, s)
	for range 3 {
		wantAnswer(t, exchange(f, t))
	}
	if c := s.TCPClients(); len(c) != 3 || f.servers[0].pool.len() != 0 {
		t.Errorf("%d connections, %d pooled; want 3, 0", len(c), f.servers[0].pool.len())
	}
}

// pipeConn is a net.Conn that records Close.
type pipeConn struct {
	net.Conn
	closed atomic.Bool
}

func (c *pipeConn) Close() error { c.closed.Store(true); return nil }

func TestConnPool(t *testing.T) {
	p := newConnPool(2, time.Hour)
	if p.get() != nil {
		t.Fatal("empty pool returned a connection")
	}
	c := [3]*pipeConn{{}, {}, {}}
	for _, x := range c {
		p.put(x)
	}
	if !c[0].closed.Load() || c[1].closed.Load() || c[2].closed.Load() {
		t.Errorf("full pool: closed %v %v %v, want the oldest only", c[0].closed.Load(), c[1].closed.Load(), c[2].closed.Load())
	}
	if got := p.get(); got != c[2] {
		t.Errorf("get returned %p, want the newest %p", got, c[2])
	}
	p.put(c[2])
	p.close()
	if !c[1].closed.Load() || !c[2].closed.Load() || p.len() != 0 {
		t.Error("close left connections open")
	}
	late := &pipeConn{}
	p.put(late)
	if !late.closed.Load() || p.get() != nil {
		t.Error("a closed pool kept a connection")
	}

	// The newest connection has outlived the timeout, the reaper has not
	// run yet: get closes it rather than hand it out.
	p = newConnPool(2, time.Hour)
	old := &pipeConn{}
	p.put(old)
	p.idle[0].since = time.Now().Add(-2 * time.Hour)
	if p.get() != nil || !old.closed.Load() {
		t.Error("get returned an expired connection")
	}
	p.close()
}

func TestCloseReleasesObservers(t *testing.T) {
	s1, s2 := startServer(t), startServer(t)
	obs := newRecObserver()
	f := newForwarder(t, Config{Observer: obs}, s1, s2)
	if len(obs.servers) != 2 || obs.server(s1.Addr()).forServer.Load() != 1 || obs.server(s2.Addr()).forServer.Load() != 1 {
		t.Fatalf("ForServer calls: %v", obs.servers)
	}
	f.Close()
	f.Close()
	for _, s := range []*dnstest.Server{s1, s2} {
		if r := obs.server(s.Addr()).released.Load(); r != 1 {
			t.Errorf("%v released %d times, want 1", s.Addr(), r)
		}
	}
	// A config New rejects acquires nothing.
	obs = newRecObserver()
	if _, err := New(Config{Servers: []netip.AddrPort{s1.Addr(), {}}, Observer: obs}); err == nil {
		t.Fatal("New accepted an invalid server")
	}
	if len(obs.servers) != 0 {
		t.Errorf("a failed New called ForServer %d times", len(obs.servers))
	}
}

func TestObserverEvents(t *testing.T) {
	ok, servfail, refused, silent, closed := startServer(t), startServer(t), startServer(t), startServer(t), startServer(t)
	servfail.SetBehavior(dnstest.Behavior{Rcode: dns.RcodeServerFailure})
	refused.SetBehavior(dnstest.Behavior{Rcode: dns.RcodeRefused})
	silent.SetBehavior(dnstest.Behavior{Drop: true})
	closed.Close()
	obs := newRecObserver()
	clock := newClock()
	f := newForwarder(t, Config{Observer: obs, Timeout: 100 * time.Millisecond, Now: clock.Now},
		servfail, refused, silent, closed, ok)
	t.Cleanup(func() { f.Close() })
	wantAnswer(t, exchange(f, t))
	for _, c := range []struct {
		s       *dnstest.Server
		kind    ErrorKind
		healthy bool
	}{
		{servfail, ErrorServFail, true}, // SERVFAIL does not rank a server down
		{refused, ErrorRefused, false},
		{silent, ErrorTimeout, false},
		{closed, ErrorNetwork, false},
	} {
		o := obs.server(c.s.Addr())
		if o.requests[UDP].Load() != 1 || o.errors[c.kind].Load() != 1 || o.healthy.Load() != c.healthy {
			t.Errorf("%v: udp requests %d, %v %d, healthy %v; want 1, 1, %v",
				c.kind, o.requests[UDP].Load(), c.kind, o.errors[c.kind].Load(), o.healthy.Load(), c.healthy)
		}
		var sum int64
		for k := range ErrorKind(NumErrorKinds) {
			sum += o.errors[k].Load()
		}
		if sum != 1 {
			t.Errorf("%v: %d errors counted, want 1", c.kind, sum)
		}
	}
	o := obs.server(ok.Addr())
	if o.requests[UDP].Load() != 1 || o.replies[UDP].Load() != 1 || o.took.Load() <= 0 {
		t.Errorf("ok: requests %d, replies %d, took %v", o.requests[UDP].Load(), o.replies[UDP].Load(), time.Duration(o.took.Load()))
	}

	// Back after the cooldown, refused answers: healthy again.
	refused.SetBehavior(dnstest.Behavior{})
	clock.Advance(DefaultCooldown + time.Second)
	wantAnswer(t, exchange(f, t))
	if !obs.server(refused.Addr()).healthy.Load() {
		t.Error("refused answers again but is not healthy")
	}
}

// recObserver records events per server.
type recObserver struct {
	mu      sync.Mutex
	servers map[netip.AddrPort]*recServer
}

type recServer struct {
	forServer, released atomic.Int64
	requests, replies   [NumTransports]atomic.Int64
	errors              [NumErrorKinds]atomic.Int64
	took                atomic.Int64
	healthy             atomic.Bool
}

func newRecObserver() *recObserver {
	return &recObserver{servers: map[netip.AddrPort]*recServer{}}
}

func (o *recObserver) ForServer(addr netip.AddrPort) ServerObserver {
	s := o.server(addr)
	s.forServer.Add(1)
	s.healthy.Store(true)
	return s
}

func (o *recObserver) server(addr netip.AddrPort) *recServer {
	o.mu.Lock()
	defer o.mu.Unlock()
	s := o.servers[addr]
	if s == nil {
		s = &recServer{}
		o.servers[addr] = s
	}
	return s
}

func (s *recServer) Request(t Transport) { s.requests[t].Add(1) }
func (s *recServer) Reply(t Transport, took time.Duration) {
	s.replies[t].Add(1)
	s.took.Add(int64(took))
}
func (s *recServer) Error(k ErrorKind) { s.errors[k].Add(1) }
func (s *recServer) Healthy(ok bool)   { s.healthy.Store(ok) }
func (s *recServer) Release()          { s.released.Add(1) }
