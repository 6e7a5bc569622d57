package zone

import (
	"reflect"
	"slices"
	"sort"
	"testing"

	"github.com/miekg/dns"
)

// TestLoadLastKnown: loaded objects answer before the sources sync; what
// the sources set replaces them, what they delete goes, and what they never
// mention is deleted when they sync, leaving exactly the sources' view.
func TestLoadLastKnown(t *testing.T) {
	store := &Store{}
	b, err := NewBuilder(Config{Domains: []string{"cluster.local"}}, store)
	if err != nil {
		t.Fatal(err)
	}
	b.LoadLastKnown(cluster())
	b.Flush()
	snap := store.Load()
	if !snap.Synced() {
		t.Fatal("a loaded last known zone is not served")
	}
	runCases(t, snap, []testCase{
		answer("web.prod.svc.cluster.local", dns.TypeA, "web.prod.svc.cluster.local. 5 IN A 10.96.0.10"),
		answer("kubernetes.default.svc.cluster.local", dns.TypeA, "kubernetes.default.svc.cluster.local. 5 IN A 10.96.0.1"),
		nodata("test.svc.cluster.local", dns.TypeA),
	})
	// A name it does not hold may have been created since: SERVFAIL, as
	// before any sync, never a false NXDOMAIN.
	for _, name := range []string{"new.prod.svc.cluster.local", "new.svc.cluster.local", "x.y.cluster.local"} {
		if r, _ := lookup(t, snap, name, dns.TypeA); r.Kind != KindNotSynced {
			t.Errorf("%s from the last known zone: kind %v rcode %d, want KindNotSynced (SERVFAIL)", name, r.Kind, r.Rcode)
		}
	}

	// The sources list: web moved, kubernetes, db's slices and the pods
	// as they were; db-b deleted explicitly; nothing else of the file
	// (ext, idle, ..., namespace test) exists any more.
	b.SetNamespace("default")
	b.SetNamespace("prod")
	b.SetService(&Service{Namespace: "prod", Name: "web", ClusterIPs: ips("10.96.0.11")})
	b.SetService(cluster().Services[0])
	b.SetService(&Service{Namespace: "prod", Name: "db", Headless: true})
	for _, es := range cluster().EndpointSlices {
		if es.Name == "db-a" || es.Name == "db-v6" {
			b.SetEndpointSlice(es)
		}
	}
	b.DeleteEndpointSlice("prod", "db-b")
	b.SetPod(cluster().Pods[0])
	b.Flush()
	// Not synced yet: the unmentioned objects still answer.
	runCases(t, store.Load(), []testCase{
		answer("web.prod.svc.cluster.local", dns.TypeA, "web.prod.svc.cluster.local. 5 IN A 10.96.0.11"),
		answer("ext.prod.svc.cluster.local", dns.TypeCNAME, "ext.prod.svc.cluster.local. 5 IN CNAME www.example.com."),
	})

	b.SetSynced()
	b.Flush()
	runCases(t, store.Load(), []testCase{
		answer("web.prod.svc.cluster.local", dns.TypeA, "web.prod.svc.cluster.local. 5 IN A 10.96.0.11"),
		answer("kubernetes.default.svc.cluster.local", dns.TypeA, "kubernetes.default.svc.cluster.local. 5 IN A 10.96.0.1"),
		nx("ext.prod.svc.cluster.local", dns.TypeA),
		nx("idle.prod.svc.cluster.local", dns.TypeA),
		suffix("test.svc.cluster.local", dns.TypeA),
		answer("db-0.db.prod.svc.cluster.local", dns.TypeA, "db-0.db.prod.svc.cluster.local. 5 IN A 10.1.0.1"),
	})
	got := b.Objects()
	names := func(o Objects) (out []string) {
		for _, s := range o.Services {
			out = append(out, "svc "+s.Namespace+"/"+s.Name)
		}
		for _, es := range o.EndpointSlices {
			out = append(out, "slice "+es.Namespace+"/"+es.Name)
		}
		for _, p := range o.Pods {
			out = append(out, "pod "+p.Namespace+"/"+p.Name)
		}
		for _, ns := range o.Namespaces {
			out = append(out, "ns "+ns)
		}
		sort.Strings(out)
		return out
	}
	want := []string{"ns default", "ns prod", "pod prod/db-0", "slice prod/db-a", "slice prod/db-v6",
		"svc default/kubernetes", "svc prod/db", "svc prod/web"}
	if !reflect.DeepEqual(names(got), want) {
		t.Errorf("objects after the sync:\n got %q\nwant %q", names(got), want)
	}

	// After the sync the builder is an ordinary one: a later SetSynced
	// deletes nothing.
	b.SetService(&Service{Namespace: "prod", Name: "late", ClusterIPs: ips("10.96.0.99")})
	b.SetSynced()
	b.Flush()
	if !slices.Contains(names(b.Objects()), "svc prod/late") {
		t.Error("a second SetSynced deleted an object set after the first")
	}
}
