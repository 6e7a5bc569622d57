package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/nodedns/nodedns/pkg/zone"
)

// zoneCollectors describe the cluster zone and its sources.
type zoneCollectors struct {
	objects       *prometheus.GaugeVec
	objServices   prometheus.Gauge
	objSlices     prometheus.Gauge
	objEndpoints  prometheus.Gauge
	objPods       prometheus.Gauge
	lastPublish   prometheus.Gauge
	buildDuration prometheus.Observer
	synced        prometheus.Gauge
	lastKnown     prometheus.Gauge
	watchErrors   *prometheus.CounterVec
}

func newZoneCollectors(reg *prometheus.Registry) *zoneCollectors {
	z := &zoneCollectors{
		objects: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "zone_objects",
			Help: "Objects the cluster zone was last built from, by kind.",
		}, []string{"kind"}),
		lastPublish: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "zone_last_publish_timestamp_seconds",
			Help: "Unix time of the last published zone snapshot.",
		}),
		synced: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "zone_synced",
			Help: "1 once the published zone was built from fully synced sources; until then cluster names get SERVFAIL.",
		}),
		lastKnown: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "zone_last_known",
			Help: "1 while the published zone is a previous run's (--last-known-zone), not yet confirmed by synced sources: its names answer, others get SERVFAIL.",
		}),
		watchErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "watch_errors_total",
			Help: "List or watch failures of the API server informers (each is retried), by resource.",
		}, []string{"resource"}),
	}
	build := prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: namespace, Name: "zone_build_duration_seconds",
		Help:    "Time to build one zone snapshot (only changed namespaces are rebuilt).",
		Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
	})
	z.buildDuration = build
	z.objServices = z.objects.WithLabelValues("services")
	z.objSlices = z.objects.WithLabelValues("endpointslices")
	z.objEndpoints = z.objects.WithLabelValues("endpoints")
	z.objPods = z.objects.WithLabelValues("pods")
	for _, r := range []string{"services", "endpointslices", "namespaces", "pods"} {
		z.watchErrors.WithLabelValues(r) // series exist from the start
	}
	reg.MustRegister(z.objects, z.lastPublish, build, z.synced, z.lastKnown, z.watchErrors)
	return z
}

// ZonePublished records a snapshot publish; pass it to zone.Builder.OnPublish.
func (m *Metrics) ZonePublished(info zone.PublishInfo) {
	if m == nil {
		return
	}
	z := m.zone
	z.objServices.Set(float64(info.Services))
	z.objSlices.Set(float64(info.EndpointSlices))
	z.objEndpoints.Set(float64(info.Endpoints))
	z.objPods.Set(float64(info.Pods))
	z.lastPublish.SetToCurrentTime()
	z.buildDuration.Observe(info.BuildDuration.Seconds())
	z.synced.Set(boolGauge(info.Synced))
	z.lastKnown.Set(boolGauge(info.LastKnown))
}

// WatchError counts a list/watch failure; pass it to kube.Config.OnWatchError.
func (m *Metrics) WatchError(resource string, _ error) {
	if m == nil {
		return
	}
	m.zone.watchErrors.WithLabelValues(resource).Inc() // rare: not the query path
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
