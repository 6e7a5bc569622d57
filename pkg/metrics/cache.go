package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/nodedns/nodedns/pkg/cache"
)

// cacheCollector reads the cache's own counters once per scrape, so the
// query path keeps only the cache's plain per-shard counters.
type cacheCollector struct {
	stats func() cache.Stats
	descs [6]*prometheus.Desc
}

// RegisterCache exports the answer cache's counters: entries, hits,
// misses, evictions, prefetches and stale answers.
func (m *Metrics) RegisterCache(stats func() cache.Stats) {
	if m == nil || stats == nil {
		return
	}
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(namespace, "cache", name), help, nil, nil)
	}
	m.reg.MustRegister(&cacheCollector{stats: stats, descs: [6]*prometheus.Desc{
		d("entries", "Answers in the cache, expired ones kept for serve-stale included."),
		d("hits_total", "Queries answered from a fresh cache entry."),
		d("misses_total", "Queries not found fresh in the cache."),
		d("evictions_total", "Entries pushed out by the size bound (--cache-size)."),
		d("prefetches_total", "Popular entries refreshed before they expired."),
		d("stale_answers_total", "Answers from expired entries while the upstream failed (RFC 8767)."),
	}})
}

func (c *cacheCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

func (c *cacheCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.stats()
	ch <- prometheus.MustNewConstMetric(c.descs[0], prometheus.GaugeValue, float64(s.Entries))
	for i, v := range []uint64{s.Hits, s.Misses, s.Evictions, s.Prefetches, s.Stale} {
		ch <- prometheus.MustNewConstMetric(c.descs[i+1], prometheus.CounterValue, float64(v))
	}
}
