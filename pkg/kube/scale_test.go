package kube

import (
	"net/netip"
	"testing"

	clientfeatures "k8s.io/client-go/features"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"

	"github.com/nodedns/nodedns/pkg/zone"
)

// DropPodNames keeps everything but the targetRef names.
func TestDropPodNames(t *testing.T) {
	client := fake.NewClientset(endpointSlice("default", "web-abc", "web", true, "10.244.1.5"))
	sink := newRecordingSink()
	w, err := New(Config{Client: fromClientset(client), Logger: discardLogger(), DropPodNames: true}, sink)
	if err != nil {
		t.Fatal(err)
	}
	start(t, w)
	waitSynced(t, w)
	sink.mu.Lock()
	es := sink.slices["default/web-abc"]
	sink.mu.Unlock()
	if es == nil || len(es.Endpoints) != 1 || es.Endpoints[0].PodName != "" || !es.Endpoints[0].Ready || len(es.Endpoints[0].Addresses) != 1 {
		t.Fatalf("slice: %+v", es)
	}
}

// SetWatchList answers for WatchListClient only and can be undone.
func TestSetWatchList(t *testing.T) {
	gate := clientfeatures.WatchListClient
	before := clientfeatures.FeatureGates()
	t.Cleanup(func() { clientfeatures.ReplaceFeatureGates(before) })
	for _, on := range []bool{true, false, true} {
		SetWatchList(on)
		g := clientfeatures.FeatureGates()
		if g.Enabled(gate) != on {
			t.Errorf("SetWatchList(%v): WatchListClient %v", on, g.Enabled(gate))
		}
		if g.Enabled(clientfeatures.InformerResourceVersion) != before.Enabled(clientfeatures.InformerResourceVersion) {
			t.Error("another gate changed")
		}
		if w, ok := g.(watchListGate); !ok || w.Gates != before {
			t.Errorf("gates %T: not one wrapper around the original", g)
		}
	}
}

// A relisted object that did not change keeps its cached entry; a changed
// one gets a new one.
func TestKeepUnchanged(t *testing.T) {
	store := cache.NewStore(cache.MetaNamespaceKeyFunc)
	tf := keepUnchanged(transform(SlimEndpointSlice), store)
	es := endpointSlice("default", "web-abc", "web", true, "10.244.1.5")
	es.ResourceVersion = "7"
	first, err := tf(es)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Add(first); err != nil {
		t.Fatal(err)
	}
	again, err := tf(es.DeepCopy())
	if err != nil || again != first {
		t.Errorf("same resourceVersion: got %p, want the cached %p (%v)", again, first, err)
	}
	changed := es.DeepCopy()
	changed.ResourceVersion = "8"
	changed.Endpoints[0].Addresses = []string{"10.244.1.6"}
	next, err := tf(changed)
	if err != nil || next == first || next.(*entry[*zone.EndpointSlice]).obj.Endpoints[0].Addresses[0] != netip.MustParseAddr("10.244.1.6") {
		t.Errorf("new resourceVersion: got %+v (%v)", next, err)
	}
	if e, _ := tf(first); e != first {
		t.Error("an entry is not returned as it is")
	}
}
