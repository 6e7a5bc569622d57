package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ConfigReloads counts reloads of the configuration (the --config file and
// the kube-dns ConfigMap directory). A nil *ConfigReloads records nothing.
type ConfigReloads struct {
	ok, failed  prometheus.Counter
	lastSuccess prometheus.Gauge
}

// NewConfigReloads registers the reload metrics on m's registry; nil on a
// nil *Metrics. Call it once.
func (m *Metrics) NewConfigReloads() *ConfigReloads {
	if m == nil {
		return nil
	}
	reloads := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "config_reloads_total",
		Help: "Reloads of a changed configuration (--config file, kube-dns ConfigMap), by result: ok, or error (the running configuration stays).",
	}, []string{"result"})
	last := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "config_last_reload_success_timestamp_seconds",
		Help: "Unix time of the last successful configuration load, the one at start included.",
	})
	m.reg.MustRegister(reloads, last)
	return &ConfigReloads{ok: reloads.WithLabelValues("ok"), failed: reloads.WithLabelValues("error"), lastSuccess: last}
}

// Loaded records the configuration loaded at start: a success, not a reload.
func (c *ConfigReloads) Loaded(now time.Time) {
	if c != nil {
		c.lastSuccess.Set(float64(now.UnixNano()) / 1e9)
	}
}

// Reloaded records one reload; err nil is a success.
func (c *ConfigReloads) Reloaded(now time.Time, err error) {
	if c == nil {
		return
	}
	if err != nil {
		c.failed.Inc()
		return
	}
	c.ok.Inc()
	c.lastSuccess.Set(float64(now.UnixNano()) / 1e9)
}
