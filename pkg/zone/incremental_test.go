package zone

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	"github.com/miekg/dns"
)

// One EndpointSlice change repacks only its service; the other services of
// the namespace, and every other namespace, are shared with the previous
// snapshot; changes before one build coalesce into it.
func TestIncrementalPerService(t *testing.T) {
	objs := scaleObjects(300, 10) // 3 namespaces of 100 services
	b, store := newBuilder(t, Config{}, objs)
	var infos []PublishInfo
	b.OnPublish(func(pi PublishInfo) { infos = append(infos, pi) })
	s1 := store.Load()

	es := *objs.EndpointSlices[0] // svc-00000, namespace scale-000
	es.Endpoints = append([]Endpoint(nil), es.Endpoints...)
	es.Endpoints[0] = ep("", "10.200.0.1")
	b.SetEndpointSlice(&es)
	b.Flush()
	s2 := store.Load()
	if len(infos) != 1 || infos[0].Rebuilt != 1 || infos[0].Repacked != 1 {
		t.Fatalf("one slice change: %+v, want 1 namespace and 1 service rebuilt", infos)
	}
	for name, d := range s1.ns {
		if name != "scale-000" && s2.ns[name] != d {
			t.Errorf("namespace %s rebuilt", name)
		}
	}
	for key, nodes := range s1.ns["scale-000"].svcs {
		if same := s2.ns["scale-000"].svcs[key][0] == nodes[0]; same != (key != "svc-00000") {
			t.Errorf("service %s: shared %v", key, same)
		}
	}
	runCases(t, s2, []testCase{
		answer("10-200-0-1.svc-00000.scale-000.svc.cluster.local", dns.TypeA, "10-200-0-1.svc-00000.scale-000.svc.cluster.local. 5 IN A 10.200.0.1"),
		answer(rev(t, "10.200.0.1"), dns.TypePTR, rev(t, "10.200.0.1")+" 5 IN PTR 10-200-0-1.svc-00000.scale-000.svc.cluster.local."),
		fwd(rev(t, "10.64.0.0"), dns.TypePTR), // the address it replaced
	})

	// A burst: three services in two namespaces, one build.
	infos = nil
	for _, i := range []int{1, 2, 150} {
		b.DeleteService(objs.Services[i].Namespace, objs.Services[i].Name)
	}
	b.Flush()
	if len(infos) != 1 || infos[0].Rebuilt != 2 || infos[0].Repacked != 3 {
		t.Fatalf("burst: %+v, want 1 publish, 2 namespaces, 3 services", infos)
	}
	runCases(t, store.Load(), []testCase{nx("svc-00001.scale-000.svc.cluster.local", dns.TypeA)})

	// A slice that moves to another service repacks both.
	infos = nil
	moved := *objs.EndpointSlices[6] // first slice of svc-00003
	moved.ServiceName = "svc-00004"
	b.SetEndpointSlice(&moved)
	b.Flush()
	if len(infos) != 1 || infos[0].Repacked != 2 {
		t.Fatalf("moved slice: %+v, want 2 services repacked", infos)
	}
}

// TestIncrementalMatchesFull applies random changes one build at a time and
// checks every answer against a Builder given the same objects at once.
func TestIncrementalMatchesFull(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	objs := scaleObjects(60, 4)
	for _, s := range objs.Services[:3] {
		s.Namespace = "mixed" // a namespace of its own, some services with
	}
	objs.Namespaces = append(objs.Namespaces, "mixed")
	b, store := newBuilder(t, Config{Domains: []string{"cluster.local", "other.zone"}}, objs)

	slicesByName := map[string]*EndpointSlice{}
	for _, es := range objs.EndpointSlices {
		slicesByName[es.Namespace+"/"+es.Name] = es
	}
	services := map[string]*Service{}
	for _, s := range objs.Services {
		services[s.Namespace+"/"+s.Name] = s
	}
	addrs := map[netip.Addr]bool{}
	for _, es := range objs.EndpointSlices {
		for _, e := range es.Endpoints {
			addrs[e.Addresses[0]] = true
		}
	}
	for round := range 40 {
		for range 1 + rng.IntN(4) {
			switch rng.IntN(5) {
			case 0, 1: // an endpoint gets a new address, or its hostname goes
				es := pick(rng, slicesByName)
				c := *es
				c.Endpoints = append([]Endpoint(nil), es.Endpoints...)
				j := rng.IntN(len(c.Endpoints))
				a := netip.AddrFrom4([4]byte{10, 250, byte(round), byte(rng.IntN(256))})
				addrs[a] = true
				c.Endpoints[j].Addresses = []netip.Addr{a}
				if rng.IntN(3) == 0 {
					c.Endpoints[j].Hostname = ""
				}
				slicesByName[c.Namespace+"/"+c.Name] = &c
				b.SetEndpointSlice(&c)
			case 2: // a slice moves to another service (or to none)
				es := pick(rng, slicesByName)
				c := *es
				c.ServiceName = pick(rng, services).Name
				if rng.IntN(4) == 0 {
					c.ServiceName = ""
				}
				slicesByName[c.Namespace+"/"+c.Name] = &c
				b.SetEndpointSlice(&c)
			case 3: // a slice goes
				es := pick(rng, slicesByName)
				delete(slicesByName, es.Namespace+"/"+es.Name)
				b.DeleteEndpointSlice(es.Namespace, es.Name)
			case 4: // a service turns headless, or comes back as ClusterIP
				s := pick(rng, services)
				c := *s
				c.Headless = !s.Headless
				c.ClusterIPs = nil
				if !c.Headless {
					a := netip.AddrFrom4([4]byte{10, 96, 200, byte(rng.IntN(256))})
					addrs[a] = true
					c.ClusterIPs = []netip.Addr{a}
				}
				services[c.Namespace+"/"+c.Name] = &c
				b.SetService(&c)
			}
		}
		b.Flush()
		var all Objects
		all.Namespaces = objs.Namespaces
		for _, s := range services {
			all.Services = append(all.Services, s)
		}
		for _, es := range slicesByName {
			all.EndpointSlices = append(all.EndpointSlices, es)
		}
		_, full := newBuilder(t, Config{Domains: []string{"cluster.local", "other.zone"}}, all)
		sameAnswers(t, fmt.Sprintf("round %d", round), store.Load(), full.Load(), all, addrs)
	}
}

func pick[T any](rng *rand.Rand, m map[string]T) T {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys) // map order is random; sorted, a run is reproducible
	return m[keys[rng.IntN(len(keys))]]
}

// sameAnswers compares the answers of two snapshots for every service,
// endpoint name, SRV name and known address.
func sameAnswers(t *testing.T, what string, got, want *Snapshot, objs Objects, addrs map[netip.Addr]bool) {
	t.Helper()
	var names []string
	for _, zone := range []string{"cluster.local", "other.zone"} {
		for _, s := range objs.Services {
			svc := s.Name + "." + s.Namespace + ".svc." + zone
			names = append(names, svc, "_http._tcp."+svc)
		}
		for _, es := range objs.EndpointSlices {
			if es.ServiceName == "" {
				continue
			}
			for _, e := range es.Endpoints {
				l := e.Hostname
				if l == "" {
					l = dashedIP(e.Addresses[0])
				}
				names = append(names, l+"."+es.ServiceName+"."+es.Namespace+".svc."+zone)
			}
		}
	}
	for a := range addrs {
		names = append(names, rev(t, a.String()))
	}
	for _, n := range names {
		for _, qt := range []uint16{dns.TypeA, dns.TypeSRV, dns.TypePTR} {
			w := wireOf(t, n)
			g, x := got.Lookup(w, qt, nil), want.Lookup(w, qt, nil)
			if g.Kind != x.Kind || g.Rcode != x.Rcode || g.An != x.An || g.Ar != x.Ar ||
				(g.Kind == KindAnswer && !bytes.Equal(g.Records, x.Records)) {
				t.Fatalf("%s: %s %s: incremental %+v, full %+v", what, n, dns.TypeToString[qt], g, x)
			}
		}
	}
}
