package kube

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
)

// Client lists and watches what the Watcher reads. NewClient makes one for
// an API server.
type Client interface {
	// ListWatch returns the list and watch calls of resource
	// ("namespaces", "services", "endpointslices", "pods") in every
	// namespace; ok is false for any other resource.
	ListWatch(resource string) (list ListFunc, watch WatchFunc, ok bool)
}

// ListFunc lists a resource; WatchFunc watches it.
type (
	ListFunc  func(context.Context, metav1.ListOptions) (runtime.Object, error)
	WatchFunc func(context.Context, metav1.ListOptions) (watch.Interface, error)
)

// NewClient returns a Client for the API server of cfg (see RESTConfig).
//
// It is two REST clients, core/v1 and discovery.k8s.io/v1, with a scheme
// of those two groups only, rather than client-go's clientset: the
// clientset registers every API group of Kubernetes at start-up, and its
// code and type data alone took 14 MiB of resident memory on every node
// (issue #8).
func NewClient(cfg *rest.Config) (Client, error) {
	core, err := restClient(cfg, corev1.SchemeGroupVersion, "/api")
	if err != nil {
		return nil, fmt.Errorf("core/v1 client: %w", err)
	}
	disc, err := restClient(cfg, discoveryv1.SchemeGroupVersion, "/apis")
	if err != nil {
		return nil, fmt.Errorf("discovery/v1 client: %w", err)
	}
	return &restAPI{core: core, discovery: disc}, nil
}

type codecs struct {
	factory serializer.CodecFactory
	params  runtime.ParameterCodec
}

// schemeCodecs is built on first use, not in init: a program that never
// talks to the API server pays nothing.
var schemeCodecs = sync.OnceValue(func() codecs {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, discoveryv1.AddToScheme} {
		if err := add(s); err != nil {
			panic(fmt.Sprintf("kube: scheme: %v", err)) // a programming error
		}
	}
	return codecs{factory: serializer.NewCodecFactory(s), params: runtime.NewParameterCodec(s)}
})

func restClient(cfg *rest.Config, gv schema.GroupVersion, apiPath string) (*rest.RESTClient, error) {
	c := rest.CopyConfig(cfg)
	c.GroupVersion = &gv
	c.APIPath = apiPath
	c.NegotiatedSerializer = schemeCodecs().factory.WithoutConversion()
	if c.UserAgent == "" {
		c.UserAgent = rest.DefaultKubernetesUserAgent()
	}
	return rest.RESTClientFor(c)
}

type restAPI struct {
	core, discovery *rest.RESTClient
}

func (a *restAPI) ListWatch(resource string) (ListFunc, WatchFunc, bool) {
	switch resource {
	case "namespaces":
		return listOf(a.core, resource, func() runtime.Object { return &corev1.NamespaceList{} }), watchOf(a.core, resource), true
	case "services":
		return listOf(a.core, resource, func() runtime.Object { return &corev1.ServiceList{} }), watchOf(a.core, resource), true
	case "pods":
		return listOf(a.core, resource, func() runtime.Object { return &corev1.PodList{} }), watchOf(a.core, resource), true
	case "endpointslices":
		return listOf(a.discovery, resource, func() runtime.Object { return &discoveryv1.EndpointSliceList{} }), watchOf(a.discovery, resource), true
	}
	return nil, nil, false
}

// timeout is the request timeout the typed clients derive from
// TimeoutSeconds.
func timeout(o *metav1.ListOptions) time.Duration {
	if o.TimeoutSeconds != nil {
		return time.Duration(*o.TimeoutSeconds) * time.Second
	}
	return 0
}

func listOf(c *rest.RESTClient, resource string, newList func() runtime.Object) ListFunc {
	return func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
		out := newList()
		err := c.Get().Resource(resource).VersionedParams(&o, schemeCodecs().params).Timeout(timeout(&o)).Do(ctx).Into(out)
		if err != nil {
			return nil, err
		}
		return out, nil
	}
}

func watchOf(c *rest.RESTClient, resource string) WatchFunc {
	return func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
		o.Watch = true
		return c.Get().Resource(resource).VersionedParams(&o, schemeCodecs().params).Timeout(timeout(&o)).Watch(ctx)
	}
}
