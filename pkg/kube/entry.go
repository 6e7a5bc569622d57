package kube

import (
	"fmt"
	"log/slog"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/tools/cache"
)

// Slimming at ingest.
//
// Each informer's transform (SharedIndexInformer.SetTransform) replaces the
// decoded API object with an *entry: the object's namespace, name and
// resourceVersion plus the zone object the Sink receives. The informer's
// cache therefore holds nothing but DNS data, the handlers do no conversion,
// and the zone object in the cache is the very one handed to the Sink (both
// treat it as immutable), so each object is held in memory once.
//
// Why this is safe with client-go v0.34 (tools/cache):
//
//   - The transform runs in the FIFO before the object reaches the indexer or
//     any handler; keys are computed with MetaNamespaceKeyFunc, which goes
//     through meta.Accessor, which accepts a metav1.ObjectMetaAccessor. entry
//     is one (GetObjectMeta), so keys are "namespace/name" as before.
//   - The resourceVersion must be kept: sharedIndexInformer.OnUpdate treats an
//     update whose old and new resourceVersion are equal as a resync and hides
//     it from handlers that did not ask for resyncs.
//   - The transform must be idempotent. client-go does not call it on
//     tombstones or on resyncs, but with the WatchListClient feature the
//     reflector stores transformed objects in a temporary store and then
//     passes them to the FIFO's Replace, which transforms them again. An
//     *entry given to the transform is returned as it is.
//   - Tombstones (cache.DeletedFinalStateUnknown) carry the last cached
//     object, i.e. an *entry; OnDelete unwraps them and falls back to the
//     tombstone's key for anything else.
//   - The reflector checks watch events against the informer's example type
//     and reads resourceVersions from the raw event before the transform, so
//     it never sees an entry. Nothing may use typed listers on these
//     informers (they would fail their type assertion); this package does
//     not expose the informers.
//   - entry also implements runtime.Object (DeepCopyObject copies the header
//     and shares the immutable zone object), for client-go's debug
//     detectors (KUBE_CACHE_MUTATION_DETECTOR) that expect one.
type entry[T any] struct {
	namespace, name, resourceVersion string
	obj                              T
}

// GetObjectMeta makes entry a metav1.ObjectMetaAccessor for client-go's key
// functions and resourceVersion comparison.
func (e *entry[T]) GetObjectMeta() metav1.Object {
	return &metav1.ObjectMeta{Namespace: e.namespace, Name: e.name, ResourceVersion: e.resourceVersion}
}

// GetObjectKind implements runtime.Object.
func (e *entry[T]) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }

// DeepCopyObject implements runtime.Object; the zone object is immutable and
// shared.
func (e *entry[T]) DeepCopyObject() runtime.Object {
	c := *e
	return &c
}

// transform returns the TransformFunc that turns an O (a typed API object)
// into an *entry[T] with slim. See the comment on entry.
func transform[O metav1.Object, T any](slim func(O) T) cache.TransformFunc {
	return func(obj any) (any, error) {
		switch o := obj.(type) {
		case *entry[T]:
			return o, nil // already transformed; see "idempotent" above
		case O:
			var zero O
			if any(o) == any(zero) { // typed nil pointer
				return nil, fmt.Errorf("kube: transform: nil %T", obj)
			}
			return &entry[T]{
				namespace:       o.GetNamespace(),
				name:            o.GetName(),
				resourceVersion: o.GetResourceVersion(),
				obj:             slim(o),
			}, nil
		}
		return nil, fmt.Errorf("kube: transform: unexpected object type %T", obj)
	}
}

// rv is the resourceVersion the entry was made from.
func (e *entry[T]) rv() string { return e.resourceVersion }

// keepUnchanged wraps an informer's transform: an API object whose
// resourceVersion is that of the entry already cached under its key gets
// that entry back instead of a new slim copy. A relist (after an API server
// restart or a watch that fell behind) brings every object again, nearly
// all unchanged: without this the informer would briefly hold two slim
// copies of everything, and then the handlers would compare them one by one
// (issue #8 measures the relist peak). The resourceVersion changes with
// every write of an object, so equal versions mean equal objects.
//
// The store is the informer's own thread-safe indexer; client-go calls the
// transform from the reflector's goroutine without holding that store's
// lock.
func keepUnchanged(tf cache.TransformFunc, store cache.Store) cache.TransformFunc {
	return func(obj any) (any, error) {
		if o, ok := obj.(metav1.Object); ok && o.GetResourceVersion() != "" {
			key := o.GetName()
			if ns := o.GetNamespace(); ns != "" {
				key = ns + "/" + key
			}
			if old, ok, _ := store.GetByKey(key); ok {
				if e, ok := old.(interface{ rv() string }); ok && e.rv() == o.GetResourceVersion() {
					return old, nil
				}
			}
		}
		return tf(obj)
	}
}

// handler forwards one informer's events to the Sink. It implements
// cache.ResourceEventHandler; client-go calls it from one goroutine per
// informer.
type handler[T any] struct {
	kind   string
	set    func(*entry[T])
	delete func(namespace, name string)
	// equal reports whether an update changed nothing the zone uses.
	equal func(a, b T) bool
	log   *slog.Logger
}

func (h *handler[T]) OnAdd(obj any, _ bool) {
	e, ok := obj.(*entry[T])
	if !ok {
		h.log.Warn("kube: ignoring unexpected object", "kind", h.kind, "type", fmt.Sprintf("%T", obj))
		return
	}
	h.set(e)
}

func (h *handler[T]) OnUpdate(oldObj, newObj any) {
	n, ok := newObj.(*entry[T])
	if !ok {
		h.log.Warn("kube: ignoring unexpected object", "kind", h.kind, "type", fmt.Sprintf("%T", newObj))
		return
	}
	if o, ok := oldObj.(*entry[T]); ok && h.equal(o.obj, n.obj) {
		return
	}
	h.set(n)
}

func (h *handler[T]) OnDelete(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		// The watch missed the deletion and a relist found the object gone.
		if e, ok := t.Obj.(*entry[T]); ok {
			h.delete(e.namespace, e.name)
			return
		}
		ns, name, err := cache.SplitMetaNamespaceKey(t.Key)
		if err != nil || name == "" {
			h.log.Warn("kube: ignoring tombstone with a bad key", "kind", h.kind, "key", t.Key)
			return
		}
		h.delete(ns, name)
		return
	}
	e, ok := obj.(*entry[T])
	if !ok {
		h.log.Warn("kube: ignoring unexpected object", "kind", h.kind, "type", fmt.Sprintf("%T", obj))
		return
	}
	h.delete(e.namespace, e.name)
}
