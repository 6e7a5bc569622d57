package resolver

import (
	"context"
	"net/netip"
	"testing"

	"github.com/miekg/dns"

	rt "github.com/nodedns/nodedns/pkg/resolver/resolvertest"
	"github.com/nodedns/nodedns/pkg/zone"
)

// TestRealZone runs the resolver on a zone.Store fed by the real Builder:
// the contract between the two (0xC00C owners, section counts, ExternalName
// chase, ndots junk) holds end to end and the zone path stays free of
// allocations.
func TestRealZone(t *testing.T) {
	store := new(zone.Store)
	b, err := zone.NewBuilder(zone.Config{Domains: []string{"cluster.local"}}, store)
	if err != nil {
		t.Fatal(err)
	}
	b.ReplaceAll(zone.Objects{
		Namespaces: []string{"default"},
		Services: []*zone.Service{
			{Namespace: "default", Name: "web", ClusterIPs: []netip.Addr{netip.MustParseAddr("10.96.0.10")},
				Ports: []zone.Port{{Name: "http", Protocol: "TCP", Port: 80}}},
			{Namespace: "default", Name: "ext", ExternalName: "api.example.com"},
			{Namespace: "default", Name: "ext2", ExternalName: "web.default.svc.cluster.local"},
		},
	})
	b.SetSynced()
	b.Flush()
	r := newResolver(t, StoreAuthority{Store: store}, testUpstream(t))

	tests := []struct {
		name  string
		qtype uint16
		rcode int
		an    []string
	}{
		{"Web.Default.svc.cluster.local.", dns.TypeA, 0, []string{"Web.Default.svc.cluster.local. 5 IN A 10.96.0.10"}},
		{"_http._tcp.web.default.svc.cluster.local.", dns.TypeSRV, 0, []string{"_http._tcp.web.default.svc.cluster.local. 5 IN SRV 0 100 80 web.default.svc.cluster.local."}},
		{"web.default.svc.cluster.local.", dns.TypeAAAA, 0, nil},
		{"api.example.com.default.svc.cluster.local.", dns.TypeA, dns.RcodeNameError, nil},
		{"ext.default.svc.cluster.local.", dns.TypeA, 0, []string{
			"ext.default.svc.cluster.local. 5 IN CNAME api.example.com.",
			"api.example.com. 60 IN A 192.0.2.10", "api.example.com. 60 IN A 192.0.2.11"}},
		{"ext2.default.svc.cluster.local.", dns.TypeA, 0, []string{
			"ext2.default.svc.cluster.local. 5 IN CNAME web.default.svc.cluster.local.",
			"web.default.svc.cluster.local. 5 IN A 10.96.0.10"}},
	}
	s := NewScratch()
	for _, tt := range tests {
		out := r.Resolve(context.Background(), s, nil, rt.Query(t, tt.name, tt.qtype, 1232), UDP, client)
		m := rt.Unpack(t, out)
		if m.Rcode != tt.rcode || !m.Authoritative {
			t.Errorf("%s: rcode %d aa %v", tt.name, m.Rcode, m.Authoritative)
		}
		rt.CheckSection(t, tt.name, m.Answer, tt.an...)
		if len(tt.an) == 0 && (len(m.Ns) != 1 || m.Ns[0].Header().Rrtype != dns.TypeSOA) {
			t.Errorf("%s: authority %v, want the SOA", tt.name, m.Ns)
		}
	}
	buf := make([]byte, 0, 4096)
	for _, q := range [][]byte{
		rt.Query(t, "web.default.svc.cluster.local.", dns.TypeA, 1232),
		rt.Query(t, "api.example.com.default.svc.cluster.local.", dns.TypeA, 0),
		rt.Query(t, "web.default.svc.cluster.local.", dns.TypeAAAA, 0),
	} {
		if n := testing.AllocsPerRun(100, func() { r.Handle(s, buf, q, UDP, nil, client) }); n != 0 {
			t.Errorf("%x: %v allocations", q[12:], n)
		}
	}
}

// BenchmarkHandleRealZone is the zone path on the real Snapshot.
func BenchmarkHandleRealZone(b *testing.B) {
	store := new(zone.Store)
	bld, err := zone.NewBuilder(zone.Config{Domains: []string{"cluster.local"}}, store)
	if err != nil {
		b.Fatal(err)
	}
	bld.ReplaceAll(zone.Objects{
		Namespaces: []string{"default"},
		Services: []*zone.Service{{Namespace: "default", Name: "web",
			ClusterIPs: []netip.Addr{netip.MustParseAddr("10.96.0.10")}}},
	})
	bld.SetSynced()
	bld.Flush()
	r := newResolver(b, StoreAuthority{Store: store}, testUpstream(b))
	for _, bc := range []struct {
		name, qname string
		qtype       uint16
	}{
		{"answer", "web.default.svc.cluster.local.", dns.TypeA},
		{"searchsuffix", "api.example.com.default.svc.cluster.local.", dns.TypeA},
		{"nodata", "web.default.svc.cluster.local.", dns.TypeAAAA},
	} {
		b.Run(bc.name, func(b *testing.B) {
			q := rt.Query(b, bc.qname, bc.qtype, 1232)
			s := NewScratch()
			buf := make([]byte, 0, 4096)
			b.ReportAllocs()
			for b.Loop() {
				if r.Handle(s, buf, q, UDP, nil, client) == nil {
					b.Fatal("no answer")
				}
			}
		})
	}
}
