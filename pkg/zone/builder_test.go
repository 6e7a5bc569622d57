package zone

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func withOther(objs Objects) Objects {
	objs.Namespaces = append(objs.Namespaces, "other")
	objs.Services = append(objs.Services,
		&Service{Namespace: "other", Name: "api", ClusterIPs: ips("10.96.1.1")},
		&Service{Namespace: "other", Name: "hl", Headless: true})
	objs.EndpointSlices = append(objs.EndpointSlices, &EndpointSlice{
		Namespace: "other", Name: "hl-1", ServiceName: "hl", AddressType: "IPv4",
		Endpoints: []Endpoint{ep("h0", "10.7.0.1"), ep("", "10.7.0.2")}})
	return objs
}

func otherCases(t *testing.T) []testCase {
	return []testCase{
		answer("api.other.svc.cluster.local", dns.TypeA, "api.other.svc.cluster.local. 5 IN A 10.96.1.1"),
		answer("hl.other.svc.cluster.local", dns.TypeA,
			"hl.other.svc.cluster.local. 5 IN A 10.7.0.1", "hl.other.svc.cluster.local. 5 IN A 10.7.0.2"),
		answer("h0.hl.other.svc.cluster.local", dns.TypeA, "h0.hl.other.svc.cluster.local. 5 IN A 10.7.0.1"),
		answer(rev(t, "10.96.1.1"), dns.TypePTR, rev(t, "10.96.1.1")+" 5 IN PTR api.other.svc.cluster.local."),
		answer(rev(t, "10.7.0.2"), dns.TypePTR, rev(t, "10.7.0.2")+" 5 IN PTR 10-7-0-2.hl.other.svc.cluster.local."),
	}
}

func TestIncrementalRebuild(t *testing.T) {
	b, store := newBuilder(t, Config{}, withOther(cluster()))
	var infos []PublishInfo
	b.OnPublish(func(pi PublishInfo) { infos = append(infos, pi) })
	s1 := store.Load()
	other1, prod1 := s1.ns["other"], s1.ns["prod"]

	// Change one service in prod.
	b.SetService(&Service{Namespace: "prod", Name: "web", ClusterIPs: ips("10.96.0.99"),
		Ports: []Port{{Name: "http", Protocol: "TCP", Port: 80}}})
	b.Flush()
	s2 := store.Load()
	if s2 == s1 || s2.Serial() <= s1.Serial() {
		t.Fatalf("no new snapshot/serial: %d -> %d", s1.Serial(), s2.Serial())
	}
	if s2.ns["other"] != other1 {
		t.Error("namespace other was rebuilt; it did not change")
	}
	if s2.ns["prod"] == prod1 {
		t.Error("namespace prod was not rebuilt")
	}
	shared := 0
	for i := range s1.ip.shards {
		if s1.ip.shards[i] == s2.ip.shards[i] {
			shared++
		}
	}
	if shared < ipShards-4 {
		t.Errorf("only %d of %d IP shards shared after a one-service change", shared, ipShards)
	}
	if len(infos) != 1 || infos[0].Rebuilt != 1 || !infos[0].Synced || infos[0].Serial != s2.Serial() {
		t.Errorf("publish info: %+v", infos)
	}
	runCases(t, s2, append(otherCases(t),
		answer("web.prod.svc.cluster.local", dns.TypeA, "web.prod.svc.cluster.local. 5 IN A 10.96.0.99"),
		nodata("web.prod.svc.cluster.local", dns.TypeAAAA),
		answer(rev(t, "10.96.0.99"), dns.TypePTR, rev(t, "10.96.0.99")+" 5 IN PTR web.prod.svc.cluster.local."),
		fwd(rev(t, "10.96.0.10"), dns.TypePTR),
		nx("_dns._udp.web.prod.svc.cluster.local", dns.TypeSRV),
		// Untouched services of the rebuilt namespace are still right.
		answer("db-1.db.prod.svc.cluster.local", dns.TypeA, "db-1.db.prod.svc.cluster.local. 5 IN A 10.1.0.2"),
	))
	// The old snapshot is immutable.
	runCases(t, s1, []testCase{
		answer("web.prod.svc.cluster.local", dns.TypeA, "web.prod.svc.cluster.local. 5 IN A 10.96.0.10"),
		answer(rev(t, "10.96.0.10"), dns.TypePTR, rev(t, "10.96.0.10")+" 5 IN PTR web.prod.svc.cluster.local."),
	})

	// Delete a headless service and one slice of another.
	b.DeleteService("prod", "db")
	b.DeleteEndpointSlice("prod", "twins-a")
	b.Flush()
	s3 := store.Load()
	runCases(t, s3, append(otherCases(t),
		nx("db.prod.svc.cluster.local", dns.TypeA),
		suffix("db-0.db.prod.svc.cluster.local", dns.TypeA), // no service db any more
		nx("_pg._tcp.db.prod.svc.cluster.local", dns.TypeSRV),
		fwd(rev(t, "10.1.0.3"), dns.TypePTR),
		nx("twins.prod.svc.cluster.local", dns.TypeA),
		answer("busybox-1.sub.prod.svc.cluster.local", dns.TypeA, "busybox-1.sub.prod.svc.cluster.local. 5 IN A 10.5.0.1"),
	))

	// A Pod change rebuilds only the namespace's pod addresses.
	web := s3.ns["prod"].svcs["web"][0]
	b.SetPod(&Pod{Namespace: "prod", Name: "new", IPs: ips("10.1.9.9")})
	b.Flush()
	s4 := store.Load()
	if s4.ns["prod"].svcs["web"][0] != web {
		t.Error("a Pod change rebuilt the services of its namespace")
	}
	if ns, ok := s4.PodNamespace(ip("10.1.9.9")); !ok || ns != "prod" {
		t.Errorf("PodNamespace = %q, %v", ns, ok)
	}
	if _, ok := s4.PodNamespace(ip("192.168.0.5")); ok {
		t.Error("hostNetwork pod identifies a namespace")
	}
	b.DeletePod("prod", "new")
	b.Flush()
	if _, ok := store.Load().PodNamespace(ip("10.1.9.9")); ok {
		t.Error("deleted pod still found")
	}

	// Namespaces: an empty namespace exists only while set.
	runCases(t, store.Load(), []testCase{nodata("test.svc.cluster.local", dns.TypeA)})
	b.DeleteNamespace("test")
	b.Flush()
	runCases(t, store.Load(), []testCase{suffix("test.svc.cluster.local", dns.TypeA)})
	b.SetNamespace("test")
	b.Flush()
	runCases(t, store.Load(), []testCase{nodata("test.svc.cluster.local", dns.TypeA)})
	// Deleting a namespace that still has objects keeps it.
	b.DeleteNamespace("other")
	b.Flush()
	runCases(t, store.Load(), otherCases(t))

	// Nothing pending: no publish.
	before := store.Load()
	n := len(infos)
	b.Flush()
	if store.Load() != before || len(infos) != n {
		t.Error("Flush without changes published")
	}
}

func TestReplaceAllDiff(t *testing.T) {
	b, store := newBuilder(t, Config{}, withOther(cluster()))
	var infos []PublishInfo
	b.OnPublish(func(pi PublishInfo) { infos = append(infos, pi) })
	s1 := store.Load()

	// Same content, fresh objects: nothing to rebuild.
	b.ReplaceAll(withOther(cluster()))
	b.Flush()
	if store.Load() != s1 || len(infos) != 0 {
		t.Fatalf("unchanged ReplaceAll published: %+v", infos)
	}

	// One namespace changes, one disappears.
	objs := cluster()
	objs.Services[0] = &Service{Namespace: "default", Name: "kubernetes", ClusterIPs: ips("10.96.0.2")}
	b.ReplaceAll(objs)
	b.Flush()
	s2 := store.Load()
	if len(infos) != 1 || infos[0].Rebuilt != 2 {
		t.Fatalf("publish info: %+v", infos)
	}
	if s2.ns["prod"] != s1.ns["prod"] {
		t.Error("unchanged namespace prod rebuilt")
	}
	if infos[0].Services != len(objs.Services) || infos[0].EndpointSlices != len(objs.EndpointSlices) ||
		infos[0].Pods != len(objs.Pods) {
		t.Errorf("object counts: %+v", infos[0])
	}
	runCases(t, s2, []testCase{
		answer("kubernetes.default.svc.cluster.local", dns.TypeA, "kubernetes.default.svc.cluster.local. 5 IN A 10.96.0.2"),
		suffix("api.other.svc.cluster.local", dns.TypeA),
		fwd(rev(t, "10.96.1.1"), dns.TypePTR),
		fwd(rev(t, "10.7.0.1"), dns.TypePTR),
	})
}

// A Pod whose IP is listed in two namespaces is no evidence of either.
func TestPodNamespaceAmbiguous(t *testing.T) {
	_, store := newBuilder(t, Config{}, Objects{Pods: []*Pod{
		{Namespace: "a", Name: "p", IPs: ips("10.0.0.1")},
		{Namespace: "b", Name: "p", IPs: ips("10.0.0.1")},
		{Namespace: "a", Name: "q", IPs: ips("10.0.0.2")},
	}})
	s := store.Load()
	if _, ok := s.PodNamespace(ip("10.0.0.1")); ok {
		t.Error("ambiguous address resolved")
	}
	if ns, ok := s.PodNamespace(ip("10.0.0.2")); !ok || ns != "a" {
		t.Errorf("PodNamespace = %q, %v", ns, ok)
	}
	if _, ok := s.PodNamespace(netip.Addr{}); ok {
		t.Error("zero address resolved")
	}
}

func TestRunPublishes(t *testing.T) {
	store := &Store{}
	b, err := NewBuilder(Config{Domains: []string{"cluster.local"}, Debounce: time.Millisecond}, store)
	if err != nil {
		t.Fatal(err)
	}
	published := make(chan PublishInfo, 16)
	b.OnPublish(func(pi PublishInfo) { published <- pi })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { b.Run(ctx); close(done) }()

	wait := func(cond func(PublishInfo) bool) {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			select {
			case pi := <-published:
				if cond(pi) {
					return
				}
			case <-deadline:
				t.Fatal("no publish")
			}
		}
	}
	b.SetService(&Service{Namespace: "ns", Name: "a", ClusterIPs: ips("10.0.0.1")})
	b.SetSynced()
	wait(func(pi PublishInfo) bool { return pi.Synced && pi.Services == 1 })
	runCases(t, store.Load(), []testCase{
		answer("a.ns.svc.cluster.local", dns.TypeA, "a.ns.svc.cluster.local. 5 IN A 10.0.0.1"),
	})
	b.DeleteService("ns", "a")
	wait(func(pi PublishInfo) bool { return pi.Services == 0 })
	runCases(t, store.Load(), []testCase{suffix("a.ns.svc.cluster.local", dns.TypeA)})
	cancel()
	<-done
}

// TestConcurrentLookups runs readers against a builder that publishes
// continuously; run with -race.
func TestConcurrentLookups(t *testing.T) {
	b, store := newBuilder(t, Config{Debounce: time.Microsecond}, withOther(cluster()))
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); b.Run(ctx) }()

	var stop atomic.Bool
	var readers sync.WaitGroup
	names := [][]byte{
		wireOf(t, "web.prod.svc.cluster.local"),
		wireOf(t, "db.prod.svc.cluster.local"),
		wireOf(t, "_pg._tcp.db.prod.svc.cluster.local"),
		wireOf(t, "api.other.svc.cluster.local"),
		wireOf(t, "1-2-3-4.prod.pod.cluster.local"),
		wireOf(t, rev(t, "10.96.0.10")),
	}
	errs := make(chan error, 8)
	for r := 0; r < 4; r++ {
		readers.Add(1)
		go func() {
			defer readers.Done()
			dst := make([]byte, 0, 512)
			for i := 0; !stop.Load(); i++ {
				name := names[i%len(names)]
				res := store.Load().Lookup(name, dns.TypeA, dst)
				if i%len(names) == 3 && res.Kind != KindAnswer {
					errs <- fmt.Errorf("api.other: kind %d", res.Kind)
					return
				}
				m := new(dns.Msg)
				if err := m.Unpack(message(name, dns.TypeA, res)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for i := 0; i < 200; i++ {
		b.SetService(&Service{Namespace: "prod", Name: "web", ClusterIPs: []netip.Addr{netip.AddrFrom4([4]byte{10, 96, byte(i), 10})}})
		b.SetEndpointSlice(&EndpointSlice{Namespace: "prod", Name: "db-x", ServiceName: "db", AddressType: "IPv4",
			Endpoints: []Endpoint{ep("", fmt.Sprintf("10.8.%d.1", i))}})
		b.SetPod(&Pod{Namespace: "prod", Name: fmt.Sprintf("p%d", i%10), IPs: []netip.Addr{netip.AddrFrom4([4]byte{10, 9, byte(i), 1})}})
		if i%20 == 0 {
			b.Flush()
		}
	}
	b.Flush()
	stop.Store(true)
	readers.Wait()
	cancel()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	runCases(t, store.Load(), append(otherCases(t),
		answer("web.prod.svc.cluster.local", dns.TypeA, "web.prod.svc.cluster.local. 5 IN A 10.96.199.10"),
		answer("10-8-199-1.db.prod.svc.cluster.local", dns.TypeA, "10-8-199-1.db.prod.svc.cluster.local. 5 IN A 10.8.199.1"),
	))
}

// Bad objects never panic; what cannot be a record is skipped and the rest
// of the namespace still works.
func TestBadObjects(t *testing.T) {
	long := strings.Repeat("a", 64)
	many := make([]Endpoint, 0, 20000)
	for i := 0; i < 20000; i++ {
		many = append(many, ep("", fmt.Sprintf("10.%d.%d.%d", 100+i/65536, i/256%256, i%256)))
	}
	objs := Objects{
		Namespaces: []string{"ok", "Bad NS", "", long},
		Services: []*Service{
			nil,
			{Namespace: "ok", Name: "good", ClusterIPs: ips("10.0.0.1")},
			{Namespace: "ok", Name: "Bad_Name", ClusterIPs: ips("10.0.0.2")},
			{Namespace: "ok", Name: "", ClusterIPs: ips("10.0.0.3")},
			{Namespace: "ok", Name: long, ClusterIPs: ips("10.0.0.4")},
			{Namespace: "ok", Name: "a.b", ClusterIPs: ips("10.0.0.5")},
			{Namespace: "ok", Name: "zero", ClusterIPs: []netip.Addr{{}, ip("0.0.0.0"), ip("::")}},
			{Namespace: "ok", Name: "noips"},
			{Namespace: "ok", Name: "mapped", ClusterIPs: ips("::ffff:10.0.0.6", "fe80::1%eth0")},
			{Namespace: "ok", Name: "ext-bad", ExternalName: "bad..name"},
			{Namespace: "ok", Name: "ext-ip", ExternalName: "1.2.3.4"},
			{Namespace: "ok", Name: "ext-long", ExternalName: strings.Repeat("abcdefghi.", 30)},
			{Namespace: "ok", Name: "ports", ClusterIPs: ips("10.0.0.7"), Ports: []Port{
				{Name: "neg", Port: -1}, {Name: "zero", Port: 0}, {Name: "big", Port: 70000},
				{Name: strings.Repeat("p", 63), Port: 1}, {Name: "fine", Port: 8}}},
			{Namespace: "ok", Name: "huge", Headless: true, Ports: nil},
			{Namespace: "ok", Name: "mixed", Headless: true},
			{Namespace: "Bad NS", Name: "x", ClusterIPs: ips("10.0.0.8")},
		},
		EndpointSlices: []*EndpointSlice{
			nil,
			{Namespace: "ok", Name: "huge-1", ServiceName: "huge", AddressType: "IPv4",
				Ports: []Port{{Name: "p", Port: 1}}, Endpoints: many},
			{Namespace: "ok", Name: "mixed-1", ServiceName: "mixed", AddressType: "IPv4",
				Endpoints: []Endpoint{
					ep("", "fd00::1"), // wrong family
					ep("Host_Bad", "10.1.1.1"),
					ep("", "0.0.0.0"),
					{Addresses: []netip.Addr{{}}, Ready: true},
					{Ready: true},
				}},
			{Namespace: "ok", Name: "weird", ServiceName: "mixed", AddressType: "Other",
				Endpoints: []Endpoint{ep("", "10.1.1.2")}},
			{Namespace: "ok", Name: "bad-svc", ServiceName: "Not A Label",
				Endpoints: []Endpoint{ep("", "10.1.1.3")}},
		},
		Pods: []*Pod{nil, {Namespace: "ok", Name: "p", IPs: []netip.Addr{{}, ip("0.0.0.0")}}},
	}
	_, store := newBuilder(t, Config{PodMode: PodsVerified}, objs)
	snap := store.Load()
	runCases(t, snap, []testCase{
		answer("good.ok.svc.cluster.local", dns.TypeA, "good.ok.svc.cluster.local. 5 IN A 10.0.0.1"),
		nx("zero.ok.svc.cluster.local", dns.TypeA),
		nx("noips.ok.svc.cluster.local", dns.TypeA),
		answer("mapped.ok.svc.cluster.local", dns.TypeA, "mapped.ok.svc.cluster.local. 5 IN A 10.0.0.6").withExtra(),
		nx("ext-bad.ok.svc.cluster.local", dns.TypeA),
		nx("ext-ip.ok.svc.cluster.local", dns.TypeA),
		nx("ext-long.ok.svc.cluster.local", dns.TypeA),
		answer("_fine._tcp.ports.ok.svc.cluster.local", dns.TypeSRV,
			"_fine._tcp.ports.ok.svc.cluster.local. 5 IN SRV 0 100 8 ports.ok.svc.cluster.local.").
			withExtra("ports.ok.svc.cluster.local. 5 IN A 10.0.0.7"),
		nx("_big._tcp.ports.ok.svc.cluster.local", dns.TypeSRV),
		answer("mixed.ok.svc.cluster.local", dns.TypeA, "mixed.ok.svc.cluster.local. 5 IN A 10.1.1.1"),
		answer("10-1-1-1.mixed.ok.svc.cluster.local", dns.TypeA, "10-1-1-1.mixed.ok.svc.cluster.local. 5 IN A 10.1.1.1"),
		nodata("mixed.ok.svc.cluster.local", dns.TypeAAAA),
		suffix("x.bad-ns.svc.cluster.local", dns.TypeA),
		nx("ok.pod.cluster.local", dns.TypeA), // verified: its pod has no usable IP
	})
	// The huge service answers, cut to what fits one message.
	for _, q := range []struct {
		name  string
		qtype uint16
	}{{"huge.ok.svc.cluster.local", dns.TypeA}, {"_p._tcp.huge.ok.svc.cluster.local", dns.TypeSRV}} {
		r, m := lookup(t, snap, q.name, q.qtype)
		if r.Kind != KindAnswer || len(m.Answer) == 0 || len(r.Records) > maxRecordsLen {
			t.Errorf("%s: kind %d, %d answers, %d octets", q.name, r.Kind, len(m.Answer), len(r.Records))
		}
		if q.qtype == dns.TypeSRV && m.Answer[0].(*dns.SRV).Weight != uint16(100/len(m.Answer)) && m.Answer[0].(*dns.SRV).Weight != 1 {
			t.Errorf("SRV weight %d for %d records", m.Answer[0].(*dns.SRV).Weight, len(m.Answer))
		}
	}
	r, _ := lookup(t, snap, "10-100-78-31.huge.ok.svc.cluster.local", dns.TypeA) // endpoint 19999
	if r.Kind != KindAnswer {
		t.Errorf("last endpoint of the huge service: kind %d", r.Kind)
	}
}

func TestNewBuilderErrors(t *testing.T) {
	for _, cfg := range []Config{
		{},
		{Domains: []string{""}},
		{Domains: []string{"a..b"}},
		{Domains: []string{"cluster.local", "Cluster.Local."}},
		{Domains: []string{"cluster.local"}, PodMode: PodMode(7)},
		{Domains: []string{"cluster.local"}, NSAddrs: []netip.Addr{{}}},
	} {
		if _, err := NewBuilder(cfg, &Store{}); err == nil {
			t.Errorf("NewBuilder(%+v) accepted", cfg)
		}
	}
	if _, err := NewBuilder(Config{Domains: []string{"cluster.local"}}, nil); err == nil {
		t.Error("nil store accepted")
	}
}
