package e2e

import (
	"testing"
	"time"
)

// TestMetricsScrape: /metrics serves the zone's state from a real API
// server watch.
func TestMetricsScrape(t *testing.T) {
	f := newClusterFixture(t)
	if got := f.d.metric("nodedns_zone_synced"); got != 1 {
		t.Errorf("nodedns_zone_synced = %v, want 1", got)
	}
	// The fixture's namespace alone has 6 services and 5 slices; other
	// tests' namespaces add more.
	if got := f.d.metric(`nodedns_zone_objects{kind="services"}`); got < 6 {
		t.Errorf(`nodedns_zone_objects{kind="services"} = %v, want >= 6`, got)
	}
	if got := f.d.metric(`nodedns_zone_last_publish_timestamp_seconds`); got < float64(time.Now().Add(-time.Minute).Unix()) {
		t.Errorf("last publish timestamp %v is not recent", got)
	}
	if got := f.d.metric(`nodedns_watch_errors_total{resource="services"}`); got != 0 {
		t.Errorf("watch errors = %v on a healthy API server", got)
	}
	if got := f.d.metric("go_goroutines"); got <= 0 {
		t.Errorf("go_goroutines = %v: Go collector missing", got)
	}
}
