package resolver

import (
	"context"
	"testing"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/nodedns/nodedns/pkg/metrics"
	rt "github.com/nodedns/nodedns/pkg/resolver/resolvertest"
)

// sample returns the value of the metric family name with the given label
// values, or -1.
func sample(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue next
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
		}
	}
	return -1
}

// TestMetricsBySource: each answer is counted once, under where it came
// from; the ndots storm shows as search_suffix.
func TestMetricsBySource(t *testing.T) {
	m := metrics.New()
	up := testUpstream(t)
	r := newResolver(t, testZone(t), up, func(cfg *Config) { cfg.Metrics = m })
	s := NewScratch()
	buf := make([]byte, 0, 65535)
	ask := func(name string, qtype uint16, proto Proto) {
		if out := r.Resolve(context.Background(), s, buf, rt.Query(t, name, qtype, 1232), proto, client); out == nil {
			t.Fatalf("%s: no answer", name)
		}
	}
	ask("web.default.svc.cluster.local.", dns.TypeA, UDP)
	ask("api.example.com.default.svc.cluster.local.", dns.TypeA, UDP)
	ask("api.example.com.default.svc.cluster.local.", dns.TypeA, TCP)
	ask("api.example.com.", dns.TypeA, UDP)
	ask("api.example.com.", dns.TypeANY, UDP)

	reg := m.Registry()
	for src, want := range map[string]float64{"zone": 1, "search_suffix": 2, "upstream": 1, "local": 1, "cache": 0, "stale": 0} {
		if got := sample(t, reg, "nodedns_responses_total", map[string]string{"source": src}); got != want {
			t.Errorf("responses_total{source=%q} = %v, want %v", src, got, want)
		}
	}
	if got := sample(t, reg, "nodedns_requests_total", map[string]string{"transport": "tcp", "qtype": "A", "rcode": "NXDOMAIN"}); got != 1 {
		t.Errorf(`requests_total{tcp,A,NXDOMAIN} = %v, want 1`, got)
	}
}
