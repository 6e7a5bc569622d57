package upstream

import (
	"net/netip"
	"time"
)

// Observer gets what happens with each upstream server, for metrics.
// package upstream defines it so that it needs no metrics library.
type Observer interface {
	// ForServer is called by New once per configured server (twice for a
	// server listed twice), before New returns. The ServerObserver it
	// returns gets every event of that server until Forwarder.Close calls
	// its Release.
	ForServer(addr netip.AddrPort) ServerObserver
}

// ServerObserver gets the events of one server. Its methods are called on
// the query path, concurrently: they must be fast and must not allocate.
type ServerObserver interface {
	// Request: a query is being sent over t (one per UDP exchange and one
	// per TCP exchange, however many connections the latter needed).
	Request(t Transport)
	// Reply: a matching reply came over t, took after the Request.
	Reply(t Transport, took time.Duration)
	// Error: something of kind k went wrong; see ErrorKind.
	Error(k ErrorKind)
	// Healthy: false when the server starts a cooldown (it failed), true
	// when it answers again after one. It starts healthy.
	Healthy(ok bool)
	// Release: the Forwarder is closed and makes no more calls, bar those
	// of exchanges still finishing, which may be ignored. Called once.
	Release()
}

// Transport is how a query went to a server.
type Transport uint8

const (
	UDP Transport = iota
	TCP
	// NumTransports is the number of Transport values, for arrays.
	NumTransports = 2
)

func (t Transport) String() string {
	if t == TCP {
		return "tcp"
	}
	return "udp"
}

// ErrorKind classifies ServerObserver.Error.
type ErrorKind uint8

const (
	// ErrorTimeout: no matching reply before the try's deadline.
	ErrorTimeout ErrorKind = iota
	// ErrorNetwork: connecting, sending or receiving failed (ICMP port
	// unreachable, connection refused or reset).
	ErrorNetwork
	// ErrorServFail: a SERVFAIL reply; the next server is tried.
	ErrorServFail
	// ErrorRefused: a REFUSED reply; the next server is tried.
	ErrorRefused
	// ErrorMismatch: a reply dropped because its ID or question is not the
	// query's: forged, or late for an abandoned query. Counted per reply;
	// the exchange goes on waiting for the real one.
	ErrorMismatch
	// ErrorTruncated: a UDP reply with TC set, so the query is retried
	// over TCP. Not a failure of the server.
	ErrorTruncated
	// NumErrorKinds is the number of ErrorKind values, for arrays.
	NumErrorKinds = 6
)

var errorKindNames = [NumErrorKinds]string{"timeout", "network", "servfail", "refused", "mismatch", "truncated"}

func (k ErrorKind) String() string {
	if int(k) < len(errorKindNames) {
		return errorKindNames[k]
	}
	return "unknown"
}

// nopObserver is the ServerObserver without a Config.Observer.
type nopObserver struct{}

func (nopObserver) Request(Transport)              {}
func (nopObserver) Reply(Transport, time.Duration) {}
func (nopObserver) Error(ErrorKind)                {}
func (nopObserver) Healthy(bool)                   {}
func (nopObserver) Release()                       {}
