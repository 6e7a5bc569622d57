package zone

import (
	"fmt"
	"net/netip"
	"runtime"
	"testing"
	"time"
)

// Memory of a large zone (issue #8): what the Builder holds (objects and the
// published Snapshot) per Service and per endpoint, at the shape that
// bench/scale generates: 100 Services per namespace, every other one
// headless, endpoints spread over slices of at most 5, a hostname on the
// endpoints of every fourth Service, a Pod targetRef on every endpoint and
// one named port.

// scaleObjects returns services Services with perService endpoints each.
func scaleObjects(services, perService int) Objects {
	var objs Objects
	const perNS, perSlice = 100, 5
	ep := 0
	for i := range services {
		ns := fmt.Sprintf("scale-%03d", i/perNS)
		if i%perNS == 0 {
			objs.Namespaces = append(objs.Namespaces, ns)
		}
		name := fmt.Sprintf("svc-%05d", i)
		svc := &Service{Namespace: ns, Name: name, Ports: []Port{{Name: "http", Protocol: "TCP", Port: 80}}}
		if i%2 == 1 {
			svc.Headless = true
		} else {
			svc.ClusterIPs = []netip.Addr{netip.AddrFrom4([4]byte{10, 96, byte(1 + i/250), byte(i%250 + 1)})}
		}
		objs.Services = append(objs.Services, svc)
		for s := 0; s*perSlice < perService; s++ {
			es := &EndpointSlice{
				Namespace: ns, Name: fmt.Sprintf("%s-%d", name, s), ServiceName: name, AddressType: "IPv4",
				Ports: []Port{{Name: "http", Protocol: "TCP", Port: 8080}},
			}
			for j := s * perSlice; j < min(perService, (s+1)*perSlice); j++ {
				e := Endpoint{
					Addresses: []netip.Addr{netip.AddrFrom4([4]byte{10, byte(64 + ep>>16), byte(ep >> 8), byte(ep)})},
					Ready:     true,
					PodName:   fmt.Sprintf("%s-pod-%d", name, j),
				}
				if i%4 == 1 {
					e.Hostname = fmt.Sprintf("%s-%d", name, j)
				}
				es.Endpoints = append(es.Endpoints, e)
				ep++
			}
			objs.EndpointSlices = append(objs.EndpointSlices, es)
		}
	}
	return objs
}

// heapInUse returns the live heap after a full collection.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC() // the second one frees what the first one's finalizers released
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

type zoneSize struct {
	objects, snapshot uint64 // bytes
	build             time.Duration
}

// measureZone builds a snapshot of scaleObjects(services, perService) and
// returns the heap held by the objects and, apart, by the Builder and its
// snapshot.
func measureZone(t testing.TB, services, perService int) zoneSize {
	before := heapInUse()
	objs := scaleObjects(services, perService)
	withObjs := heapInUse()
	store := &Store{}
	b, err := NewBuilder(Config{Domains: []string{"cluster.local"}}, store)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	b.ReplaceAll(objs)
	b.SetSynced()
	b.Flush()
	build := time.Since(start)
	objs = Objects{} // the Builder's maps hold the objects now
	after := heapInUse()
	if snap := store.Load(); !snap.Synced() {
		t.Fatal("not synced")
	}
	runtime.KeepAlive(b)
	return zoneSize{objects: withObjs - before, snapshot: after - withObjs, build: build}
}

// TestSnapshotSize reports bytes per Service and per endpoint; run with -v.
// The bounds catch a regression by a large factor, not noise: they are
// about twice what was measured (419 and 108 B with Go 1.26; 510 and 595 B
// before issue #8; see BENCHMARKS.md, "Large clusters").
func TestSnapshotSize(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	const services = 2000
	bare := measureZone(t, services, 0)
	full := measureZone(t, services, 10)
	perSvc := float64(bare.snapshot) / services
	perEP := (float64(full.snapshot) - float64(bare.snapshot)) / (services * 10)
	objPerEP := (float64(full.objects) - float64(bare.objects)) / (services * 10)
	t.Logf("snapshot: %.0f B per Service (no endpoints), %.0f B per endpoint; objects as this test makes them: %.0f B per Service, %.0f B per endpoint; %d×10 built in %v",
		perSvc, perEP, float64(bare.objects)/services, objPerEP, services, full.build.Round(time.Millisecond))
	if perSvc > 900 || perEP > 220 {
		t.Errorf("snapshot grew: %.0f B per Service (bound 900), %.0f B per endpoint (bound 220)", perSvc, perEP)
	}
}

// BenchmarkSnapshotSize builds the zone of bench/scale's 1k/10 and 10k/10
// and reports the heap it holds; ns/op is the full build.
func BenchmarkSnapshotSize(b *testing.B) {
	for _, sz := range []struct{ services, perService int }{{1000, 10}, {10000, 10}} {
		b.Run(fmt.Sprintf("%dx%d", sz.services, sz.perService), func(b *testing.B) {
			var last zoneSize
			for b.Loop() {
				last = measureZone(b, sz.services, sz.perService)
			}
			eps := float64(sz.services * sz.perService)
			b.ReportMetric(float64(last.snapshot)/(1<<20), "snapshot-MiB")
			b.ReportMetric(float64(last.objects)/(1<<20), "objects-MiB")
			b.ReportMetric(float64(last.snapshot)/eps, "snapshot-B/endpoint")
			b.ReportMetric(float64(last.objects+last.snapshot)/eps, "total-B/endpoint")
		})
	}
}
