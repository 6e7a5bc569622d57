package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"

	"github.com/nodedns/nodedns/internal/dnstest"
	"github.com/nodedns/nodedns/test/e2e/kubeenv"
)

// One API server for the tests that only add objects (each in its own
// namespace); tests that stop the API server start their own.
var (
	sharedOnce sync.Once
	shared     *kubeenv.Env
	sharedErr  error
	sharedDir  string
)

func sharedEnv(t testing.TB) *kubeenv.Env {
	t.Helper()
	if os.Getenv("NODEDNS_SKIP_E2E") == "1" {
		t.Skip("NODEDNS_SKIP_E2E=1")
	}
	sharedOnce.Do(func() {
		sharedDir, sharedErr = os.MkdirTemp("", "nodedns-e2e-env-")
		if sharedErr == nil {
			shared, sharedErr = kubeenv.Start(context.Background(), sharedDir)
		}
	})
	if sharedErr != nil {
		t.Fatalf("starting kube-apiserver + etcd: %v", sharedErr)
	}
	return shared
}

func stopSharedEnv() {
	if shared != nil {
		shared.Stop()
	}
	if sharedDir != "" {
		os.RemoveAll(sharedDir)
	}
}

var nsCounter atomic.Int32

// newNamespace creates a fresh namespace named after the test.
func newNamespace(t testing.TB, env *kubeenv.Env) string {
	t.Helper()
	name := fmt.Sprintf("e2e-%d-%d", os.Getpid()%10000, nsCounter.Add(1))
	_, err := env.Admin.CoreV1().Namespaces().Create(context.Background(),
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating namespace %s: %v", name, err)
	}
	t.Cleanup(func() { emptyNamespace(t, env, name) })
	return name
}

// emptyNamespace deletes what a test made in namespace ns. The test API
// server has no namespace controller to do it: left behind, a test's
// objects would answer in the next run of it (go test -count) too, e.g.
// as a second PTR for the same endpoint IP.
func emptyNamespace(t testing.TB, env *kubeenv.Env, ns string) {
	ctx, c := context.Background(), env.Admin
	errs := []error{
		c.DiscoveryV1().EndpointSlices(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}),
		// No kubelet confirms a graceful delete here.
		c.CoreV1().Pods(ns).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: new(int64)}, metav1.ListOptions{}),
	}
	svcs, err := c.CoreV1().Services(ns).List(ctx, metav1.ListOptions{})
	errs = append(errs, err)
	if err == nil {
		for _, s := range svcs.Items {
			errs = append(errs, c.CoreV1().Services(ns).Delete(ctx, s.Name, metav1.DeleteOptions{}))
		}
	}
	if err := errors.Join(errs...); err != nil {
		t.Errorf("emptying namespace %s: %v", ns, err)
	}
}

// upstreamServer starts a loopback authoritative server that plays the
// node's upstream resolver.
func upstreamServer(t testing.TB) *dnstest.Server {
	return dnstest.Start(t, "127.0.0.1:0", dnstest.WithZone("example.com."), dnstest.WithRecords(
		"api.example.com. 60 IN A 192.0.2.10",
		"api.example.com. 60 IN AAAA 2001:db8::10",
		"www.example.com. 60 IN CNAME api.example.com.",
	))
}

func createService(t testing.TB, env *kubeenv.Env, svc *corev1.Service) *corev1.Service {
	t.Helper()
	got, err := env.Admin.CoreV1().Services(svc.Namespace).Create(context.Background(), svc, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating service %s/%s: %v", svc.Namespace, svc.Name, err)
	}
	return got
}

func createSlice(t testing.TB, env *kubeenv.Env, es *discoveryv1.EndpointSlice) *discoveryv1.EndpointSlice {
	t.Helper()
	got, err := env.Admin.DiscoveryV1().EndpointSlices(es.Namespace).Create(context.Background(), es, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating endpointslice %s/%s: %v", es.Namespace, es.Name, err)
	}
	return got
}

// slice builds an IPv4 EndpointSlice of service svc, written by hand as
// no controller runs here.
func slice(ns, name, svc string, ports []discoveryv1.EndpointPort, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{
			discoveryv1.LabelServiceName: svc,
			discoveryv1.LabelManagedBy:   "nodedns-e2e",
		}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       ports,
		Endpoints:   eps,
	}
}

func endpoint(ip string, ready bool, hostname, pod string) discoveryv1.Endpoint {
	ep := discoveryv1.Endpoint{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(ready)}}
	if hostname != "" {
		ep.Hostname = ptr.To(hostname)
	}
	if pod != "" {
		ep.TargetRef = &corev1.ObjectReference{Kind: "Pod", Name: pod}
	}
	return ep
}

func port(name string, proto corev1.Protocol, p int32) discoveryv1.EndpointPort {
	return discoveryv1.EndpointPort{Name: ptr.To(name), Protocol: ptr.To(proto), Port: ptr.To(p)}
}

// writeKubeconfigTo copies kubeconfig with its server replaced, to point
// the daemon at an API server that is not there.
func writeKubeconfigTo(t testing.TB, kubeconfig, server string) string {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cfg.Clusters {
		c.Server = server
	}
	out := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, out); err != nil {
		t.Fatal(err)
	}
	return out
}
