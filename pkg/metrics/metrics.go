// Package metrics defines every Prometheus collector of nodedns. Children
// of labelled vectors are bound once, at construction, into arrays indexed
// by small integers, so the query path does an atomic add and nothing else:
// no label lookup, no allocation (DESIGN: examples 11).
package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

const namespace = "nodedns"

// Transport indexes the transport label.
type Transport uint8

const (
	UDP Transport = iota
	TCP
	numTransports
)

var transportNames = [numTransports]string{"udp", "tcp"}

// Source says where an answer came from.
type Source uint8

const (
	SourceZone         Source = iota // the cluster zone
	SourceSearchSuffix               // NXDOMAIN for a search-list expansion under the zone
	SourceCache                      // a fresh cache entry
	SourceUpstream                   // forwarded
	SourceStale                      // an expired cache entry, upstream failing (RFC 8767)
	SourceLocal                      // made up locally: errors, ANY (RFC 8482), refusals
	numSources
)

var sourceNames = [numSources]string{"zone", "search_suffix", "cache", "upstream", "stale", "local"}

// String is the source's label value ("zone", "cache", ...).
func (s Source) String() string {
	if s < numSources {
		return sourceNames[s]
	}
	return "unknown"
}

// SuffixKind says which search-list suffix a search-suffix NXDOMAIN
// carried: which step of a Pod's ndots:5 walk it answered.
type SuffixKind uint8

const (
	SuffixNamespace  SuffixKind = iota // X.<ns>.svc.<zone>, ns an existing namespace: the first step
	SuffixSvc                          // X.svc.<zone>: the second
	SuffixZone                         // X.<zone> (anything under the zone outside svc.<zone>): the third
	SuffixNodeSearch                   // under one of the node's search domains: forwarded, NXDOMAIN
	numSuffixKinds
)

var suffixNames = [numSuffixKinds]string{"namespace", "svc", "zone", "node_search"}

// AutopathResult is what autopath did with a zone NXDOMAIN for
// X.<ns>.svc.<zone> (ns an existing namespace).
type AutopathResult uint8

const (
	AutopathAnswered       AutopathResult = iota // a CNAME to the first name of the search list that exists
	AutopathNXDomain                             // no name exists: the zone's NXDOMAIN, the client walks on
	AutopathFailed                               // a name could not be resolved (upstream failure, not synced, too busy): the zone's NXDOMAIN
	AutopathUnknownSource                        // not eligible: the source is no Pod of this node (unknown, or hostNetwork)
	AutopathOtherNamespace                       // not eligible: the source Pod is of another namespace (its own dnsConfig, or a later step of its walk)
	AutopathSkipped                              // not eligible: DO bit (our CNAME is unsigned) or type ANY
	numAutopathResults
)

var autopathNames = [numAutopathResults]string{"answered", "nxdomain", "failed", "unknown_source", "other_namespace", "skipped"}

// qtypes is the bounded qtype label set; anything else is "other".
var qtypes = []struct {
	code uint16
	name string
}{
	{1, "A"}, {28, "AAAA"}, {33, "SRV"}, {12, "PTR"}, {5, "CNAME"}, {16, "TXT"},
	{6, "SOA"}, {2, "NS"}, {15, "MX"}, {65, "HTTPS"}, {64, "SVCB"}, {255, "ANY"},
}

const numQtypes = 13 // len(qtypes) + "other"

// rcodes is the bounded rcode label set; anything else is "other".
var rcodeNames = [...]string{"NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "other"}

const numRcodes = len(rcodeNames)

func qtypeIndex(t uint16) int {
	for i, q := range qtypes {
		if q.code == t {
			return i
		}
	}
	return numQtypes - 1
}

func rcodeIndex(rc uint8) int {
	if int(rc) < numRcodes-1 {
		return int(rc)
	}
	return numRcodes - 1
}

// Metrics holds every collector. A nil *Metrics is valid and records
// nothing, so packages can take one optionally.
type Metrics struct {
	reg *prometheus.Registry

	requests  [numTransports][numQtypes][numRcodes]prometheus.Counter
	responses [numSources]prometheus.Counter
	duration  [numSources]prometheus.Observer
	suffixes  [numSuffixKinds]prometheus.Counter
	autopath  [numAutopathResults]prometheus.Counter
	qlogDrop  prometheus.Counter

	zone *zoneCollectors

	upstreams upstreamMetrics // per upstream server: upstream.go
}

// New creates the collectors and registers them, with the Go and process
// collectors, on a new registry.
func New() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "requests_total",
		Help: "DNS queries answered, by transport, query type (a fixed set, else other) and response code.",
	}, []string{"transport", "qtype", "rcode"})
	responses := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "responses_total",
		Help: "DNS answers by where they came from: zone, search_suffix, cache, upstream, stale, local.",
	}, []string{"source"})
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Name: "request_duration_seconds",
		Help:    "Time from reading a query to having its answer, by source.",
		Buckets: []float64{0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2, 5},
	}, []string{"source"})
	suffixes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "search_suffix_answers_total",
		Help: "NXDOMAIN answers to search-list expansions, by suffix: namespace (X.<ns>.svc.<zone>), svc (X.svc.<zone>), zone (X.<zone>), all from the zone; node_search (under a node search domain, forwarded or cached).",
	}, []string{"kind"})
	autopath := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "autopath_total",
		Help: "Zone NXDOMAINs for X.<ns>.svc.<zone> seen with --autopath, by result: answered, nxdomain, failed, or not eligible (unknown_source, other_namespace, skipped).",
	}, []string{"result"})
	m.qlogDrop = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Name: "query_log_dropped_total",
		Help: "Query log lines not written because --query-log-rate was exceeded.",
	})
	m.reg.MustRegister(requests, responses, duration, suffixes, autopath, m.qlogDrop)
	m.zone = newZoneCollectors(m.reg)

	for t := range numTransports {
		for q := range numQtypes {
			qname := "other"
			if q < len(qtypes) {
				qname = qtypes[q].name
			}
			for r := range numRcodes {
				m.requests[t][q][r] = requests.WithLabelValues(transportNames[t], qname, rcodeNames[r])
			}
		}
	}
	for s := range numSources {
		m.responses[s] = responses.WithLabelValues(sourceNames[s])
		m.duration[s] = duration.WithLabelValues(sourceNames[s])
	}
	for k := range numSuffixKinds {
		m.suffixes[k] = suffixes.WithLabelValues(suffixNames[k])
	}
	for a := range numAutopathResults {
		m.autopath[a] = autopath.WithLabelValues(autopathNames[a])
	}
	return m
}

// Registry is what /metrics serves; other packages register their own
// collectors (interface, zone, cache) on it.
func (m *Metrics) Registry() *prometheus.Registry {
	if m == nil {
		return nil
	}
	return m.reg
}

// Query records one answered query. It does not allocate. Safe for
// concurrent use; a no-op on a nil *Metrics.
func (m *Metrics) Query(t Transport, qtype uint16, rcode uint8, src Source, took time.Duration) {
	if m == nil || t >= numTransports || src >= numSources {
		return
	}
	m.requests[t][qtypeIndex(qtype)][rcodeIndex(rcode)].Inc()
	m.responses[src].Inc()
	m.duration[src].Observe(took.Seconds())
}

// SearchSuffix counts one NXDOMAIN answer to a search-list expansion. It
// does not allocate; a no-op on a nil *Metrics.
func (m *Metrics) SearchSuffix(k SuffixKind) {
	if m == nil || k >= numSuffixKinds {
		return
	}
	m.suffixes[k].Inc()
}

// Autopath counts what autopath did with one query. It does not allocate;
// a no-op on a nil *Metrics.
func (m *Metrics) Autopath(r AutopathResult) {
	if m == nil || r >= numAutopathResults {
		return
	}
	m.autopath[r].Inc()
}

// QueryLogDropped counts a query log line dropped by the rate limit.
func (m *Metrics) QueryLogDropped() {
	if m == nil {
		return
	}
	m.qlogDrop.Inc()
}
