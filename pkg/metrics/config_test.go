package metrics

import (
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestConfigReloads(t *testing.T) {
	m := New()
	c := m.NewConfigReloads()
	// Both results exist from the start, so an alert on the error rate
	// works before the first failure.
	if n, err := testutil.GatherAndCount(m.Registry(), "nodedns_config_reloads_total"); err != nil || n != 2 {
		t.Errorf("config_reloads_total series = %d (%v), want 2", n, err)
	}
	start := time.Unix(1000, 0)
	c.Loaded(start)
	c.Reloaded(start.Add(time.Second), errors.New("bad key"))
	c.Reloaded(start.Add(2*time.Second), nil)
	c.Reloaded(start.Add(3*time.Second), errors.New("bad key"))
	if ok, bad := testutil.ToFloat64(c.ok), testutil.ToFloat64(c.failed); ok != 1 || bad != 2 {
		t.Errorf("ok %v, error %v; want 1, 2", ok, bad)
	}
	if got := testutil.ToFloat64(c.lastSuccess); got != 1002 {
		t.Errorf("last success %v, want 1002 (a failure leaves it)", got)
	}
	var nilMetrics *Metrics
	nilMetrics.NewConfigReloads().Reloaded(start, nil) // no panic
}
