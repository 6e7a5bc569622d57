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

func TestSearchSuffixAutopathQueryLog(t *testing.T) {
	m := New()
	m.SearchSuffix(SuffixNamespace)
	m.SearchSuffix(SuffixNamespace)
	m.SearchSuffix(SuffixNodeSearch)
	m.SearchSuffix(numSuffixKinds) // out of range: ignored
	m.Autopath(AutopathAnswered)
	m.Autopath(AutopathOtherNamespace)
	m.Autopath(numAutopathResults)
	m.QueryLogDropped()
	for _, c := range []struct {
		name string
		got  float64
		want float64
	}{
		{"suffix namespace", testutil.ToFloat64(m.suffixes[SuffixNamespace]), 2},
		{"suffix svc", testutil.ToFloat64(m.suffixes[SuffixSvc]), 0},
		{"suffix node_search", testutil.ToFloat64(m.suffixes[SuffixNodeSearch]), 1},
		{"autopath answered", testutil.ToFloat64(m.autopath[AutopathAnswered]), 1},
		{"autopath other_namespace", testutil.ToFloat64(m.autopath[AutopathOtherNamespace]), 1},
		{"query log dropped", testutil.ToFloat64(m.qlogDrop), 1},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	// Every series exists from the start.
	for name, want := range map[string]int{
		"nodedns_search_suffix_answers_total": int(numSuffixKinds),
		"nodedns_autopath_total":              int(numAutopathResults),
		"nodedns_query_log_dropped_total":     1,
	} {
		if n, err := testutil.GatherAndCount(m.Registry(), name); err != nil || n != want {
			t.Errorf("%s: %d series (%v), want %d", name, n, err, want)
		}
	}
	if n := testing.AllocsPerRun(1000, func() {
		m.SearchSuffix(SuffixZone)
		m.Autopath(AutopathNXDomain)
		m.QueryLogDropped()
	}); n != 0 {
		t.Errorf("counting allocates %v times", n)
	}
	var nilM *Metrics
	nilM.SearchSuffix(SuffixZone)
	nilM.Autopath(AutopathAnswered)
	nilM.QueryLogDropped()
	if SourceCache.String() != "cache" || Source(99).String() != "unknown" {
		t.Errorf("Source.String: %q %q", SourceCache.String(), Source(99).String())
	}
}
