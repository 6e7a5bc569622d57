// Package dnstest runs a small authoritative DNS server for tests: it
// answers on UDP and TCP from records given in zone-file syntax, logs every
// query it receives, and can be switched at run time to misbehave (drop,
// delay, SERVFAIL, truncate, forge) for failure tests.
//
// It only binds the address it is given; tests should use loopback
// addresses ("127.0.0.1:0", or a fixed "127.0.0.x:port").
package dnstest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Server is a running test server. All methods are safe for concurrent use.
type Server struct {
	addr netip.AddrPort
	udp  *net.UDPConn
	tcp  *net.TCPListener
	tb   testing.TB // set by Start; used by Add to fail the test

	behavior atomic.Pointer[Behavior]
	onQuery  atomic.Pointer[func(Query)]

	recMu   sync.RWMutex
	zones   []string            // lowercased FQDNs, "." when none configured
	records map[string][]dns.RR // key: lowercased owner FQDN

	logMu sync.Mutex
	log   []Query

	connMu sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool

	done      chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup
}

// Option configures a Server at construction.
type Option func(*Server)

// WithZone makes the server authoritative for zones (e.g. "example.com"):
// unknown names under them get NXDOMAIN with the zone's SOA, names outside
// every zone get REFUSED. Without WithZone the server is authoritative for
// the root, so every unknown name gets NXDOMAIN.
func WithZone(zones ...string) Option {
	return func(s *Server) {
		for _, z := range zones {
			s.zones = append(s.zones, strings.ToLower(dns.Fqdn(z)))
		}
	}
}

// WithRecords adds records in zone-file syntax, as Add does.
func WithRecords(rrs ...string) Option {
	return func(s *Server) { s.Add(rrs...) }
}

// New starts a server listening on UDP and TCP at addr ("ip:port"; port 0
// picks a free port shared by both transports). Both sockets are bound
// before New returns, so queries may be sent at once: no further readiness
// signal is needed. Call Close to stop it.
func New(addr string, opts ...Option) (*Server, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, fmt.Errorf("dnstest: address %q: %w", addr, err)
	}
	udp, tcp, err := listen(ap)
	if err != nil {
		return nil, fmt.Errorf("dnstest: listening on %s: %w", addr, err)
	}
	s := &Server{
		addr:    udp.LocalAddr().(*net.UDPAddr).AddrPort(),
		udp:     udp,
		tcp:     tcp,
		records: make(map[string][]dns.RR),
		conns:   make(map[net.Conn]struct{}),
		done:    make(chan struct{}),
	}
	s.behavior.Store(&Behavior{})
	for _, o := range opts {
		o(s)
	}
	if len(s.zones) == 0 {
		s.zones = []string{"."}
	}
	s.addDefaultSOAs()
	s.wg.Add(2)
	go s.serveUDP()
	go s.serveTCP()
	return s, nil
}

// Start is New for tests: it fails tb if the server cannot start and
// closes the server when the test ends. Add on the returned server fails
// tb on a record that does not parse.
func Start(tb testing.TB, addr string, opts ...Option) *Server {
	tb.Helper()
	s, err := New(addr, opts...)
	if err != nil {
		tb.Fatal(err)
	}
	s.tb = tb
	tb.Cleanup(func() { s.Close() })
	return s
}

// listen binds UDP and TCP on the same port. With port 0 the UDP port is
// picked first and TCP tried on it, a few times over in case it is taken.
func listen(ap netip.AddrPort) (*net.UDPConn, *net.TCPListener, error) {
	tries := 1
	if ap.Port() == 0 {
		tries = 20
	}
	var lastErr error
	for range tries {
		udp, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(ap))
		if err != nil {
			return nil, nil, err
		}
		port := udp.LocalAddr().(*net.UDPAddr).AddrPort().Port()
		tcp, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(netip.AddrPortFrom(ap.Addr(), port)))
		if err == nil {
			return udp, tcp, nil
		}
		udp.Close()
		lastErr = err
	}
	return nil, nil, lastErr
}

// Addr returns the bound address, the same for UDP and TCP.
func (s *Server) Addr() netip.AddrPort { return s.addr }

// Close stops the server: it closes the sockets and every TCP connection,
// abandons delayed answers, and waits for its goroutines. Safe to call
// more than once.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		close(s.done)
		s.udp.Close()
		s.tcp.Close()
		s.connMu.Lock()
		s.closed = true
		for c := range s.conns {
			c.Close()
		}
		s.connMu.Unlock()
		s.wg.Wait()
	})
	return nil
}

func (s *Server) serveUDP() {
	defer s.wg.Done()
	buf := make([]byte, dns.MaxMsgSize)
	for {
		n, from, err := s.udp.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // e.g. ECONNREFUSED from an earlier send; keep serving
		}
		pkt := append([]byte(nil), buf[:n]...)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.handle(pkt, "udp", from, func(b []byte) {
				s.udp.WriteToUDPAddrPort(b, from)
			})
		}()
	}
}

func (s *Server) serveTCP() {
	defer s.wg.Done()
	for {
		c, err := s.tcp.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		s.connMu.Lock()
		if s.closed {
			s.connMu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.connMu.Unlock()
		go s.serveConn(c)
	}
}

// serveConn answers length-prefixed queries on one TCP connection, one at
// a time, until the peer closes it or the server stops.
func (s *Server) serveConn(c net.Conn) {
	defer s.wg.Done()
	defer func() {
		s.connMu.Lock()
		delete(s.conns, c)
		s.connMu.Unlock()
		c.Close()
	}()
	from := c.RemoteAddr().(*net.TCPAddr).AddrPort()
	write := func(b []byte) {
		out := make([]byte, 2+len(b))
		binary.BigEndian.PutUint16(out, uint16(len(b)))
		copy(out[2:], b)
		c.Write(out)
	}
	var lenBuf [2]byte
	for {
		if _, err := io.ReadFull(c, lenBuf[:]); err != nil {
			return
		}
		pkt := make([]byte, binary.BigEndian.Uint16(lenBuf[:]))
		if _, err := io.ReadFull(c, pkt); err != nil {
			return
		}
		s.handle(pkt, "tcp", from, write)
	}
}

// handle logs one query and, unless told to drop it, sends any forged
// replies, waits out the delay and sends the real answer.
func (s *Server) handle(pkt []byte, transport string, from netip.AddrPort, write func([]byte)) {
	req := new(dns.Msg)
	if err := req.Unpack(pkt); err != nil || req.Response || len(req.Question) != 1 {
		return // not a query we can answer; a test server need not say why
	}
	q := req.Question[0]
	s.record(Query{
		Name: q.Name, Type: q.Qtype, Class: q.Qclass, ID: req.Id,
		Transport: transport, From: from, Time: time.Now(),
	})
	b := s.Behavior()
	if b.Drop {
		return
	}
	for _, f := range []Forge{ForgeID, ForgeName, ForgeType} {
		if b.Forge&f != 0 {
			if out, err := forged(req, f).Pack(); err == nil {
				write(out)
			}
		}
	}
	if b.Delay > 0 {
		t := time.NewTimer(b.Delay)
		select {
		case <-t.C:
		case <-s.done:
			t.Stop()
			return
		}
	}
	resp := s.respond(req, b, transport)
	if out, err := resp.Pack(); err == nil {
		write(out)
	}
}
