package kube

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"

	"github.com/nodedns/nodedns/pkg/zone"
)

// *zone.Builder is the Sink in production.
var _ Sink = (*zone.Builder)(nil)

// recordingSink is a Sink that records every call, in order, and keeps the
// current objects.
type recordingSink struct {
	mu       sync.Mutex
	calls    []string // "SetService default/web", "SetSynced", ...
	ns       map[string]bool
	services map[string]*zone.Service
	slices   map[string]*zone.EndpointSlice
	pods     map[string]*zone.Pod
	changed  chan struct{} // gets a token after each call
}

func newRecordingSink() *recordingSink {
	return &recordingSink{
		ns:       map[string]bool{},
		services: map[string]*zone.Service{},
		slices:   map[string]*zone.EndpointSlice{},
		pods:     map[string]*zone.Pod{},
		changed:  make(chan struct{}, 1),
	}
}

func (s *recordingSink) record(call string, f func()) {
	s.mu.Lock()
	s.calls = append(s.calls, call)
	if f != nil {
		f()
	}
	s.mu.Unlock()
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

func (s *recordingSink) SetNamespace(name string) {
	s.record("SetNamespace "+name, func() { s.ns[name] = true })
}
func (s *recordingSink) DeleteNamespace(name string) {
	s.record("DeleteNamespace "+name, func() { delete(s.ns, name) })
}
func (s *recordingSink) SetService(v *zone.Service) {
	k := v.Namespace + "/" + v.Name
	s.record("SetService "+k, func() { s.services[k] = v })
}
func (s *recordingSink) DeleteService(ns, name string) {
	k := ns + "/" + name
	s.record("DeleteService "+k, func() { delete(s.services, k) })
}
func (s *recordingSink) SetEndpointSlice(v *zone.EndpointSlice) {
	k := v.Namespace + "/" + v.Name
	s.record("SetEndpointSlice "+k, func() { s.slices[k] = v })
}
func (s *recordingSink) DeleteEndpointSlice(ns, name string) {
	k := ns + "/" + name
	s.record("DeleteEndpointSlice "+k, func() { delete(s.slices, k) })
}
func (s *recordingSink) SetPod(v *zone.Pod) {
	k := v.Namespace + "/" + v.Name
	s.record("SetPod "+k, func() { s.pods[k] = v })
}
func (s *recordingSink) DeletePod(ns, name string) {
	k := ns + "/" + name
	s.record("DeletePod "+k, func() { delete(s.pods, k) })
}
func (s *recordingSink) SetSynced() { s.record("SetSynced", nil) }

// snapshot returns a copy of the calls so far.
func (s *recordingSink) snapshot() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

func (s *recordingSink) count(call string) int {
	n := 0
	for _, c := range s.snapshot() {
		if c == call {
			n++
		}
	}
	return n
}

// waitFor waits, without sleeping, until cond (called with the sink locked)
// holds or the deadline passes.
func (s *recordingSink) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		ok := cond()
		s.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-s.changed:
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s; calls: %q", what, s.snapshot())
		}
	}
}

// logRecorder is a slog.Handler that keeps the records.
type logRecorder struct {
	mu      sync.Mutex
	records []slog.Record
}

func (h *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (h *logRecorder) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	h.records = append(h.records, r.Clone())
	h.mu.Unlock()
	return nil
}
func (h *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *logRecorder) WithGroup(string) slog.Handler      { return h }

// count returns the number of records at level, and the value of attribute
// key in the last of them.
func (h *logRecorder) count(level slog.Level, key string) (int, string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	n, last := 0, ""
	for _, r := range h.records {
		if r.Level != level {
			continue
		}
		n++
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == key {
				last = fmt.Sprint(a.Value.Any())
			}
			return true
		})
	}
	return n, last
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// fromClientset adapts a clientset (client-go's fake in these tests) to a
// Client.
func fromClientset(c kubernetes.Interface) Client { return clientsetClient{c} }

type clientsetClient struct{ c kubernetes.Interface }

func (f clientsetClient) ListWatch(resource string) (ListFunc, WatchFunc, bool) {
	core, disc := f.c.CoreV1(), f.c.DiscoveryV1()
	switch resource {
	case "namespaces":
		return listFunc(core.Namespaces().List), core.Namespaces().Watch, true
	case "services":
		return listFunc(core.Services("").List), core.Services("").Watch, true
	case "pods":
		return listFunc(core.Pods("").List), core.Pods("").Watch, true
	case "endpointslices":
		return listFunc(disc.EndpointSlices("").List), disc.EndpointSlices("").Watch, true
	}
	return nil, nil, false
}

func listFunc[L runtime.Object](list func(context.Context, metav1.ListOptions) (L, error)) ListFunc {
	return func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
		l, err := list(ctx, o)
		if err != nil {
			return nil, err // not l: a typed nil would not be a nil interface
		}
		return l, nil
	}
}
