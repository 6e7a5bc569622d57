package metrics

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/nodedns/nodedns/pkg/zone"
)

func TestQueryCountsBoundedLabels(t *testing.T) {
	m := New()
	m.Query(UDP, 1, 0, SourceZone, time.Microsecond)
	m.Query(UDP, 1, 0, SourceZone, time.Microsecond)
	m.Query(TCP, 99, 3, SourceSearchSuffix, time.Microsecond) // qtype 99 -> other
	m.Query(UDP, 28, 42, SourceUpstream, time.Millisecond)    // rcode 42 -> other

	for _, c := range []struct {
		labels []string
		want   float64
	}{
		{[]string{"udp", "A", "NOERROR"}, 2},
		{[]string{"tcp", "other", "NXDOMAIN"}, 1},
		{[]string{"udp", "AAAA", "other"}, 1},
		{[]string{"tcp", "A", "NOERROR"}, 0},
	} {
		got := testutil.ToFloat64(m.requests[transportIndex(c.labels[0])][qtypeIndexByName(c.labels[1])][rcodeIndexByName(c.labels[2])])
		if got != c.want {
			t.Errorf("requests%v = %v, want %v", c.labels, got, c.want)
		}
	}
	if got := testutil.ToFloat64(m.responses[SourceZone]); got != 2 {
		t.Errorf("responses{zone} = %v", got)
	}
	// Every series exists from the start, so rate() works from the first scrape.
	n, err := testutil.GatherAndCount(m.Registry(), "nodedns_requests_total")
	if err != nil || n != int(numTransports)*numQtypes*numRcodes {
		t.Errorf("requests_total series = %d (%v), want %d", n, err, int(numTransports)*numQtypes*numRcodes)
	}
}

func TestNilMetricsIsANoop(t *testing.T) {
	var m *Metrics
	m.Query(UDP, 1, 0, SourceZone, time.Second)
	if m.Registry() != nil {
		t.Error("nil Metrics has a registry")
	}
}

func TestQueryDoesNotAllocate(t *testing.T) {
	m := New()
	if n := testing.AllocsPerRun(1000, func() { m.Query(UDP, 33, 0, SourceCache, 3*time.Microsecond) }); n != 0 {
		t.Errorf("Query allocates %v times", n)
	}
}

func BenchmarkQuery(b *testing.B) {
	m := New()
	b.ReportAllocs()
	for b.Loop() {
		m.Query(UDP, 1, 0, SourceZone, time.Microsecond)
	}
}

func transportIndex(s string) Transport {
	for i, n := range transportNames {
		if n == s {
			return Transport(i)
		}
	}
	panic(s)
}

func qtypeIndexByName(s string) int {
	for i, q := range qtypes {
		if q.name == s {
			return i
		}
	}
	if s == "other" {
		return numQtypes - 1
	}
	panic(s)
}

func rcodeIndexByName(s string) int {
	for i, n := range rcodeNames {
		if strings.EqualFold(n, s) {
			return i
		}
	}
	panic(s)
}

func TestZonePublished(t *testing.T) {
	m := New()
	m.ZonePublished(zone.PublishInfo{Synced: true, Services: 3, EndpointSlices: 2, Endpoints: 7, BuildDuration: time.Millisecond})
	if got := testutil.ToFloat64(m.zone.objEndpoints); got != 7 {
		t.Errorf("zone_objects{kind=endpoints} = %v", got)
	}
	if got := testutil.ToFloat64(m.zone.synced); got != 1 {
		t.Errorf("zone_synced = %v", got)
	}
	m.WatchError("services", nil)
	if got := testutil.ToFloat64(m.zone.watchErrors.WithLabelValues("services")); got != 1 {
		t.Errorf("watch_errors_total{services} = %v", got)
	}
}
