package e2e

import (
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestMetricsScrape: /metrics serves the zone's state from a real API
// server watch.
func TestMetricsScrape(t *testing.T) {
	f := newClusterFixture(t)
	if got := f.d.Metric("nodedns_zone_synced"); got != 1 {
		t.Errorf("nodedns_zone_synced = %v, want 1", got)
	}
	// The fixture's namespace alone has 6 services and 5 slices; other
	// tests' namespaces add more.
	if got := f.d.Metric(`nodedns_zone_objects{kind="services"}`); got < 6 {
		t.Errorf(`nodedns_zone_objects{kind="services"} = %v, want >= 6`, got)
	}
	if got := f.d.Metric(`nodedns_zone_last_publish_timestamp_seconds`); got < float64(time.Now().Add(-time.Minute).Unix()) {
		t.Errorf("last publish timestamp %v is not recent", got)
	}
	if got := f.d.Metric(`nodedns_watch_errors_total{resource="services"}`); got != 0 {
		t.Errorf("watch errors = %v on a healthy API server", got)
	}
	// Queries move the counters: two zone answers over UDP, one
	// search-suffix NXDOMAIN over TCP, one forwarded name twice (a miss,
	// then a cache hit).
	before := f.d.Metric(`nodedns_responses_total{source="zone"}`)
	for _, q := range []struct{ net, name string }{
		{"udp", "web." + f.ns + ".svc.cluster.local."},
		{"udp", "db." + f.ns + ".svc.cluster.local."},
		{"tcp", "api.example.com." + f.ns + ".svc.cluster.local."},
		{"udp", "api.example.com."},
		{"udp", "api.example.com."},
	} {
		if _, err := f.d.query(q.net, q.name, dns.TypeA); err != nil {
			t.Fatal(err)
		}
	}
	for sample, want := range map[string]float64{
		`nodedns_responses_total{source="zone"}`:                             before + 2,
		`nodedns_responses_total{source="search_suffix"}`:                    1,
		`nodedns_responses_total{source="upstream"}`:                         1,
		`nodedns_responses_total{source="cache"}`:                            1,
		`nodedns_requests_total{qtype="A",rcode="NXDOMAIN",transport="tcp"}`: 1,
		`nodedns_cache_hits_total`:                                           1,
		`nodedns_cache_entries`:                                              1,
	} {
		if got := f.d.Metric(sample); got != want {
			t.Errorf("%s = %v, want %v", sample, got, want)
		}
	}
	if got := f.d.Metric("go_goroutines"); got <= 0 {
		t.Errorf("go_goroutines = %v: Go collector missing", got)
	}
}
