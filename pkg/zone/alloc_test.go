package zone

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/miekg/dns"
)

type hotQuery struct {
	label string
	name  string
	qtype uint16
	kind  Kind
}

var hotQueries = []hotQuery{
	{"clusterip-A", "web.prod.svc.cluster.local", dns.TypeA, KindAnswer},
	{"headless-A", "db.prod.svc.cluster.local", dns.TypeA, KindAnswer},
	{"hostname-A", "db-0.db.prod.svc.cluster.local", dns.TypeA, KindAnswer},
	{"dashed6-expanded-AAAA", "fd00-0-0-0-0-0-1-6.db.prod.svc.cluster.local", dns.TypeAAAA, KindAnswer},
	{"SRV", "_pg._tcp.db.prod.svc.cluster.local", dns.TypeSRV, KindAnswer},
	{"search-suffix-ns", "api.example.com.test.svc.cluster.local", dns.TypeA, KindSearchSuffix},
	{"search-suffix-svc", "api.example.com.svc.cluster.local", dns.TypeAAAA, KindSearchSuffix},
	{"search-suffix-zone", "api.example.com.cluster.local", dns.TypeA, KindSearchSuffix},
	{"NXDOMAIN", "missing.prod.svc.cluster.local", dns.TypeA, KindNXDomain},
	{"NODATA", "kubernetes.default.svc.cluster.local", dns.TypeAAAA, KindNoData},
	{"NODATA-ENT", "_tcp.db.prod.svc.cluster.local", dns.TypeSRV, KindNoData},
	{"pod-A", "10-1-0-1.prod.pod.cluster.local", dns.TypeA, KindAnswer},
	{"pod-AAAA", "fd00--1-1.prod.pod.cluster.local", dns.TypeAAAA, KindAnswer},
	{"PTR", "1.0.1.10.in-addr.arpa", dns.TypePTR, KindAnswer},
	{"PTR6", "6.0.0.0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa", dns.TypePTR, KindAnswer},
	{"chase", "ext.prod.svc.cluster.local", dns.TypeA, KindChase},
	{"forward", "api.example.com", dns.TypeA, KindForward},
}

func hotSnapshot(t testing.TB, mode PodMode) *Snapshot {
	_, store := newBuilder(t, Config{PodMode: mode}, cluster())
	return store.Load()
}

// TestLookupAllocs pins the hot path: no allocation for static answers,
// negative answers and search-suffix names; pod answers append into dst.
func TestLookupAllocs(t *testing.T) {
	for _, mode := range []PodMode{PodsInsecure, PodsVerified} {
		snap := hotSnapshot(t, mode)
		// The resolver's scratch size: names below a service and PTR are
		// built into it.
		dst := make([]byte, 0, 4096)
		for _, q := range hotQueries {
			name := wireOf(t, q.name)
			if r := snap.Lookup(name, q.qtype, dst); r.Kind != q.kind {
				t.Fatalf("%s (%v): kind %d, want %d", q.label, mode, r.Kind, q.kind)
			}
			allocs := testing.AllocsPerRun(200, func() {
				snap.Lookup(name, q.qtype, dst)
			})
			if allocs != 0 {
				t.Errorf("%s (%v): %.1f allocs per lookup, want 0", q.label, mode, allocs)
			}
		}
	}
}

// The pod answer goes after what dst already holds, which stays intact.
func TestLookupPodAppends(t *testing.T) {
	snap := hotSnapshot(t, PodsInsecure)
	dst := append(make([]byte, 0, 64), "keep"...)
	r := snap.Lookup(wireOf(t, "1-2-3-4.prod.pod.cluster.local"), dns.TypeA, dst)
	if r.Kind != KindAnswer || len(r.Records) != 16 || string(dst[:4]) != "keep" {
		t.Fatalf("kind %d, records % x", r.Kind, r.Records)
	}
	if &r.Records[0] != &dst[:5][4] {
		t.Error("records not appended into dst's room")
	}
}

func BenchmarkLookup(b *testing.B) {
	snap := hotSnapshot(b, PodsVerified)
	dst := make([]byte, 0, 4096)
	for _, q := range hotQueries {
		name := wireOf(b, q.name)
		b.Run(q.label, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				snap.Lookup(name, q.qtype, dst)
			}
		})
	}
}

// bigObjects is a cluster of nsN (< 256) namespaces, each with svcN
// ClusterIP services and one headless service of epN endpoints.
func bigObjects(nsN, svcN, epN int) Objects {
	var o Objects
	n := 0
	for i := 0; i < nsN; i++ {
		ns := fmt.Sprintf("ns-%d", i)
		o.Namespaces = append(o.Namespaces, ns)
		for j := 0; j < svcN; j++ {
			n++
			o.Services = append(o.Services, &Service{Namespace: ns, Name: fmt.Sprintf("svc-%d", j),
				ClusterIPs: []netip.Addr{netip.AddrFrom4([4]byte{10, 96, byte(n >> 8), byte(n)})},
				Ports:      []Port{{Name: "http", Protocol: "TCP", Port: 80}}})
		}
		o.Services = append(o.Services, &Service{Namespace: ns, Name: "hl", Headless: true})
		es := &EndpointSlice{Namespace: ns, Name: "hl-1", ServiceName: "hl", AddressType: "IPv4",
			Ports: []Port{{Name: "http", Protocol: "TCP", Port: 8080}}}
		for k := 0; k < epN; k++ {
			es.Endpoints = append(es.Endpoints, Endpoint{Ready: true,
				Addresses: []netip.Addr{netip.AddrFrom4([4]byte{10, byte(i), byte(k >> 8), byte(k)})}})
		}
		o.EndpointSlices = append(o.EndpointSlices, es)
	}
	return o
}

// BenchmarkBuildFull: 100 namespaces × (10 services + 1 headless × 100
// endpoints), from scratch.
func BenchmarkBuildFull(b *testing.B) {
	objs := bigObjects(100, 10, 100)
	b.ReportAllocs()
	for b.Loop() {
		store := &Store{}
		bl, _ := NewBuilder(Config{Domains: []string{"cluster.local"}}, store)
		bl.ReplaceAll(objs)
		bl.SetSynced()
		bl.Flush()
	}
}

// BenchmarkBuildOneNamespace: the same cluster, one service changes.
func BenchmarkBuildOneNamespace(b *testing.B) {
	objs := bigObjects(100, 10, 100)
	store := &Store{}
	bl, _ := NewBuilder(Config{Domains: []string{"cluster.local"}}, store)
	bl.ReplaceAll(objs)
	bl.SetSynced()
	bl.Flush()
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		i++
		bl.SetService(&Service{Namespace: "ns-7", Name: "svc-3",
			ClusterIPs: []netip.Addr{netip.AddrFrom4([4]byte{10, 97, byte(i >> 8), byte(i)})}})
		bl.Flush()
	}
}
