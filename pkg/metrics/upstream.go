package metrics

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nodedns/nodedns/pkg/upstream"
)

// upstreamMetrics are the per-upstream-server collectors, labelled by
// upstream="ip:port" (a bounded set: the configured servers). They are
// registered on the first ForServer. A server's children are bound when a
// Forwarder is built and deleted when no Forwarder uses it any more, so a
// configuration reload drops the series of removed servers.
type upstreamMetrics struct {
	once     sync.Once
	requests *prometheus.CounterVec
	errors   *prometheus.CounterVec
	duration *prometheus.HistogramVec
	healthy  *prometheus.GaugeVec

	mu      sync.Mutex
	servers map[netip.AddrPort]*upstreamServer // with refs > 0
}

func (u *upstreamMetrics) init(reg *prometheus.Registry) {
	u.servers = make(map[netip.AddrPort]*upstreamServer)
	u.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "upstream_requests_total",
		Help: "Queries sent to an upstream server, by transport (tcp: the retry after a truncated udp reply).",
	}, []string{"upstream", "transport"})
	u.errors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "upstream_errors_total",
		Help: "Upstream failures by kind: timeout, network, servfail, refused; mismatch counts dropped replies " +
			"(wrong ID or question: forged or late), truncated counts udp replies retried over tcp.",
	}, []string{"upstream", "kind"})
	u.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Name: "upstream_request_duration_seconds",
		Help:    "Time from sending a query to an upstream server to its matching reply, by transport.",
		Buckets: []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5},
	}, []string{"upstream", "transport"})
	u.healthy = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: namespace, Name: "upstream_healthy",
		Help: "0 from a failed try of an upstream server (it then ranks behind the others for a cooldown) " +
			"until it answers again, else 1.",
	}, []string{"upstream"})
	reg.MustRegister(u.requests, u.errors, u.duration, u.healthy)
}

// upstreamServer holds one server's bound children.
type upstreamServer struct {
	u        *upstreamMetrics
	addr     netip.AddrPort
	label    string
	refs     int // guarded by u.mu
	requests [upstream.NumTransports]prometheus.Counter
	duration [upstream.NumTransports]prometheus.Observer
	errors   [upstream.NumErrorKinds]prometheus.Counter
	healthy  prometheus.Gauge
}

// ForServer binds the metrics of the upstream server addr; it implements
// upstream.Observer (pass the *Metrics as upstream.Config.Observer).
// Every series of the server exists from then on, until the last
// Forwarder using it is closed. A nil *Metrics returns nil: no observer.
func (m *Metrics) ForServer(addr netip.AddrPort) upstream.ServerObserver {
	if m == nil {
		return nil
	}
	u := &m.upstreams
	u.once.Do(func() { u.init(m.reg) })
	u.mu.Lock()
	defer u.mu.Unlock()
	s := u.servers[addr]
	if s == nil {
		s = &upstreamServer{u: u, addr: addr, label: addr.String()}
		for t := range upstream.Transport(upstream.NumTransports) {
			s.requests[t] = u.requests.WithLabelValues(s.label, t.String())
			s.duration[t] = u.duration.WithLabelValues(s.label, t.String())
		}
		for k := range upstream.ErrorKind(upstream.NumErrorKinds) {
			s.errors[k] = u.errors.WithLabelValues(s.label, k.String())
		}
		s.healthy = u.healthy.WithLabelValues(s.label)
		u.servers[addr] = s
	}
	s.refs++
	s.healthy.Set(1) // a new Forwarder starts with every server healthy
	return &upstreamHandle{upstreamServer: s}
}

// upstreamHandle is one Forwarder's use of a server's metrics, so that a
// Release counts once.
type upstreamHandle struct {
	*upstreamServer
	released atomic.Bool
}

func (h *upstreamHandle) Release() {
	if h.released.Swap(true) {
		return
	}
	s, u := h.upstreamServer, h.u
	u.mu.Lock()
	defer u.mu.Unlock()
	if s.refs--; s.refs > 0 {
		return
	}
	delete(u.servers, s.addr)
	for t := range upstream.Transport(upstream.NumTransports) {
		u.requests.DeleteLabelValues(s.label, t.String())
		u.duration.DeleteLabelValues(s.label, t.String())
	}
	for k := range upstream.ErrorKind(upstream.NumErrorKinds) {
		u.errors.DeleteLabelValues(s.label, k.String())
	}
	u.healthy.DeleteLabelValues(s.label)
}

func (s *upstreamServer) Request(t upstream.Transport) {
	if t < upstream.NumTransports {
		s.requests[t].Inc()
	}
}

func (s *upstreamServer) Reply(t upstream.Transport, took time.Duration) {
	if t < upstream.NumTransports {
		s.duration[t].Observe(took.Seconds())
	}
}

func (s *upstreamServer) Error(k upstream.ErrorKind) {
	if k < upstream.NumErrorKinds {
		s.errors[k].Inc()
	}
}

func (s *upstreamServer) Healthy(ok bool) {
	if ok {
		s.healthy.Set(1)
	} else {
		s.healthy.Set(0)
	}
}
