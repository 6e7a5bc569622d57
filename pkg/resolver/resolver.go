// Package resolver is the hot path of nodedns: one query in, one answer out.
//
// A query for the cluster zone is answered synchronously on the calling
// goroutine from the zone snapshot, without allocating. A query that needs
// the network (a name outside the zone, or the target of an ExternalName
// CNAME) is copied and finished on another goroutine, which sends the answer
// through a Sender, so the server's read loop never waits for an upstream.
package resolver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nodedns/nodedns/internal/dnswire"
	"github.com/nodedns/nodedns/pkg/cache"
	"github.com/nodedns/nodedns/pkg/metrics"
	"github.com/nodedns/nodedns/pkg/zone"
)

// Authority answers for the cluster zone. *zone.Snapshot implements it;
// StoreAuthority adapts a *zone.Store. Lookup must be safe for concurrent
// use and must not allocate when dst has room (see zone.Snapshot.Lookup).
type Authority interface {
	Lookup(name []byte, qtype uint16, dst []byte) zone.Result
}

// StoreAuthority looks names up in the current snapshot of Store: one
// atomic load per query, no lock (DESIGN: examples 1).
type StoreAuthority struct{ Store *zone.Store }

// Lookup implements Authority.
func (a StoreAuthority) Lookup(name []byte, qtype uint16, dst []byte) zone.Result {
	return a.Store.Load().Lookup(name, qtype, dst)
}

// Upstream forwards queries for names outside the cluster zone; pkg/upstream
// implements it. Exchange must be safe for concurrent use.
type Upstream interface {
	// Exchange forwards query (a complete DNS query message, built by the
	// resolver) and returns the reply, whose ID equals the query's ID and
	// whose question matches the query's. ctx bounds the whole exchange.
	// The query's ID is random already; putting a fresh random one on the
	// wire does no harm (DESIGN: examples 4). The caller owns the returned
	// slice and may modify it; Exchange must not keep query.
	Exchange(ctx context.Context, query []byte) ([]byte, error)
}

// Cache holds ready-to-send upstream answers; *cache.Cache (pkg/cache)
// implements it. It sits between the resolver and the Upstream: Get runs
// on the read goroutine before a query is forwarded; Set, Fail and Stale
// run on the goroutine of the upstream exchange. Identical misses are
// coalesced by the resolver (flight.go), not by the Cache. All methods
// must be safe for concurrent use.
type Cache interface {
	// Get appends to dst the stored answer to q, which was parsed from msg,
	// patched for this query (ID, question case, TTLs), and says what it
	// was: cache.Miss (none), a fresh answer, one to refresh in the
	// background (cache.Prefetch, at most once per stored answer), a stale
	// one or a remembered failure. It must neither block nor allocate.
	Get(dst, msg []byte, q *dnswire.Query) ([]byte, cache.Hit)
	// Set offers reply, the upstream's answer to q. It may lower the TTLs
	// in reply to the ones the cache will serve, so that the answer sent
	// now agrees with later hits; it does not keep reply.
	Set(q *dnswire.Query, reply []byte)
	// Fail records that the upstream failed to answer q (timeout,
	// SERVFAIL, REFUSED): for a while, Get answers it from stale data or
	// with SERVFAIL without a miss.
	Fail(q *dnswire.Query)
	// Stale appends to dst the best answer the cache still has for q after
	// the upstream failed: fresh, else expired but within the serve-stale
	// window (RFC 8767). It must not allocate.
	Stale(dst, msg []byte, q *dnswire.Query) ([]byte, bool)
}

// Sender delivers an answer that was not ready when Handle returned. It must
// be safe for concurrent use; msg is valid only during the call.
type Sender interface {
	Send(msg []byte, to netip.AddrPort)
}

// Proto is the transport a query came over: it decides the size limit of
// the answer.
type Proto uint8

const (
	UDP Proto = iota
	TCP
)

// Config configures a Resolver. Authority and Upstream are required.
type Config struct {
	Authority Authority
	Upstream  Upstream
	// Cache, when not nil, is consulted before forwarding, stores the
	// upstream's answers and serves stale ones when the upstream fails.
	// Answers of the cluster zone and of ExternalName chases are not
	// cached: the zone's are pre-packed already, and a chase mixes zone
	// and upstream records whose lifetimes differ.
	Cache Cache
	// ClusterDomains are the cluster zones ("cluster.local"). A name under
	// one of them is never sent upstream, even if the Authority says
	// KindForward (SPEC R12: answered locally, never forwarded); such a
	// query gets SERVFAIL.
	ClusterDomains []string
	// Logger receives failures of asynchronous work at debug level; nil
	// discards.
	Logger *slog.Logger
	// Metrics counts every answer by transport, qtype, rcode and source;
	// nil counts nothing.
	Metrics *metrics.Metrics
	// UpstreamTimeout bounds the whole upstream part of one query (all the
	// exchanges of a CNAME chase included); default 5s.
	UpstreamTimeout time.Duration
	// MaxInFlight bounds the queries waiting for the upstream; over it new
	// ones get SERVFAIL at once. Default 4096.
	MaxInFlight int
	// UDPSize is the EDNS0 payload size we advertise and the largest UDP
	// answer we send; default dnswire.DefaultUDPSize (1232), at least 512.
	UDPSize int
	// MaxChase bounds the CNAME hops followed for an ExternalName; default 8.
	MaxChase int

	// Autopath turns on server-side search (autopath.go): a query for
	// X.<ns>.svc.<zone> that the zone answers NXDOMAIN, from a Pod of
	// namespace ns (PodNamespace), is answered with a CNAME to the first
	// name of the rest of the Pod's search list that exists. PodNamespace
	// is then required.
	Autopath bool
	// SearchDomains are the node's search domains, which kubelet appends
	// to every Pod's search list: autopath candidates after the cluster
	// ones, and, with or without autopath, what forwarded NXDOMAINs are
	// counted under (search_suffix_answers_total{kind="node_search"}).
	SearchDomains []string
	// PodNamespace returns the namespace of the Pod with that IP on this
	// node, if there is exactly one; hostNetwork Pods must not be found.
	// It must be safe for concurrent use and should not allocate.
	PodNamespace func(netip.Addr) (string, bool)

	// QueryLog writes one line per answered query to Logger, at level
	// info: client address, transport, name, type, rcode, source and
	// duration. At most QueryLogRate lines per second (default 100, with
	// bursts of as many) are written; the others are dropped and counted
	// (query_log_dropped_total). Off, it costs an atomic load per query.
	// SetQueryLog changes both while the Resolver runs.
	QueryLog     bool
	QueryLogRate int
}

// Resolver answers queries. Its methods are safe for concurrent use.
type Resolver struct {
	auth     Authority
	up       Upstream
	cache    Cache
	log      *slog.Logger
	metrics  *metrics.Metrics
	timeout  time.Duration
	udpSize  int
	maxChase int
	max      int64
	cluster  [][]byte // wire form, lowercase

	// Autopath (autopath.go); podNS is nil when it is off.
	podNS  func(netip.Addr) (string, bool)
	svc    [][]byte // "svc." + cluster[i], wire
	search [][]byte // node search domains, wire

	qlog atomic.Pointer[queryLog] // nil when off

	// inflight counts asynchronous queries; closedBit is set by Drain.
	inflight atomic.Int64
	drained  chan struct{}
	drainMu  sync.Once
	base     context.Context
	cancel   context.CancelFunc

	bufs sync.Pool // *[]byte for asynchronous answers

	// Upstream exchanges in the air, by key (flight.go).
	fmu     sync.Mutex
	flights map[string]*flight
}

const closedBit = int64(1) << 62

// New validates cfg and returns a Resolver.
func New(cfg Config) (*Resolver, error) {
	if cfg.Authority == nil {
		return nil, errors.New("resolver: no Authority")
	}
	if cfg.Upstream == nil {
		return nil, errors.New("resolver: no Upstream")
	}
	r := &Resolver{
		metrics:  cfg.Metrics,
		auth:     cfg.Authority,
		up:       cfg.Upstream,
		cache:    cfg.Cache,
		log:      cfg.Logger,
		timeout:  cfg.UpstreamTimeout,
		udpSize:  cfg.UDPSize,
		maxChase: cfg.MaxChase,
		max:      int64(cfg.MaxInFlight),
		drained:  make(chan struct{}),
		flights:  make(map[string]*flight),
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.timeout <= 0 {
		r.timeout = 5 * time.Second
	}
	if r.udpSize == 0 {
		r.udpSize = dnswire.DefaultUDPSize
	}
	if r.udpSize < dnswire.MinUDPSize || r.udpSize > dnswire.MaxMsgLen {
		return nil, fmt.Errorf("resolver: UDPSize %d out of [512, 65535]", r.udpSize)
	}
	if r.maxChase <= 0 {
		r.maxChase = 8
	}
	if r.max <= 0 {
		r.max = 4096
	}
	for _, d := range cfg.ClusterDomains {
		w, err := wireDomain(d)
		if err != nil {
			return nil, fmt.Errorf("resolver: cluster domain %q: %w", d, err)
		}
		r.cluster = append(r.cluster, w)
		r.svc = append(r.svc, append([]byte("\x03svc"), w...))
	}
	for _, d := range cfg.SearchDomains {
		w, err := wireDomain(d)
		if err != nil {
			return nil, fmt.Errorf("resolver: search domain %q: %w", d, err)
		}
		r.search = append(r.search, w)
	}
	if cfg.Autopath {
		if cfg.PodNamespace == nil {
			return nil, errors.New("resolver: Autopath needs PodNamespace")
		}
		r.podNS = cfg.PodNamespace
	}
	if err := r.SetQueryLog(cfg.QueryLog, cfg.QueryLogRate); err != nil {
		return nil, err
	}
	r.base, r.cancel = context.WithCancel(context.Background())
	r.bufs.New = func() any { b := make([]byte, 0, 4096); return &b }
	return r, nil
}

// wireDomain converts "cluster.local" to lowercase wire format.
func wireDomain(d string) ([]byte, error) {
	d = strings.TrimSuffix(strings.ToLower(d), ".")
	if d == "" {
		return nil, errors.New("empty")
	}
	var w []byte
	for l := range strings.SplitSeq(d, ".") {
		if l == "" || len(l) > dnswire.MaxLabelLen {
			return nil, errors.New("bad label")
		}
		w = append(w, byte(len(l)))
		w = append(w, l...)
	}
	w = append(w, 0)
	if len(w) > dnswire.MaxNameLen {
		return nil, errors.New("name too long")
	}
	return w, nil
}

// Scratch is the per-goroutine state of Handle and Resolve: the parsed
// query and room for records the zone builds per query. One goroutine uses
// one Scratch; it is not safe for concurrent use.
type Scratch struct {
	q    dnswire.Query
	zbuf []byte
	src  metrics.Source // where local's answer came from
	nx   bool           // local's answer is the zone's NXDOMAIN (autopath)
}

// NewScratch returns a Scratch.
func NewScratch() *Scratch { return &Scratch{zbuf: make([]byte, 0, 4096)} }

// Drain stops accepting asynchronous work (later queries that need the
// upstream get SERVFAIL) and waits until the work in flight has sent its
// answers. If ctx ends first it cancels the upstream exchanges still running
// and returns ctx.Err() without waiting for them. Safe to call more than
// once and concurrently.
func (r *Resolver) Drain(ctx context.Context) error {
	if r.inflight.Or(closedBit) == 0 {
		r.signalDrained()
	}
	select {
	case <-r.drained:
		return nil
	case <-ctx.Done():
		r.cancel()
		return ctx.Err()
	}
}

func (r *Resolver) signalDrained() { r.drainMu.Do(func() { close(r.drained) }) }

// acquire reserves room for one asynchronous query.
func (r *Resolver) acquire() bool {
	v := r.inflight.Add(1)
	if v&closedBit != 0 || v > r.max {
		r.release()
		return false
	}
	return true
}

func (r *Resolver) release() {
	if r.inflight.Add(-1) == closedBit {
		r.signalDrained()
	}
}

// observe counts the answer reply (a whole message) to q, which came from
// addr, and writes its query log line. Called once per answer sent.
func (r *Resolver) observe(reply []byte, q *dnswire.Query, proto Proto, src metrics.Source, start time.Time, addr netip.AddrPort) {
	qlog := r.qlog.Load()
	if (r.metrics == nil && qlog == nil) || len(reply) < dnswire.HeaderLen {
		return
	}
	took := time.Since(start)
	rcode := reply[3] & 0x0F
	if r.metrics != nil {
		t := metrics.UDP
		if proto == TCP {
			t = metrics.TCP
		}
		r.metrics.Query(t, q.Type, rcode, src, took)
		switch src {
		case metrics.SourceSearchSuffix:
			r.metrics.SearchSuffix(r.suffixKind(q.Name()))
		case metrics.SourceCache, metrics.SourceUpstream, metrics.SourceStale:
			if uint16(rcode) == dnswire.RcodeNameError && r.underSearch(q.Name()) {
				r.metrics.SearchSuffix(metrics.SuffixNodeSearch)
			}
		}
	}
	if qlog != nil {
		qlog.line(q, proto, rcode, src, took, addr)
	}
}

// lblSvc is the label "svc" in wire form.
var lblSvc = []byte("\x03svc")

// aboveZone finds the cluster domain that name (lowercase wire) is under:
// it returns the offset in name where the domain starts (-1 when name is
// under none) and the offsets of the two labels right above it (-1 when
// there are none). It compares at label boundaries and does not allocate.
func (r *Resolver) aboveZone(name []byte) (at, l1, l2 int) {
	l1, l2 = -1, -1
	for off := 0; off < len(name) && name[off] != 0; off += int(name[off]) + 1 {
		for _, d := range r.cluster {
			if bytes.Equal(name[off:], d) {
				return off, l1, l2
			}
		}
		l2, l1 = l1, off
	}
	return -1, -1, -1
}

// suffixKind says which search suffix name, answered KindSearchSuffix by
// the zone, carries. X.<ns>.svc.<zone> and X.svc.<zone> look alike
// (api.example.com.svc.<zone> is X=api.example under ns=com); whether the
// label before svc is a namespace tells them apart: one more lookup, of a
// suffix of name, no allocation.
func (r *Resolver) suffixKind(name []byte) metrics.SuffixKind {
	at, l1, l2 := r.aboveZone(name)
	if at < 0 || l1 < 0 || !bytes.Equal(name[l1:at], lblSvc) {
		return metrics.SuffixZone
	}
	if l2 >= 0 && r.isNamespace(name[l2:]) {
		return metrics.SuffixNamespace
	}
	return metrics.SuffixSvc
}

// isNamespace reports whether nsName, <ns>.svc.<zone> in wire form, is an
// existing namespace: the zone answers NODATA there, NXDOMAIN otherwise.
func (r *Resolver) isNamespace(nsName []byte) bool {
	return r.auth.Lookup(nsName, dnswire.TypeA, nil).Kind == zone.KindNoData
}

// underSearch reports whether name (lowercase wire), outside the cluster
// zone, is under one of the node's search domains.
func (r *Resolver) underSearch(name []byte) bool {
	if len(r.search) == 0 || r.inCluster(name) {
		return false
	}
	for _, d := range r.search {
		if len(name) > len(d) && bytes.Equal(name[len(name)-len(d):], d) && labelAt(name, len(name)-len(d)) {
			return true
		}
	}
	return false
}

// labelAt reports whether a label of name starts at offset at.
func labelAt(name []byte, at int) bool {
	off := 0
	for off < at && name[off] != 0 {
		off += int(name[off]) + 1
	}
	return off == at
}
