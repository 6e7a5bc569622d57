package metrics

import (
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/nodedns/nodedns/internal/dnstest"
	"github.com/nodedns/nodedns/pkg/upstream"
)

var _ upstream.Observer = (*Metrics)(nil)

var upstreamMetricNames = []string{
	"nodedns_upstream_requests_total", "nodedns_upstream_errors_total",
	"nodedns_upstream_request_duration_seconds", "nodedns_upstream_healthy",
}

// upstreamSeries counts the series of each upstream metric with label
// upstream=label.
func upstreamSeries(t *testing.T, m *Metrics, label string) map[string]int {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, mf := range mfs {
		for _, metric := range mf.GetMetric() {
			for _, l := range metric.GetLabel() {
				if l.GetName() == "upstream" && l.GetValue() == label {
					out[mf.GetName()]++
				}
			}
		}
	}
	return out
}

// histogramCount is the sample count of the upstream duration histogram
// of label and transport.
func histogramCount(t *testing.T, m *Metrics, label, transport string) uint64 {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "nodedns_upstream_request_duration_seconds" {
			continue
		}
		for _, metric := range mf.GetMetric() {
			var up, tr string
			for _, l := range metric.GetLabel() {
				switch l.GetName() {
				case "upstream":
					up = l.GetValue()
				case "transport":
					tr = l.GetValue()
				}
			}
			if up == label && tr == transport {
				return metric.GetHistogram().GetSampleCount()
			}
		}
	}
	return 0
}

func TestUpstreamObserver(t *testing.T) {
	m := New()
	addr := netip.MustParseAddrPort("[2001:db8::53]:53")
	const label = "[2001:db8::53]:53"
	o := m.ForServer(addr)
	// Every series exists from the start, so rate() works at once.
	want := map[string]int{
		"nodedns_upstream_requests_total":           upstream.NumTransports,
		"nodedns_upstream_errors_total":             upstream.NumErrorKinds,
		"nodedns_upstream_request_duration_seconds": upstream.NumTransports,
		"nodedns_upstream_healthy":                  1,
	}
	if got := upstreamSeries(t, m, label); len(got) != len(want) {
		t.Fatalf("series %v, want %v", got, want)
	} else {
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s: %d series, want %d", k, got[k], v)
			}
		}
	}

	o.Request(upstream.UDP)
	o.Request(upstream.UDP)
	o.Request(upstream.TCP)
	o.Reply(upstream.UDP, 3*time.Millisecond)
	o.Error(upstream.ErrorTimeout)
	o.Error(upstream.ErrorMismatch)
	o.Error(upstream.ErrorMismatch)
	o.Healthy(false)
	u := &m.upstreams
	for _, c := range []struct {
		name string
		got  float64
		want float64
	}{
		{"requests udp", testutil.ToFloat64(u.requests.WithLabelValues(label, "udp")), 2},
		{"requests tcp", testutil.ToFloat64(u.requests.WithLabelValues(label, "tcp")), 1},
		{"errors timeout", testutil.ToFloat64(u.errors.WithLabelValues(label, "timeout")), 1},
		{"errors mismatch", testutil.ToFloat64(u.errors.WithLabelValues(label, "mismatch")), 2},
		{"errors network", testutil.ToFloat64(u.errors.WithLabelValues(label, "network")), 0},
		{"healthy", testutil.ToFloat64(u.healthy.WithLabelValues(label)), 0},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	if n := histogramCount(t, m, label, "udp"); n != 1 {
		t.Errorf("duration{udp} count = %d, want 1", n)
	}
	o.Healthy(true)
	if got := testutil.ToFloat64(u.healthy.WithLabelValues(label)); got != 1 {
		t.Errorf("healthy = %v after recovery", got)
	}
}

// Two Forwarders (the old and the new during a reload) share a server's
// series; they go when the last releases it, and a server added again
// starts from zero.
func TestUpstreamReleaseDeletesSeries(t *testing.T) {
	m := New()
	a := netip.MustParseAddrPort("192.0.2.53:53")
	b := netip.MustParseAddrPort("192.0.2.54:53")
	oldA, oldB := m.ForServer(a), m.ForServer(b)
	newA := m.ForServer(a)
	oldA.Request(upstream.UDP)
	newA.Request(upstream.UDP)
	if got := testutil.ToFloat64(m.upstreams.requests.WithLabelValues(a.String(), "udp")); got != 2 {
		t.Fatalf("shared counter = %v, want 2", got)
	}
	oldA.Release()
	oldB.Release()
	oldA.Release() // a second Release of the same handle counts once
	if n := len(upstreamSeries(t, m, a.String())); n != len(upstreamMetricNames) {
		t.Errorf("%v: %d metrics left while a Forwarder still uses it, want %d", a, n, len(upstreamMetricNames))
	}
	if n := len(upstreamSeries(t, m, b.String())); n != 0 {
		t.Errorf("%v: %d metrics left after its last Release", b, n)
	}
	newA.Release()
	if n := len(upstreamSeries(t, m, a.String())); n != 0 {
		t.Errorf("%v: %d metrics left after its last Release", a, n)
	}
	if len(m.upstreams.servers) != 0 {
		t.Errorf("%d servers still tracked", len(m.upstreams.servers))
	}
	again := m.ForServer(a)
	defer again.Release()
	if got := testutil.ToFloat64(m.upstreams.requests.WithLabelValues(a.String(), "udp")); got != 0 {
		t.Errorf("re-added server's counter = %v, want 0", got)
	}
}

func TestUpstreamObserverDoesNotAllocate(t *testing.T) {
	o := New().ForServer(netip.MustParseAddrPort("192.0.2.53:53"))
	if n := testing.AllocsPerRun(1000, func() {
		o.Request(upstream.TCP)
		o.Reply(upstream.TCP, time.Millisecond)
		o.Error(upstream.ErrorTruncated)
		o.Healthy(true)
	}); n != 0 {
		t.Errorf("observer calls allocate %v times", n)
	}
}

func TestNilMetricsObservesNothing(t *testing.T) {
	var m *Metrics
	if o := m.ForServer(netip.MustParseAddrPort("192.0.2.53:53")); o != nil {
		t.Errorf("nil Metrics returned %v", o)
	}
	f, err := upstream.New(upstream.Config{Servers: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:53")}, Observer: m})
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
}

// The metrics move with a real Forwarder's exchanges, and go on Close.
func TestUpstreamMetricsFromForwarder(t *testing.T) {
	s := dnstest.Start(t, "127.0.0.1:0", dnstest.WithRecords("api.example.com. 60 IN A 192.0.2.1"))
	s.SetBehavior(dnstest.Behavior{Truncate: true, Forge: dnstest.ForgeID})
	m := New()
	f, err := upstream.New(upstream.Config{Servers: []netip.AddrPort{s.Addr()}, Observer: m})
	if err != nil {
		t.Fatal(err)
	}
	q := new(dns.Msg)
	q.SetQuestion("api.example.com.", dns.TypeA)
	wire, err := q.Pack()
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := f.Exchange(t.Context(), wire); err != nil {
			t.Fatal(err)
		}
	}
	label := s.Addr().String()
	u := &m.upstreams
	for _, c := range []struct {
		name string
		got  float64
		want float64
	}{
		{"requests udp", testutil.ToFloat64(u.requests.WithLabelValues(label, "udp")), 2},
		{"requests tcp", testutil.ToFloat64(u.requests.WithLabelValues(label, "tcp")), 2},
		{"errors truncated", testutil.ToFloat64(u.errors.WithLabelValues(label, "truncated")), 2},
		{"errors mismatch", testutil.ToFloat64(u.errors.WithLabelValues(label, "mismatch")), 4}, // one forged per udp and tcp reply
		{"healthy", testutil.ToFloat64(u.healthy.WithLabelValues(label)), 1},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	if n := histogramCount(t, m, label, "tcp"); n != 2 {
		t.Errorf("duration{tcp} count = %d, want 2", n)
	}

	// A failing server goes unhealthy.
	s.SetBehavior(dnstest.Behavior{Rcode: dns.RcodeRefused})
	if _, err := f.Exchange(t.Context(), wire); err == nil {
		t.Fatal("REFUSED from the only server, yet an answer")
	}
	if got := testutil.ToFloat64(u.healthy.WithLabelValues(label)); got != 0 {
		t.Errorf("healthy = %v after REFUSED, want 0", got)
	}
	if got := testutil.ToFloat64(u.errors.WithLabelValues(label, "refused")); got != 1 {
		t.Errorf("errors{refused} = %v, want 1", got)
	}

	f.Close()
	if n := len(upstreamSeries(t, m, label)); n != 0 {
		t.Errorf("%d upstream metrics left after Close", n)
	}
}
