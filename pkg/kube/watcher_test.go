package kube

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"

	"github.com/nodedns/nodedns/pkg/zone"
)

func service(ns, name, clusterIP string, ports ...corev1.ServicePort) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, ResourceVersion: "1",
			Annotations:   map[string]string{"kubectl.kubernetes.io/last-applied-configuration": strings.Repeat("x", 4096)},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}},
		Spec: corev1.ServiceSpec{ClusterIP: clusterIP, ClusterIPs: []string{clusterIP}, Ports: ports,
			Selector: map[string]string{"app": name}},
	}
}

func pod(ns, name, node, ip string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, ResourceVersion: "1",
			Labels: map[string]string{"app": "nginx"}},
		Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c", Image: "nginx"}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}},
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}},
	}
}

func endpointSlice(ns, name, svc string, ready bool, ips ...string) *discoveryv1.EndpointSlice {
	es := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, ResourceVersion: "1",
			Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptrTo("http"), Port: ptrTo[int32](80), Protocol: ptrTo(corev1.ProtocolTCP)}},
	}
	for _, ip := range ips {
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{ip},
			Conditions: discoveryv1.EndpointConditions{Ready: ptrTo(ready)},
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Name: "pod-" + ip},
		})
	}
	return es
}

// watchSignal makes the fake clientset report each watch it opens, so that
// a test creates objects only once the informer can see the event (the fake
// has no resourceVersions to replay from).
func watchSignal(c *fake.Clientset) <-chan string {
	ch := make(chan string, 64)
	c.PrependWatchReactor("*", func(a k8stesting.Action) (bool, watch.Interface, error) {
		var opts metav1.ListOptions
		if wa, ok := a.(k8stesting.WatchActionImpl); ok {
			opts = wa.ListOptions
		}
		w, err := c.Tracker().Watch(a.GetResource(), a.GetNamespace(), opts)
		if err != nil {
			return false, nil, err
		}
		select {
		case ch <- a.GetResource().Resource:
		default:
		}
		return true, w, nil
	})
	return ch
}

func waitWatches(t *testing.T, ch <-chan string, resources ...string) {
	t.Helper()
	want := map[string]bool{}
	for _, r := range resources {
		want[r] = true
	}
	deadline := time.After(10 * time.Second)
	for len(want) > 0 {
		select {
		case r := <-ch:
			delete(want, r)
		case <-deadline:
			t.Fatalf("watches not opened: %v", want)
		}
	}
}

func waitSynced(t *testing.T, w *Watcher) {
	t.Helper()
	select {
	case <-w.Synced():
	case <-time.After(10 * time.Second):
		t.Fatal("watcher did not sync")
	}
}

// start runs w until the test ends.
func start(t *testing.T, w *Watcher) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		w.Wait()
	})
}

func TestWatcherSyncAndEvents(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset(
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "default", ResourceVersion: "1"}},
		service("default", "web", "10.96.0.50", corev1.ServicePort{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}),
		endpointSlice("default", "web-abc", "web", true, "10.244.1.5"),
		pod("default", "nginx-1", "node-a", "10.244.1.68"),
	)
	watches := watchSignal(client)
	sink := newRecordingSink()
	w, err := New(Config{Client: fromClientset(client), PodScope: PodsAll, Logger: discardLogger()}, sink)
	if err != nil {
		t.Fatal(err)
	}
	if w.HasSynced() {
		t.Fatal("synced before start")
	}
	start(t, w)
	waitSynced(t, w)
	if !w.HasSynced() {
		t.Fatal("HasSynced false after Synced closed")
	}

	// The initial list reached the sink, converted, before SetSynced.
	calls := sink.snapshot()
	if calls[len(calls)-1] != "SetSynced" {
		t.Errorf("SetSynced is not the last call: %q", calls)
	}
	for _, c := range []string{"SetNamespace default", "SetService default/web", "SetEndpointSlice default/web-abc", "SetPod default/nginx-1"} {
		if !strings.Contains(strings.Join(calls, "\n"), c) {
			t.Errorf("initial list: missing %q in %q", c, calls)
		}
	}
	sink.mu.Lock()
	gotSvc, gotES, gotPod := sink.services["default/web"], sink.slices["default/web-abc"], sink.pods["default/nginx-1"]
	sink.mu.Unlock()
	wantSvc := &zone.Service{Namespace: "default", Name: "web", ClusterIPs: addrs("10.96.0.50"),
		Ports: []zone.Port{{Name: "http", Protocol: "TCP", Port: 80}}}
	if !reflect.DeepEqual(gotSvc, wantSvc) {
		t.Errorf("service: got %+v want %+v", gotSvc, wantSvc)
	}
	wantES := &zone.EndpointSlice{Namespace: "default", Name: "web-abc", ServiceName: "web", AddressType: "IPv4",
		Ports:     []zone.Port{{Name: "http", Protocol: "TCP", Port: 80}},
		Endpoints: []zone.Endpoint{{Addresses: addrs("10.244.1.5"), Ready: true, PodName: "pod-10.244.1.5"}}}
	if !reflect.DeepEqual(gotES, wantES) {
		t.Errorf("slice: got %+v want %+v", gotES, wantES)
	}
	if want := (&zone.Pod{Namespace: "default", Name: "nginx-1", IPs: addrs("10.244.1.68")}); !reflect.DeepEqual(gotPod, want) {
		t.Errorf("pod: got %+v want %+v", gotPod, want)
	}

	// The caches hold entries, not API objects.
	for _, i := range w.informers {
		for _, o := range i.inf.GetStore().List() {
			switch o.(type) {
			case *entry[struct{}], *entry[*zone.Service], *entry[*zone.EndpointSlice], *entry[*zone.Pod]:
			default:
				t.Errorf("%s cache holds %T", i.resource, o)
			}
		}
	}
	if o, ok, _ := w.informers[1].inf.GetStore().GetByKey("default/web"); !ok || o.(*entry[*zone.Service]).obj != gotSvc {
		t.Errorf("services cache: got %v %v; want the entry whose zone object the sink received", o, ok)
	}

	waitWatches(t, watches, "namespaces", "services", "endpointslices", "pods")

	// Create.
	if _, err := client.CoreV1().Services("prod").Create(ctx, service("prod", "data", "10.96.0.70"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	sink.waitFor(t, "service prod/data", func() bool { return sink.services["prod/data"] != nil })

	// Update with a DNS change.
	svc := service("default", "web", "10.96.0.50",
		corev1.ServicePort{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP},
		corev1.ServicePort{Name: "https", Port: 443, Protocol: corev1.ProtocolTCP})
	svc.ResourceVersion = "2"
	if _, err := client.CoreV1().Services("default").Update(ctx, svc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	sink.waitFor(t, "web with two ports", func() bool { return len(sink.services["default/web"].Ports) == 2 })

	// An update that changes nothing DNS sees (a pod condition) is not
	// forwarded; the next one (a new IP) is. Events of one informer are
	// handled in order, so when the second has arrived the first has been
	// handled.
	p := pod("default", "nginx-1", "node-a", "10.244.1.68")
	p.ResourceVersion = "2"
	p.Status.Conditions[0].Status = corev1.ConditionFalse
	if _, err := client.CoreV1().Pods("default").UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	p = pod("default", "nginx-1", "node-a", "10.244.1.99")
	p.ResourceVersion = "3"
	if _, err := client.CoreV1().Pods("default").UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	sink.waitFor(t, "pod with new IP", func() bool {
		return reflect.DeepEqual(sink.pods["default/nginx-1"].IPs, addrs("10.244.1.99"))
	})
	if n := sink.count("SetPod default/nginx-1"); n != 2 {
		t.Errorf("SetPod default/nginx-1 called %d times, want 2 (initial list + IP change)", n)
	}

	// Delete.
	if err := client.DiscoveryV1().EndpointSlices("default").Delete(ctx, "web-abc", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := client.CoreV1().Namespaces().Delete(ctx, "default", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := client.CoreV1().Pods("default").Delete(ctx, "nginx-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	sink.waitFor(t, "deletes", func() bool {
		return sink.slices["default/web-abc"] == nil && !sink.ns["default"] && sink.pods["default/nginx-1"] == nil
	})

	if n := sink.count("SetSynced"); n != 1 {
		t.Errorf("SetSynced called %d times, want 1", n)
	}
	if err := w.Start(context.Background()); err == nil {
		t.Error("second Start did not fail")
	}
}

func TestWatcherPodScope(t *testing.T) {
	objs := []runtime.Object{pod("default", "here", "node-a", "10.244.1.1"), pod("default", "there", "node-b", "10.244.2.1")}

	t.Run("node", func(t *testing.T) {
		client := fake.NewClientset(objs...)
		opened := watchSignal(client)
		sink := newRecordingSink()
		w, err := New(Config{Client: fromClientset(client), PodScope: PodsNode, NodeName: "node-a", Logger: discardLogger()}, sink)
		if err != nil {
			t.Fatal(err)
		}
		start(t, w)
		waitSynced(t, w)
		waitWatches(t, opened, "pods")
		// The fake clientset ignores field selectors (it filters on labels
		// only), so both pods reach the sink here; what can be checked is
		// that list and watch ask the API server for this node's pods.
		var lists, watches int
		for _, a := range client.Actions() {
			if a.GetResource().Resource != "pods" {
				continue
			}
			switch a := a.(type) {
			case k8stesting.ListActionImpl:
				lists++
				if got := a.GetListRestrictions().Fields.String(); got != "spec.nodeName=node-a" {
					t.Errorf("pods list field selector %q", got)
				}
			case k8stesting.WatchActionImpl:
				watches++
				if got := a.GetWatchRestrictions().Fields.String(); got != "spec.nodeName=node-a" {
					t.Errorf("pods watch field selector %q", got)
				}
			}
		}
		if lists == 0 || watches == 0 {
			t.Errorf("pods listed %d times, watched %d times", lists, watches)
		}
	})

	t.Run("all", func(t *testing.T) {
		client := fake.NewClientset(objs...)
		sink := newRecordingSink()
		w, err := New(Config{Client: fromClientset(client), PodScope: PodsAll, Logger: discardLogger()}, sink)
		if err != nil {
			t.Fatal(err)
		}
		start(t, w)
		waitSynced(t, w)
		for _, a := range client.Actions() {
			if la, ok := a.(k8stesting.ListActionImpl); ok && a.GetResource().Resource == "pods" {
				if !la.GetListRestrictions().Fields.Empty() {
					t.Errorf("all pods listed with field selector %q", la.GetListRestrictions().Fields)
				}
			}
		}
		if sink.count("SetPod default/here") != 1 || sink.count("SetPod default/there") != 1 {
			t.Errorf("calls %q", sink.snapshot())
		}
	})

	t.Run("none", func(t *testing.T) {
		client := fake.NewClientset(objs...)
		sink := newRecordingSink()
		w, err := New(Config{Client: fromClientset(client), Logger: discardLogger()}, sink)
		if err != nil {
			t.Fatal(err)
		}
		start(t, w)
		waitSynced(t, w)
		for _, a := range client.Actions() {
			if a.GetResource().Resource == "pods" {
				t.Errorf("pods requested with PodsNone: %v", a)
			}
		}
	})
}

// After a failed list the reflector retries by itself; the failure is
// counted, reported to the hook, and the watcher syncs once the retry works.
func TestWatcherListFailureRetries(t *testing.T) {
	client := fake.NewClientset(service("default", "web", "10.96.0.50"))
	var failed atomic.Bool
	client.PrependReactor("list", "services", func(k8stesting.Action) (bool, runtime.Object, error) {
		if failed.CompareAndSwap(false, true) {
			return true, nil, apierrors.NewServiceUnavailable("api server down")
		}
		return false, nil, nil
	})
	var mu sync.Mutex
	var hooked []string
	sink := newRecordingSink()
	w, err := New(Config{Client: fromClientset(client), Logger: discardLogger(), OnWatchError: func(resource string, err error) {
		mu.Lock()
		hooked = append(hooked, resource+": "+err.Error())
		mu.Unlock()
	}}, sink)
	if err != nil {
		t.Fatal(err)
	}
	start(t, w)
	waitSynced(t, w)
	if w.WatchErrors() < 1 {
		t.Errorf("WatchErrors = %d, want >= 1", w.WatchErrors())
	}
	mu.Lock()
	defer mu.Unlock()
	if len(hooked) == 0 || !strings.HasPrefix(hooked[0], "services: ") || !strings.Contains(hooked[0], "api server down") {
		t.Errorf("OnWatchError calls %q", hooked)
	}
	if sink.count("SetService default/web") != 1 || sink.count("SetSynced") != 1 {
		t.Errorf("calls %q", sink.snapshot())
	}
}

func TestWatchErrorLogIsRateLimited(t *testing.T) {
	now := time.Unix(1000, 0)
	logs := &logRecorder{}
	var hook atomic.Int64
	w, err := New(Config{
		Client:       fromClientset(fake.NewClientset()),
		Logger:       slog.New(logs),
		Now:          func() time.Time { return now },
		OnWatchError: func(string, error) { hook.Add(1) },
	}, newRecordingSink())
	if err != nil {
		t.Fatal(err)
	}
	boom := errors.New("connection refused")
	for range 5 {
		w.watchError("services", boom)
	}
	w.watchError("pods", boom)
	w.watchError("services", io.EOF)
	w.watchError("services", apierrors.NewResourceExpired("too old"))
	if n, _ := logs.count(slog.LevelWarn, "suppressed"); n != 2 {
		t.Errorf("%d warnings, want 2 (one per resource)", n)
	}
	if n, _ := logs.count(slog.LevelDebug, ""); n != 2 {
		t.Errorf("%d debug lines for EOF/expired, want 2", n)
	}
	now = now.Add(watchErrorLogEvery)
	w.watchError("services", boom)
	n, suppressed := logs.count(slog.LevelWarn, "suppressed")
	if n != 3 || suppressed != "4" {
		t.Errorf("after the interval: %d warnings, suppressed=%s; want 3 and 4", n, suppressed)
	}
	if w.WatchErrors() != 9 || hook.Load() != 9 {
		t.Errorf("WatchErrors %d, hook %d; want 9", w.WatchErrors(), hook.Load())
	}
}

func TestTransform(t *testing.T) {
	tf := transform(SlimService)
	svc := service("default", "web", "10.96.0.50")
	svc.ResourceVersion = "42"
	out, err := tf(svc)
	if err != nil {
		t.Fatal(err)
	}
	e, ok := out.(*entry[*zone.Service])
	if !ok {
		t.Fatalf("transform gave %T", out)
	}
	if e.namespace != "default" || e.name != "web" || e.resourceVersion != "42" || e.obj.Name != "web" {
		t.Errorf("entry %+v", e)
	}
	// Idempotent: an entry passes through unchanged.
	again, err := tf(e)
	if err != nil || again != any(e) {
		t.Errorf("transform(entry) = %v, %v; want the same entry", again, err)
	}
	// What client-go does with it: keys, resourceVersion, runtime.Object.
	for _, kf := range []cache.KeyFunc{cache.MetaNamespaceKeyFunc, cache.DeletionHandlingMetaNamespaceKeyFunc} {
		if k, err := kf(e); err != nil || k != "default/web" {
			t.Errorf("key %q, %v", k, err)
		}
	}
	if m, err := meta.Accessor(e); err != nil || m.GetResourceVersion() != "42" {
		t.Errorf("accessor: %v %v", m, err)
	}
	var ro runtime.Object = e
	if c := ro.DeepCopyObject().(*entry[*zone.Service]); c == e || *c != *e {
		t.Errorf("DeepCopyObject gave %p %+v", c, c)
	}
	if ro.GetObjectKind().GroupVersionKind() != (schema.GroupVersionKind{}) {
		t.Error("unexpected GVK")
	}
	nsOut, err := transform(func(*corev1.Namespace) struct{} { return struct{}{} })(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "prod"}})
	if k, _ := cache.MetaNamespaceKeyFunc(nsOut); err != nil || k != "prod" {
		t.Errorf("namespace key %q, %v", k, err)
	}

	// The WatchListClient path: the reflector fills a transforming
	// temporary store, then hands its (already transformed) items to
	// Replace on the informer's transforming queue.
	tmp := cache.NewStore(cache.DeletionHandlingMetaNamespaceKeyFunc, cache.WithTransformer(tf))
	if err := tmp.Add(service("default", "api", "10.96.0.9")); err != nil {
		t.Fatal(err)
	}
	fifo := cache.NewRealFIFO(cache.MetaNamespaceKeyFunc, cache.NewStore(cache.MetaNamespaceKeyFunc), tf)
	if err := fifo.Replace(tmp.List(), "1"); err != nil {
		t.Fatalf("Replace with transformed items: %v", err)
	}
	if items := tmp.List(); len(items) != 1 || items[0].(*entry[*zone.Service]).obj.Name != "api" {
		t.Errorf("temporary store holds %v", items)
	}

	// Odd input: errors, no panic.
	if _, err := tf((*corev1.Service)(nil)); err == nil {
		t.Error("nil *Service: no error")
	}
	if _, err := tf(&corev1.Pod{}); err == nil {
		t.Error("wrong type: no error")
	}
	if _, err := tf(nil); err == nil {
		t.Error("nil: no error")
	}
}

func TestHandlerDeletesAndOddObjects(t *testing.T) {
	var deleted, set []string
	h := &handler[*zone.Service]{
		kind:   "Service",
		set:    func(e *entry[*zone.Service]) { set = append(set, e.namespace+"/"+e.name) },
		delete: func(ns, name string) { deleted = append(deleted, ns+"/"+name) },
		equal:  serviceEqual,
		log:    discardLogger(),
	}
	e := &entry[*zone.Service]{namespace: "a", name: "one", obj: &zone.Service{Namespace: "a", Name: "one"}}
	h.OnDelete(e)
	h.OnDelete(cache.DeletedFinalStateUnknown{Key: "a/two", Obj: &entry[*zone.Service]{namespace: "a", name: "two"}})
	h.OnDelete(cache.DeletedFinalStateUnknown{Key: "a/three", Obj: nil})          // by key
	h.OnDelete(cache.DeletedFinalStateUnknown{Key: "a/four", Obj: &corev1.Pod{}}) // by key
	h.OnDelete(cache.DeletedFinalStateUnknown{Key: "a/b/c"})                      // bad key: ignored
	h.OnDelete(cache.DeletedFinalStateUnknown{})                                  // no key: ignored
	h.OnDelete(&corev1.Service{})                                                 // not an entry: ignored
	h.OnDelete(nil)
	if want := []string{"a/one", "a/two", "a/three", "a/four"}; !reflect.DeepEqual(deleted, want) {
		t.Errorf("deleted %q, want %q", deleted, want)
	}

	h.OnAdd(nil, false)
	h.OnAdd(&corev1.Service{}, true)
	h.OnUpdate(nil, nil)
	h.OnUpdate(nil, e)               // old unknown: forwarded
	h.OnUpdate(e, e)                 // unchanged: dropped
	h.OnUpdate(&corev1.Service{}, e) // old not an entry: forwarded
	if want := []string{"a/one", "a/one"}; !reflect.DeepEqual(set, want) {
		t.Errorf("set %q, want %q", set, want)
	}
}

func TestNewValidates(t *testing.T) {
	c := fromClientset(fake.NewClientset())
	s := newRecordingSink()
	for name, tc := range map[string]struct {
		cfg  Config
		sink Sink
	}{
		"nil client":        {Config{}, s},
		"nil sink":          {Config{Client: c}, nil},
		"node without name": {Config{Client: c, PodScope: PodsNode}, s},
		"bad scope":         {Config{Client: c, PodScope: 7}, s},
		"negative resync":   {Config{Client: c, Resync: -time.Second}, s},
	} {
		if _, err := New(tc.cfg, tc.sink); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestRunStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	sink := newRecordingSink()
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{Client: fromClientset(fake.NewClientset()), Logger: discardLogger()}, sink)
	}()
	sink.waitFor(t, "SetSynced", func() bool { return len(sink.calls) > 0 && sink.calls[len(sink.calls)-1] == "SetSynced" })
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

func TestRESTConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kubeconfig")
	kc := `apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {server: "https://10.0.0.1:6443"}
users:
- name: u
  user: {token: abc}
contexts:
- name: x
  context: {cluster: c, user: u}
current-context: x
`
	if err := os.WriteFile(path, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := RESTConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Host != "https://10.0.0.1:6443" || !strings.HasPrefix(cfg.UserAgent, "nodedns/") ||
		cfg.QPS != 5 || cfg.Burst != 10 || cfg.ContentType != "application/vnd.kubernetes.protobuf" {
		t.Errorf("config: host %q UA %q qps %v burst %d ct %q", cfg.Host, cfg.UserAgent, cfg.QPS, cfg.Burst, cfg.ContentType)
	}

	if _, err := RESTConfig(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("missing kubeconfig: no error")
	}
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	t.Setenv("KUBERNETES_SERVICE_PORT", "")
	if _, err := RESTConfig(""); err == nil || !strings.Contains(err.Error(), "in-cluster") {
		t.Errorf("in-cluster outside a cluster: %v", err)
	}
}
