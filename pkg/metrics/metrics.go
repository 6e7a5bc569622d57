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

	zone *zoneCollectors
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
	m.reg.MustRegister(requests, responses, duration)
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
