package resolver

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nodedns/nodedns/internal/dnswire"
	"github.com/nodedns/nodedns/pkg/metrics"
)

// DefaultQueryLogRate is Config.QueryLogRate when it is 0.
const DefaultQueryLogRate = 100

// queryLog writes the opt-in per-query lines (Config.QueryLog), rate
// limited so that a query flood cannot turn into a log flood: a token
// bucket of rate tokens per second and depth rate, kept as the theoretical
// arrival time of the next line (GCRA) in one atomic, so the UDP read
// loops never take a lock for it. Only lines actually written allocate.
type queryLog struct {
	log      *slog.Logger
	metrics  *metrics.Metrics
	epoch    time.Time // monotonic origin of tat
	interval int64     // ns per token
	depth    int64     // ns of credit the bucket holds when full
	tat      atomic.Int64
}

// SetQueryLog turns the query log on, at rate lines per second (0: the
// default), or off, for the queries answered from now on.
func (r *Resolver) SetQueryLog(on bool, rate int) error {
	if rate < 0 {
		return fmt.Errorf("resolver: QueryLogRate %d is negative", rate)
	}
	if !on {
		r.qlog.Store(nil)
		return nil
	}
	r.qlog.Store(newQueryLog(r.log, r.metrics, rate))
	return nil
}

func newQueryLog(log *slog.Logger, m *metrics.Metrics, rate int) *queryLog {
	if rate == 0 {
		rate = DefaultQueryLogRate
	}
	interval := max(int64(time.Second)/int64(rate), 1)
	return &queryLog{log: log, metrics: m, epoch: time.Now(), interval: interval, depth: interval * int64(rate)}
}

// allow takes a token at now (ns since epoch), if there is one.
func (l *queryLog) allow(now int64) bool {
	for {
		tat := l.tat.Load()
		next := max(tat, now) + l.interval
		if next-now > l.depth {
			return false
		}
		if l.tat.CompareAndSwap(tat, next) {
			return true
		}
	}
}

// line logs one answered query, or counts it dropped.
func (l *queryLog) line(q *dnswire.Query, proto Proto, rcode uint8, src metrics.Source, took time.Duration, addr netip.AddrPort) {
	if !l.allow(int64(time.Since(l.epoch))) {
		l.metrics.QueryLogDropped()
		return
	}
	transport := "udp"
	if proto == TCP {
		transport = "tcp"
	}
	name, qtype := "", ""
	if q.QEnd > 0 { // else the question was not parsed (FORMERR)
		name, qtype = nameString(q.Name()), typeString(q.Type)
	}
	l.log.LogAttrs(context.Background(), slog.LevelInfo, "query",
		slog.String("client", addr.String()),
		slog.String("transport", transport),
		slog.String("name", name),
		slog.String("qtype", qtype),
		slog.String("rcode", rcodeString(rcode)),
		slog.String("source", src.String()),
		slog.Duration("duration", took),
	)
}

var typeNames = map[uint16]string{
	dnswire.TypeA: "A", dnswire.TypeAAAA: "AAAA", dnswire.TypeSRV: "SRV", dnswire.TypePTR: "PTR",
	dnswire.TypeCNAME: "CNAME", dnswire.TypeTXT: "TXT", dnswire.TypeSOA: "SOA", dnswire.TypeNS: "NS",
	dnswire.TypeMX: "MX", 64: "SVCB", 65: "HTTPS", dnswire.TypeANY: "ANY", dnswire.TypeAXFR: "AXFR", dnswire.TypeIXFR: "IXFR",
}

// typeString is the mnemonic of qtype, or TYPEnnn (RFC 3597).
func typeString(qtype uint16) string {
	if s, ok := typeNames[qtype]; ok {
		return s
	}
	return "TYPE" + strconv.Itoa(int(qtype))
}

var rcodeNames = [...]string{"NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED"}

// rcodeString names the header rcode. The extended bits in the OPT record
// are not read: BADVERS shows as NOERROR, as in requests_total.
func rcodeString(rc uint8) string {
	if int(rc) < len(rcodeNames) {
		return rcodeNames[rc]
	}
	return "RCODE" + strconv.Itoa(int(rc))
}
