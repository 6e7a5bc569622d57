// Package kube feeds the zone from the API server: informers on Services,
// EndpointSlices, Namespaces and (optionally) Pods, slimmed at ingest, whose
// events go to a Sink (the zone Builder).
//
// One watch event: reflector -> FIFO -> transform (API object to zone object,
// see entry.go) -> informer cache -> handler -> Sink.Set*/Delete*.
//
// After an API outage the reflectors relist and rewatch, retried at short
// intervals while the server is unreachable (retry.go); nothing here clears
// the Sink on a watch error, so the zone keeps serving what it had. A relist then reaches the Sink only as differences:
// updates that change nothing DNS uses are dropped, and objects deleted
// during the outage come as tombstone deletes.
package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"

	"github.com/nodedns/nodedns/pkg/zone"
)

// Sink receives the slimmed objects; *zone.Builder implements it.
//
// Its methods are called concurrently (one goroutine per informer) and must
// be safe for that. Objects passed in are shared with the informer caches:
// the Sink must not modify them. Set* is called on add and on every update
// that changed a DNS-relevant field; Delete* on delete.
type Sink interface {
	SetNamespace(name string)
	DeleteNamespace(name string)
	SetService(svc *zone.Service)
	DeleteService(namespace, name string)
	SetEndpointSlice(es *zone.EndpointSlice)
	DeleteEndpointSlice(namespace, name string)
	SetPod(p *zone.Pod)
	DeletePod(namespace, name string)
	// SetSynced is called once, after the initial list of every informer
	// has been delivered through Set*.
	SetSynced()
}

// Watcher runs the informers. Create it with New, start it once with Start;
// it stops when Start's context ends. HasSynced, Synced and WatchErrors are
// safe for concurrent use.
type Watcher struct {
	cfg       Config
	sink      Sink
	log       *slog.Logger
	informers []*informer

	started     atomic.Bool
	synced      atomic.Bool
	syncedCh    chan struct{}
	watchErrors atomic.Uint64
	warn        warnLimiter
	wg          sync.WaitGroup
	// retryInitial and retryMax bound retryWhileDown's backoff.
	retryInitial, retryMax time.Duration
}

type informer struct {
	resource string
	inf      cache.SharedIndexInformer
	reg      cache.ResourceEventHandlerRegistration
}

// New validates cfg and sets up the informers; nothing talks to the API
// server before Start.
func New(cfg Config, sink Sink) (*Watcher, error) {
	if cfg.Client == nil {
		return nil, errors.New("kube: Config.Client is nil")
	}
	if sink == nil {
		return nil, errors.New("kube: sink is nil")
	}
	switch cfg.PodScope {
	case PodsNone, PodsAll:
	case PodsNode:
		if cfg.NodeName == "" {
			return nil, errors.New("kube: PodScope node needs Config.NodeName")
		}
	default:
		return nil, fmt.Errorf("kube: unknown %v", cfg.PodScope)
	}
	if cfg.Resync < 0 {
		return nil, fmt.Errorf("kube: negative resync period %v", cfg.Resync)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	w := &Watcher{
		cfg:      cfg,
		sink:     sink,
		log:      cfg.Logger,
		syncedCh: make(chan struct{}),
		warn:     warnLimiter{every: watchErrorLogEvery, now: cfg.Now},

		retryInitial: retryInitial,
		retryMax:     retryMax,
	}
	err := w.add("namespaces", &corev1.Namespace{}, nil,
		transform(func(*corev1.Namespace) struct{} { return struct{}{} }),
		&handler[struct{}]{
			kind:   "Namespace",
			log:    w.log,
			set:    func(e *entry[struct{}]) { sink.SetNamespace(e.name) },
			delete: func(_, name string) { sink.DeleteNamespace(name) },
			equal:  func(struct{}, struct{}) bool { return true },
		})
	if err != nil {
		return nil, err
	}

	err = w.add("services", &corev1.Service{}, nil,
		transform(SlimService),
		&handler[*zone.Service]{
			kind:   "Service",
			log:    w.log,
			set:    func(e *entry[*zone.Service]) { sink.SetService(e.obj) },
			delete: sink.DeleteService,
			equal:  serviceEqual,
		})
	if err != nil {
		return nil, err
	}

	slimES := SlimEndpointSlice
	if cfg.DropPodNames {
		slimES = func(es *discoveryv1.EndpointSlice) *zone.EndpointSlice {
			out := SlimEndpointSlice(es)
			if out != nil {
				for i := range out.Endpoints {
					out.Endpoints[i].PodName = ""
				}
			}
			return out
		}
	}
	err = w.add("endpointslices", &discoveryv1.EndpointSlice{}, nil,
		transform(slimES),
		&handler[*zone.EndpointSlice]{
			kind:   "EndpointSlice",
			log:    w.log,
			set:    func(e *entry[*zone.EndpointSlice]) { sink.SetEndpointSlice(e.obj) },
			delete: sink.DeleteEndpointSlice,
			equal:  endpointSliceEqual,
		})
	if err != nil {
		return nil, err
	}

	if cfg.PodScope != PodsNone {
		var tweak func(*metav1.ListOptions)
		if cfg.PodScope == PodsNode {
			sel := fields.OneTermEqualSelector("spec.nodeName", cfg.NodeName).String()
			tweak = func(o *metav1.ListOptions) { o.FieldSelector = sel }
		}
		err = w.add("pods", &corev1.Pod{}, tweak,
			transform(SlimPod),
			&handler[*zone.Pod]{
				kind:   "Pod",
				log:    w.log,
				set:    func(e *entry[*zone.Pod]) { sink.SetPod(e.obj) },
				delete: sink.DeletePod,
				equal:  podEqual,
			})
		if err != nil {
			return nil, err
		}
	}
	return w, nil
}

// add creates one informer with its transform, watch error handler and
// event handler; tweak, if not nil, changes its list and watch options.
func (w *Watcher) add(resource string, example runtime.Object, tweak func(*metav1.ListOptions), tf cache.TransformFunc, h cache.ResourceEventHandler) error {
	list, watchFn, ok := w.cfg.Client.ListWatch(resource)
	if !ok {
		return fmt.Errorf("kube: %s: the client does not list it", resource)
	}
	inf := cache.NewSharedIndexInformerWithOptions(w.listWatch(resource, list, watchFn, tweak), example, cache.SharedIndexInformerOptions{
		ResyncPeriod:      w.cfg.Resync,
		ObjectDescription: resource,
	})
	if err := inf.SetTransform(keepUnchanged(tf, inf.GetStore())); err != nil {
		return fmt.Errorf("kube: %s informer: %w", resource, err)
	}
	if err := inf.SetWatchErrorHandlerWithContext(func(ctx context.Context, _ *cache.Reflector, err error) {
		if ctx.Err() != nil {
			return // stopping: the error is the stop itself
		}
		w.watchError(resource, err)
	}); err != nil {
		return fmt.Errorf("kube: %s informer: %w", resource, err)
	}
	reg, err := inf.AddEventHandler(h)
	if err != nil {
		return fmt.Errorf("kube: %s informer: %w", resource, err)
	}
	w.informers = append(w.informers, &informer{resource: resource, inf: inf, reg: reg})
	return nil
}

// listWatch adapts a Client's list and watch to a cache.ListWatch,
// applying tweak (e.g. a field selector) to both and retrying both while
// the API server is down (retryWhileDown).
func (w *Watcher) listWatch(resource string, list ListFunc, watchFn WatchFunc, tweak func(*metav1.ListOptions)) *cache.ListWatch {
	return &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			if tweak != nil {
				tweak(&o)
			}
			return retryWhileDown(ctx, w, resource, func() (runtime.Object, error) { return list(ctx, o) })
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			if tweak != nil {
				tweak(&o)
			}
			return retryWhileDown(ctx, w, resource, func() (watch.Interface, error) { return watchFn(ctx, o) })
		},
	}
}

// Start runs the informers until ctx ends and, once all of them have
// delivered their initial list, calls Sink.SetSynced. It returns at once;
// Wait waits for the goroutines to end. A second Start is an error.
func (w *Watcher) Start(ctx context.Context) error {
	if !w.started.CompareAndSwap(false, true) {
		return errors.New("kube: Watcher already started")
	}
	for _, i := range w.informers {
		w.wg.Go(func() { i.inf.RunWithContext(ctx) })
	}
	w.wg.Go(func() { w.waitForSync(ctx) })
	return nil
}

func (w *Watcher) waitForSync(ctx context.Context) {
	start := w.cfg.Now()
	syncs := make([]cache.InformerSynced, 0, len(w.informers))
	for _, i := range w.informers {
		// The registration's HasSynced, not the informer's: it turns true
		// only after the handler has processed the initial list, so the
		// Sink has every object before SetSynced.
		syncs = append(syncs, i.reg.HasSynced)
	}
	if !cache.WaitForCacheSync(ctx.Done(), syncs...) {
		return // ctx ended first
	}
	w.sink.SetSynced()
	w.synced.Store(true)
	close(w.syncedCh)
	attrs := []any{"after", w.cfg.Now().Sub(start).Round(time.Millisecond), "pods", w.cfg.PodScope.String()}
	for _, i := range w.informers {
		attrs = append(attrs, i.resource, len(i.inf.GetStore().ListKeys()))
	}
	w.log.Info("kube: informers synced", attrs...)
}

// Wait blocks until the goroutines started by Start have returned, i.e.
// after Start's context has ended.
func (w *Watcher) Wait() { w.wg.Wait() }

// HasSynced reports whether SetSynced has been called (for /ready).
func (w *Watcher) HasSynced() bool { return w.synced.Load() }

// Synced returns a channel closed once SetSynced has been called.
func (w *Watcher) Synced() <-chan struct{} { return w.syncedCh }

// WatchErrors returns the number of list/watch failures so far, over all
// informers.
func (w *Watcher) WatchErrors() uint64 { return w.watchErrors.Load() }

// Run is New, Start and Wait: it feeds sink until ctx ends.
func Run(ctx context.Context, cfg Config, sink Sink) error {
	w, err := New(cfg, sink)
	if err != nil {
		return err
	}
	if err := w.Start(ctx); err != nil {
		return err
	}
	w.Wait()
	return nil
}
