// Package upstream forwards queries for names outside the cluster zone to
// the node's recursive resolvers, over UDP with a TCP retry for truncated
// replies, failing over between servers by health.
//
// Each exchange uses a fresh random ID, and accepts only a reply whose ID
// and question match what was sent; anything else is dropped while waiting
// for the real reply (RFC 5452). Each UDP exchange has a fresh socket (so a
// random source port); TCP connections are kept a few seconds for reuse
// (RFC 7766 6.2.1), so a Forwarder must be closed.
package upstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Config configures a Forwarder.
type Config struct {
	// Servers are the upstream resolvers, tried in this order while healthy.
	// At least one.
	Servers []netip.AddrPort
	// Timeout bounds one try: one UDP exchange, or the TCP retry after a
	// truncated reply. Default 2s.
	Timeout time.Duration
	// Logger receives health changes (Warn, Info) and per-try failures and
	// dropped replies (Debug). nil discards.
	Logger *slog.Logger
	// MaxInFlight bounds concurrent exchanges; past it Exchange fails at
	// once with ErrOverloaded. Default 1000. As an exchange holds at most
	// one TCP connection at a time, it bounds those too.
	MaxInFlight int
	// Cooldown is how long a server that failed ranks behind the others.
	// Default 5s.
	Cooldown time.Duration
	// Now is the clock for health tracking; default time.Now. Network
	// deadlines and TCP idle times always use the real clock.
	Now func() time.Time
	// TCPIdleConns bounds the idle TCP connections kept per server for
	// reuse. Default 2; negative keeps none (a connection per exchange).
	TCPIdleConns int
	// TCPIdleTimeout is how long an idle TCP connection is kept. Default
	// 5s: under the 8 s after which CoreDNS (miekg/dns) servers close
	// theirs. A server may close one sooner (RFC 7766 6.2.3): a query that
	// fails on a reused connection before any reply byte is sent again
	// once on a new connection.
	TCPIdleTimeout time.Duration
	// Observer, if not nil, gets per-server events (metrics). New calls
	// its ForServer once per server; Close releases them.
	Observer Observer
}

// Defaults for zero Config fields.
const (
	DefaultTimeout     = 2 * time.Second
	DefaultMaxInFlight = 1000
	DefaultCooldown    = 5 * time.Second

	DefaultTCPIdleConns   = 2
	DefaultTCPIdleTimeout = 5 * time.Second
)

var (
	// ErrOverloaded: MaxInFlight exchanges are already in flight.
	ErrOverloaded = errors.New("upstream: too many exchanges in flight")
	// ErrBadQuery: the query is not a message with exactly one question.
	ErrBadQuery = errors.New("upstream: malformed query")
	// ErrAllFailed: every server was tried and none answered usefully; the
	// error also wraps each server's failure.
	ErrAllFailed = errors.New("upstream: all servers failed")
)

// RcodeError is a try that got a reply whose rcode (SERVFAIL, REFUSED)
// makes the Forwarder try the next server.
type RcodeError struct {
	Server netip.AddrPort
	Rcode  int
}

func (e *RcodeError) Error() string {
	name := "rcode " + strconv.Itoa(e.Rcode)
	switch e.Rcode {
	case rcodeServFail:
		name = "SERVFAIL"
	case rcodeRefused:
		name = "REFUSED"
	}
	return "upstream " + e.Server.String() + " answered " + name
}

const (
	rcodeServFail = 2
	rcodeRefused  = 5
)

// Forwarder sends queries to upstream servers. It is safe for concurrent
// use. Close it when done with it: it keeps idle TCP connections.
type Forwarder struct {
	servers     []server
	timeout     time.Duration
	cooldown    time.Duration
	maxInFlight int64
	inFlight    atomic.Int64
	log         *slog.Logger
	now         func() time.Time
	closeOnce   sync.Once
}

// New returns a Forwarder for cfg.
func New(cfg Config) (*Forwarder, error) {
	if len(cfg.Servers) == 0 {
		return nil, errors.New("upstream: no servers")
	}
	if cfg.Timeout < 0 || cfg.MaxInFlight < 0 || cfg.Cooldown < 0 || cfg.TCPIdleTimeout < 0 {
		return nil, errors.New("upstream: negative Timeout, MaxInFlight, Cooldown or TCPIdleTimeout")
	}
	f := &Forwarder{
		servers:     make([]server, len(cfg.Servers)),
		timeout:     orDefault(cfg.Timeout, DefaultTimeout),
		cooldown:    orDefault(cfg.Cooldown, DefaultCooldown),
		maxInFlight: int64(orDefault(cfg.MaxInFlight, DefaultMaxInFlight)),
		log:         cfg.Logger,
		now:         cfg.Now,
	}
	if f.log == nil {
		f.log = slog.New(slog.DiscardHandler)
	}
	if f.now == nil {
		f.now = time.Now
	}
	idleConns := orDefault(cfg.TCPIdleConns, DefaultTCPIdleConns)
	idleTimeout := orDefault(cfg.TCPIdleTimeout, DefaultTCPIdleTimeout)
	for i, ap := range cfg.Servers {
		if !ap.IsValid() || ap.Port() == 0 {
			return nil, fmt.Errorf("upstream: server %d: invalid address %q", i, ap)
		}
	}
	for i, ap := range cfg.Servers {
		srv := &f.servers[i]
		srv.addr = ap
		srv.udpAddr = net.UDPAddrFromAddrPort(ap)
		srv.tcpAddr = ap.String()
		srv.pool = newConnPool(max(idleConns, 0), idleTimeout)
		srv.obs = nopObserver{}
		if cfg.Observer != nil {
			// Only after validation: each ForServer is paired with a
			// Release in Close.
			if o := cfg.Observer.ForServer(ap); o != nil {
				srv.obs = o
			}
		}
	}
	return f, nil
}

// Close closes the idle TCP connections and releases the observers. An
// exchange still running finishes, closing its connection; Exchange may
// still be called, but keeps no connection. Safe to call more than once.
func (f *Forwarder) Close() error {
	f.closeOnce.Do(func() {
		for i := range f.servers {
			f.servers[i].pool.close()
			f.servers[i].obs.Release()
		}
	})
	return nil
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// Servers returns the configured servers, in configuration order.
func (f *Forwarder) Servers() []netip.AddrPort {
	out := make([]netip.AddrPort, len(f.servers))
	for i := range f.servers {
		out[i] = f.servers[i].addr
	}
	return out
}

// Exchange forwards query, a complete DNS query message, and returns the
// reply, whose ID is the query's and whose question matches it. query is
// neither modified nor kept; the reply is a new slice owned by the caller.
// Exchange is safe for concurrent use.
//
// Servers are tried healthy first, each with Timeout; a try fails on a
// timeout, a network error, or a SERVFAIL or REFUSED reply, and the next
// server is tried. A reply with TC set over UDP is retried over TCP with
// the same server. Exchange fails when every server failed (ErrAllFailed),
// when ctx ends (wrapping ctx.Err()), at once when MaxInFlight exchanges
// are running (ErrOverloaded), and on a malformed query (ErrBadQuery).
func (f *Forwarder) Exchange(ctx context.Context, query []byte) ([]byte, error) {
	qEnd, err := questionEnd(query)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadQuery, err)
	}
	if len(query) > maxMsgSize {
		return nil, fmt.Errorf("%w: %d bytes", ErrBadQuery, len(query))
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("upstream: %w", err)
	}
	if f.inFlight.Add(1) > f.maxInFlight {
		f.inFlight.Add(-1)
		return nil, ErrOverloaded
	}
	defer f.inFlight.Add(-1)

	var stack [8]int
	var errs []error
	for _, i := range order(stack[:0], f.servers, f.now().UnixNano()) {
		srv := &f.servers[i]
		reply, err := f.try(ctx, srv, query, qEnd)
		if err == nil {
			srv.markOK(f.log)
			reply[0], reply[1] = query[0], query[1]
			return reply, nil
		}
		if cerr := ctxDone(ctx); cerr != nil {
			// Not the server's fault: leave its health alone.
			return nil, fmt.Errorf("upstream %s: %w", srv.addr, cerr)
		}
		f.log.Debug("upstream try failed", "server", srv.addr, "err", err)
		errs = append(errs, err)
		var rc *RcodeError
		switch {
		case errors.As(err, &rc): // counted by try
		case isTimeout(err):
			srv.obs.Error(ErrorTimeout)
		default:
			srv.obs.Error(ErrorNetwork)
		}
		// A SERVFAIL may be about this one name (a broken delegation, a
		// DNSSEC failure): fail over, but do not rank the server down.
		if rc == nil || rc.Rcode != rcodeServFail {
			srv.markFailed(f.now(), f.cooldown, f.log, err)
		}
	}
	return nil, fmt.Errorf("%w: %w", ErrAllFailed, errors.Join(errs...))
}

// ctxDone returns ctx's error, or context.DeadlineExceeded once its
// deadline has passed even if its timer has not fired yet (a try whose
// socket deadline was ctx's can return just before).
func ctxDone(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
		return context.DeadlineExceeded
	}
	return nil
}

// try exchanges query with one server: UDP, then TCP if the UDP reply was
// truncated.
func (f *Forwarder) try(ctx context.Context, srv *server, query []byte, qEnd int) ([]byte, error) {
	reply, err := f.exchangeUDP(ctx, srv, query, qEnd)
	if err != nil {
		return nil, fmt.Errorf("upstream %s over udp: %w", srv.addr, err)
	}
	if reply[2]&flagTC != 0 { // RFC 1035 4.2.1, RFC 7766 5
		srv.obs.Error(ErrorTruncated)
		reply, err = f.exchangeTCP(ctx, srv, query, qEnd)
		if err != nil {
			return nil, fmt.Errorf("upstream %s over tcp after a truncated udp reply: %w", srv.addr, err)
		}
	}
	// The header's 4 rcode bits; extended rcodes (RFC 6891 6.1.3) in the
	// OPT record do not share these low values with SERVFAIL or REFUSED.
	switch rcode := int(reply[3] & 0x0F); rcode {
	case rcodeServFail:
		srv.obs.Error(ErrorServFail)
		return nil, &RcodeError{Server: srv.addr, Rcode: rcode}
	case rcodeRefused:
		srv.obs.Error(ErrorRefused)
		return nil, &RcodeError{Server: srv.addr, Rcode: rcode}
	}
	return reply, nil
}

// isTimeout reports whether err is a network deadline (a read's, or a
// dial's, which is not os.ErrDeadlineExceeded).
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// deadline is the end of a try starting at start: Timeout, cut short by ctx.
func (f *Forwarder) deadline(ctx context.Context, start time.Time) time.Time {
	d := start.Add(f.timeout)
	if cd, ok := ctx.Deadline(); ok && cd.Before(d) {
		return cd
	}
	return d
}
