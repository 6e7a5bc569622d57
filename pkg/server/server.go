// Package server runs the DNS listeners of nodedns: on each address a UDP
// socket (or several, with SO_REUSEPORT) served by reader goroutines of our
// own, and a TCP listener with a bounded number of connections. Answers come
// from a resolver.Resolver.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nodedns/nodedns/pkg/resolver"
)

// Config configures a Server.
type Config struct {
	// Addrs are the "ip:port" addresses to serve, over UDP and TCP each.
	// Port 0 picks a free port, the same for UDP and TCP.
	Addrs []string
	// Resolver answers the queries. Required. Shutdown drains it: the
	// Server owns the sockets its asynchronous answers go out through.
	Resolver *resolver.Resolver
	// Logger; nil discards.
	Logger *slog.Logger
	// UDPSockets is the number of SO_REUSEPORT sockets per address (the
	// kernel spreads flows over them); default GOMAXPROCS on Linux, else 1
	// (see ReusePort). Sockets, not readers, are what runs in parallel:
	// readers of one socket take turns (its read lock, held while waiting)
	// and hand it over on every wake-up.
	UDPSockets int
	// UDPReaders is the number of reader goroutines per UDP socket; default
	// 1. More cost CPU per query (+15% at 10,000 q/s on one core,
	// BENCHMARKS.md).
	UDPReaders int
	// UDPReadBuffer sets SO_RCVBUF of the UDP sockets; 0 keeps the system
	// default.
	UDPReadBuffer int
	// TCPMaxConns bounds concurrent TCP connections; over it new ones are
	// closed at once. Default 1000.
	TCPMaxConns int
	// TCPIdleTimeout is how long a TCP connection may take to deliver its
	// next whole message, and to take an answer; then it is closed (RFC 7766
	// §6.2.3). Default 10s.
	TCPIdleTimeout time.Duration
	// Inherited are sockets already bound, typically received from the
	// instance this one replaces (pkg/handoff). Start serves each of them
	// instead of binding its address and protocol anew, and binds only what
	// they do not cover. Every inherited UDP socket is read, even beyond
	// UDPSockets: what queues in a socket nobody reads is lost once its
	// other holders close it. Each Addr must be one of Addrs (port 0 never
	// matches). Start takes ownership (Shutdown closes them, as does a
	// failed Start); until Start is called the caller owns them.
	Inherited []Listener

	// udpLoop makes the UDP readers take one packet per syscall (the
	// portable loop) even where they could batch: tests and benchmarks.
	udpLoop bool
}

// Server serves DNS over UDP and TCP. Start and Shutdown are safe for
// concurrent use.
type Server struct {
	cfg  Config
	res  *resolver.Resolver
	log  *slog.Logger
	idle time.Duration

	// ctx bounds TCP queries waiting for the upstream; cancelled when the
	// shutdown grace period ends.
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	started  bool
	stopping atomic.Bool // set under mu
	udp      []*net.UDPConn
	tcp      []net.Listener
	lns      []Listener // udp and tcp with their addresses, for Listeners
	conns    map[net.Conn]*connState
	done     chan struct{} // closed when Shutdown has finished
	err      error         // Shutdown's result, set before done is closed

	wg      sync.WaitGroup // readers, accept loops, connections
	connSem chan struct{}
	epoch   time.Time // origin of connState.idleSince
	tcpBufs sync.Pool // *tcpBuf
}

// New validates cfg and returns a Server; Start binds its addresses.
func New(cfg Config) (*Server, error) {
	if cfg.Resolver == nil {
		return nil, errors.New("server: no Resolver")
	}
	if len(cfg.Addrs) == 0 {
		return nil, errors.New("server: no Addrs")
	}
	for _, a := range cfg.Addrs {
		if _, err := netip.ParseAddrPort(a); err != nil {
			return nil, fmt.Errorf("server: address %q: %w", a, err)
		}
	}
	if err := checkInherited(cfg.Inherited, cfg.Addrs); err != nil {
		return nil, err
	}
	if cfg.UDPSockets <= 0 {
		cfg.UDPSockets = defaultUDPSockets()
	}
	if cfg.UDPReaders <= 0 {
		cfg.UDPReaders = 1
	}
	if cfg.TCPMaxConns <= 0 {
		cfg.TCPMaxConns = 1000
	}
	if cfg.TCPIdleTimeout <= 0 {
		cfg.TCPIdleTimeout = 10 * time.Second
	}
	s := &Server{
		cfg:     cfg,
		res:     cfg.Resolver,
		log:     cfg.Logger,
		idle:    cfg.TCPIdleTimeout,
		conns:   make(map[net.Conn]*connState),
		done:    make(chan struct{}),
		connSem: make(chan struct{}, cfg.TCPMaxConns),
		epoch:   time.Now(),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.tcpBufs.New = func() any { return newTCPBuf() }
	return s, nil
}

// Start binds every address over UDP and TCP and starts serving. It returns
// the bound addresses, in the order of Config.Addrs (useful with port 0).
// ctx bounds the binding only; the Server runs until Shutdown. If an address
// cannot be bound, Start closes what it bound and returns an error naming it.
func (s *Server) Start(ctx context.Context) ([]netip.AddrPort, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started || s.stopping.Load() {
		return nil, errors.New("server: already started or shut down")
	}
	var (
		bound []netip.AddrPort
		lns   []Listener
		udp   []*net.UDPConn
		tcp   []net.Listener
	)
	inherited := slices.Clone(s.cfg.Inherited) // adopt deletes from it
	nInherited := len(inherited)
	s.cfg.Inherited = nil // owned by Start from here: lns or fail
	fail := func(err error) ([]netip.AddrPort, error) {
		for _, l := range append(lns, inherited...) {
			l.close()
		}
		return nil, err
	}
	for _, a := range s.cfg.Addrs {
		ap := netip.MustParseAddrPort(a) // checked in New
		if ap.Port() == 0 {
			p, err := freePort(ctx, ap.Addr())
			if err != nil {
				return fail(fmt.Errorf("binding %s: %w", a, err))
			}
			ap = netip.AddrPortFrom(ap.Addr(), p)
		}
		inUDP, inTCP, err := s.adopt(&inherited, &lns, ap)
		if err != nil {
			return fail(fmt.Errorf("inherited %s: %w", a, err))
		}
		if n := s.cfg.UDPSockets - inUDP; n > 0 {
			us, err := listenUDP(ctx, ap, n, s.cfg.UDPReadBuffer)
			for _, c := range us {
				lns = append(lns, Listener{Addr: ap, UDP: c})
			}
			if err != nil {
				return fail(fmt.Errorf("binding %s/udp: %w", a, err))
			}
		}
		if !inTCP {
			l, err := listenTCP(ctx, ap)
			if err != nil {
				return fail(fmt.Errorf("binding %s/tcp: %w", a, err))
			}
			lns = append(lns, Listener{Addr: ap, TCP: l.(*net.TCPListener)})
		}
		bound = append(bound, ap)
	}
	for _, l := range lns {
		if l.UDP != nil {
			udp = append(udp, l.UDP)
		} else {
			tcp = append(tcp, l.TCP)
		}
	}
	s.started = true
	s.udp, s.tcp, s.lns = udp, tcp, lns
	for _, c := range udp {
		snd := &udpSender{conn: c, log: s.log}
		for range s.cfg.UDPReaders {
			s.wg.Add(1)
			go s.readUDP(c, snd)
		}
	}
	for _, l := range tcp {
		s.wg.Add(1)
		go s.acceptTCP(l)
	}
	s.log.Info("serving DNS", slog.Any("addrs", bound), slog.Int("inherited_sockets", nInherited))
	return bound, nil
}

// Shutdown stops the Server: it stops reading and accepting, lets the
// queries in flight (UDP answers waiting for the upstream, TCP connections
// in the middle of a query) finish until ctx ends, then closes everything.
// It returns ctx.Err() if the grace period ended first. It drains the
// Resolver (resolver.Drain), whose asynchronous answers leave through the
// Server's sockets. Safe to call more than once and concurrently: later
// calls wait for the first (or for their own ctx) and return its result.
// After Shutdown, Start fails.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	first := !s.stopping.Load()
	s.stopping.Store(true)
	if !first {
		s.mu.Unlock()
		select {
		case <-s.done:
			return s.err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if !s.started {
		// Nothing to stop; the Resolver is left alone.
		close(s.done)
		s.mu.Unlock()
		return nil
	}
	past := time.Unix(1, 0)
	for _, c := range s.udp {
		c.SetReadDeadline(past) // wakes the readers, which see stopping
	}
	for _, l := range s.tcp {
		l.Close()
	}
	for c := range s.conns {
		c.SetReadDeadline(past) // wakes idle connections; busy ones finish their query
	}
	s.mu.Unlock()

	loops := make(chan struct{})
	go func() { s.wg.Wait(); close(loops) }()
	var err error
	select {
	case <-loops:
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err == nil {
		err = s.res.Drain(ctx) // answers still waiting for the upstream
	} else {
		// Out of grace: connections close before the waiting queries are
		// cancelled, so a TCP client sees the close, never a SERVFAIL
		// racing it.
		s.closeConns()
		s.res.Drain(ctx) // cancels them
	}
	s.cancel()
	s.closeConns()
	for _, c := range s.udp {
		c.Close()
	}
	s.err = err
	close(s.done)
	return err
}

// track registers a new TCP connection unless the Server is stopping.
func (s *Server) closeConns() {
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
}

// connState is what the server knows of one TCP connection.
type connState struct {
	// idleSince is when the connection began waiting for the first octet
	// of its next message (ns since Server.epoch, at least 1), 0 while a
	// message is read or answered: closing it then loses no query in
	// progress.
	idleSince atomic.Int64
}

func (s *Server) markIdle(st *connState) { st.idleSince.Store(int64(time.Since(s.epoch)) + 1) }

func (s *Server) track(c net.Conn) *connState {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping.Load() {
		return nil
	}
	st := &connState{}
	s.conns[c] = st
	s.wg.Add(1)
	return st
}

// reclaimIdle wakes the connection idle the longest, with a past read
// deadline, so that it closes and frees its slot, and reports whether
// there was one. RFC 7766 §6.2.3: under resource pressure a server may
// close idle connections. One per newcomer, not every idle one: clients
// over the bound then cost the others one connection each, not all of
// theirs every time. A connection with unread input is not idle, whatever
// its state says: its next query has arrived, and closing it would lose
// that query and reset the answers the client has not read yet.
func (s *Server) reclaimIdle() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	var oldest net.Conn
	oldestSince := int64(math.MaxInt64)
	for c, st := range s.conns {
		if since := st.idleSince.Load(); since != 0 && since < oldestSince && !hasInput(c) {
			oldest, oldestSince = c, since
		}
	}
	if oldest == nil {
		return false
	}
	oldest.SetReadDeadline(time.Unix(1, 0))
	return true
}

func (s *Server) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// backoff sleeps after an accept or read error that is not the end of the
// socket, so that a persistent error does not spin a CPU.
func backoff(d time.Duration) time.Duration {
	if d == 0 {
		d = 5 * time.Millisecond
	} else {
		d = min(2*d, time.Second)
	}
	time.Sleep(d)
	return d
}

// freePort finds a port free for both UDP and TCP on ip, by binding both
// without SO_REUSEPORT (which could otherwise share a port with another
// process of ours) and closing them.
func freePort(ctx context.Context, ip netip.Addr) (uint16, error) {
	var lc net.ListenConfig
	var err error
	for range 10 {
		var pc net.PacketConn
		pc, err = lc.ListenPacket(ctx, udpNetwork(ip), netip.AddrPortFrom(ip, 0).String())
		if err != nil {
			return 0, err
		}
		port := pc.LocalAddr().(*net.UDPAddr).AddrPort().Port()
		var l net.Listener
		l, err = lc.Listen(ctx, tcpNetwork(ip), netip.AddrPortFrom(ip, port).String())
		pc.Close()
		if err == nil {
			l.Close()
			return port, nil
		}
	}
	return 0, err
}

func udpNetwork(ip netip.Addr) string {
	if ip.Is4() {
		return "udp4"
	}
	return "udp"
}

func tcpNetwork(ip netip.Addr) string {
	if ip.Is4() {
		return "tcp4"
	}
	return "tcp"
}
