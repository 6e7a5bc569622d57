package gen

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// LoadClient returns a client for Load and the Churner: protobuf, and a
// client-side rate limit far above what the workers can reach, so the API
// server, not client-go, sets the pace.
func LoadClient(cfg *rest.Config) (kubernetes.Interface, error) {
	c := rest.CopyConfig(cfg)
	c.QPS, c.Burst = 5000, 10000
	c.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	c.ContentType = "application/vnd.kubernetes.protobuf"
	return kubernetes.NewForConfig(c)
}

// Load creates the namespaces, then the Services, then the EndpointSlices
// with workers concurrent requests (8 if workers < 1). Objects that exist
// already are left as they are. It returns the slices as stored, with their
// resourceVersions, for a Churner. progress, if not nil, is called now and
// then with the number of objects written so far and the total.
func Load(ctx context.Context, c kubernetes.Interface, o Objects, workers int, progress func(done, total int)) ([]*discoveryv1.EndpointSlice, error) {
	if workers < 1 {
		workers = 8
	}
	total := len(o.Namespaces) + len(o.Services) + len(o.Slices)
	var done atomic.Int64
	step := func() {
		if n := done.Add(1); progress != nil && (n%1000 == 0 || int(n) == total) {
			progress(int(n), total)
		}
	}
	err := parallel(ctx, workers, len(o.Namespaces), func(i int) error {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: o.Namespaces[i]}}
		if _, err := c.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create namespace %s: %w", ns.Name, err)
		}
		step()
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = parallel(ctx, workers, len(o.Services), func(i int) error {
		s := o.Services[i]
		if _, err := c.CoreV1().Services(s.Namespace).Create(ctx, s, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create service %s/%s: %w", s.Namespace, s.Name, err)
		}
		step()
		return nil
	})
	if err != nil {
		return nil, err
	}
	stored := make([]*discoveryv1.EndpointSlice, len(o.Slices))
	err = parallel(ctx, workers, len(o.Slices), func(i int) error {
		es := o.Slices[i]
		got, err := c.DiscoveryV1().EndpointSlices(es.Namespace).Create(ctx, es, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			got, err = c.DiscoveryV1().EndpointSlices(es.Namespace).Get(ctx, es.Name, metav1.GetOptions{})
		}
		if err != nil {
			return fmt.Errorf("create endpointslice %s/%s: %w", es.Namespace, es.Name, err)
		}
		stored[i] = got
		step()
		return nil
	})
	if err != nil {
		return nil, err
	}
	return stored, nil
}

// Stored returns the slices of o as the API server holds them, in o's
// order, when every Service and slice of o is there already (etcd data
// kept from an earlier run: loading 10k/10 takes minutes); nil when not.
// It moves o.NextPodIP past every address in use, since churn changed
// them.
func Stored(ctx context.Context, c kubernetes.Interface, o *Objects) ([]*discoveryv1.EndpointSlice, error) {
	sel := metav1.ListOptions{LabelSelector: discoveryv1.LabelManagedBy + "=" + ManagedBy}
	svcs, err := c.CoreV1().Services("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	if len(svcs.Items) < len(o.Services) {
		return nil, nil
	}
	list, err := c.DiscoveryV1().EndpointSlices("").List(ctx, sel)
	if err != nil {
		return nil, err
	}
	byName := make(map[string]*discoveryv1.EndpointSlice, len(list.Items))
	for i := range list.Items {
		es := &list.Items[i]
		byName[es.Namespace+"/"+es.Name] = es
	}
	if len(byName) != len(o.Slices) {
		return nil, nil
	}
	stored := make([]*discoveryv1.EndpointSlice, len(o.Slices))
	for i, es := range o.Slices {
		if stored[i] = byName[es.Namespace+"/"+es.Name]; stored[i] == nil {
			return nil, nil
		}
		for _, ep := range stored[i].Endpoints {
			for _, a := range ep.Addresses {
				if n, ok := o.podIndex(a); ok && n >= o.NextPodIP {
					o.NextPodIP = n + 1
				}
			}
		}
	}
	return stored, nil
}

// parallel runs fn(0) … fn(n-1) on workers goroutines and returns the first
// error; after an error no new call starts.
func parallel(ctx context.Context, workers, n int, fn func(int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(workers, n) {
		wg.Go(func() {
			for i := range next {
				if err := fn(i); err != nil {
					cancel(err)
				}
			}
		})
	}
feed:
	for i := range n {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	return context.Cause(ctx)
}
