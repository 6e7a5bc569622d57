package kubeenv

import (
	"context"
	"errors"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

func TestMissingBinariesSayHowToBuild(t *testing.T) {
	t.Setenv("KUBE_APISERVER_BIN", filepath.Join(t.TempDir(), "no-such-apiserver"))
	_, err := Start(t.Context(), t.TempDir())
	if !errors.Is(err, ErrBinariesMissing) || !strings.Contains(err.Error(), "hack/testenv.sh build") {
		t.Fatalf("Start with a missing binary: err = %v, want ErrBinariesMissing naming hack/testenv.sh build", err)
	}
}

func TestEnvServesLeastPrivilegeDNSIdentityAcrossRestart(t *testing.T) {
	env := StartForTest(t)
	ctx := t.Context()
	admin := env.Admin

	const ns, svcName = "kubeenv-test", "web"
	if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	svc, err := admin.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: svcName},
		Spec: corev1.ServiceSpec{ // no selector: the slices below are ours
			Ports: []corev1.ServicePort{
				{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(8080)},
				{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP},
			},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create service: %v", err)
	}
	ip, err := netip.ParseAddr(svc.Spec.ClusterIP)
	if err != nil || !netip.MustParsePrefix(ServiceCIDR).Contains(ip) {
		t.Fatalf("service ClusterIP %q not allocated from %s", svc.Spec.ClusterIP, ServiceCIDR)
	}
	wantAddrs := []string{"10.244.1.10", "10.244.2.20"}
	_, err = admin.DiscoveryV1().EndpointSlices(ns).Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name: svcName + "-1",
			Labels: map[string]string{
				discoveryv1.LabelServiceName: svcName,
				discoveryv1.LabelManagedBy:   "nodedns-test",
			},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{
			{Addresses: wantAddrs[:1], Conditions: discoveryv1.EndpointConditions{Ready: new(true)}},
			{Addresses: wantAddrs[1:], Conditions: discoveryv1.EndpointConditions{Ready: new(true)}},
		},
		Ports: []discoveryv1.EndpointPort{{Name: new("http"), Port: new(int32(8080)), Protocol: new(corev1.ProtocolTCP)}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create endpointslice: %v", err)
	}

	// Use the kubeconfig file, as the daemon will.
	cfg, err := clientcmd.BuildConfigFromFlags("", env.DNSKubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	dns, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}

	checkDNSView(ctx, t, dns, ns, svcName, svc.Spec.ClusterIP, wantAddrs)

	_, err = dns.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "not-allowed"},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}},
	}, metav1.CreateOptions{})
	if !apierrors.IsForbidden(err) {
		t.Fatalf("DNS identity creating a Service: err = %v, want Forbidden", err)
	}
	if _, err := dns.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("DNS identity listing Secrets: err = %v, want Forbidden", err)
	}

	// Watch works too: a Service created by the admin shows up.
	list, err := dns.CoreV1().Services(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w, err := dns.CoreV1().Services(ns).Watch(ctx, metav1.ListOptions{ResourceVersion: list.ResourceVersion})
	if err != nil {
		t.Fatalf("DNS identity watching Services: %v", err)
	}
	defer w.Stop()
	if _, err := admin.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "second"},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitWatchAdded(t, w, "second")

	// Restart only the apiserver: same URL, same etcd, same data.
	start := time.Now()
	if err := env.StopAPIServer(); err != nil {
		t.Fatalf("StopAPIServer: %v", err)
	}
	stopped := time.Since(start)
	down, cancel := context.WithTimeout(ctx, 5*time.Second)
	_, err = dns.CoreV1().Namespaces().List(down, metav1.ListOptions{})
	cancel()
	if err == nil {
		t.Fatal("list succeeded with the apiserver stopped")
	}
	start = time.Now()
	if err := env.StartAPIServer(ctx); err != nil {
		t.Fatalf("StartAPIServer: %v", err)
	}
	t.Logf("apiserver stop took %v, restart to ready %v", stopped.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	checkDNSView(ctx, t, dns, ns, svcName, svc.Spec.ClusterIP, wantAddrs)
	if err := env.StartAPIServer(ctx); err == nil {
		t.Error("second StartAPIServer while running succeeded, want error")
	}

	if err := env.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := env.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
}

// checkDNSView asserts what the DNS identity can see: the Service with its
// ClusterIP, its EndpointSlice addresses, the namespace, and pods.
func checkDNSView(ctx context.Context, t *testing.T, dns kubernetes.Interface, ns, svcName, clusterIP string, wantAddrs []string) {
	t.Helper()
	svcs, err := dns.CoreV1().Services("").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatalf("DNS identity listing Services: %v", err)
	}
	found := false
	for _, s := range svcs.Items {
		if s.Namespace == ns && s.Name == svcName {
			found = true
			if s.Spec.ClusterIP != clusterIP {
				t.Errorf("service %s/%s ClusterIP = %s, want %s", ns, svcName, s.Spec.ClusterIP, clusterIP)
			}
		}
	}
	if !found {
		t.Errorf("service %s/%s not in the DNS identity's list", ns, svcName)
	}

	eps, err := dns.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + svcName})
	if err != nil {
		t.Fatalf("DNS identity listing EndpointSlices: %v", err)
	}
	var got []string
	for _, s := range eps.Items {
		for _, ep := range s.Endpoints {
			got = append(got, ep.Addresses...)
		}
	}
	slices.Sort(got)
	if !slices.Equal(got, wantAddrs) {
		t.Errorf("endpoint addresses = %v, want %v", got, wantAddrs)
	}

	nss, err := dns.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatalf("DNS identity listing Namespaces: %v", err)
	}
	if !slices.ContainsFunc(nss.Items, func(n corev1.Namespace) bool { return n.Name == ns }) {
		t.Errorf("namespace %s not in the DNS identity's list", ns)
	}
	if _, err := dns.CoreV1().Pods("").List(ctx, metav1.ListOptions{}); err != nil {
		t.Fatalf("DNS identity listing Pods: %v", err)
	}
}

func waitWatchAdded(t *testing.T, w watch.Interface, name string) {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				t.Fatal("watch closed before the ADDED event")
			}
			if s, isSvc := ev.Object.(*corev1.Service); isSvc && ev.Type == watch.Added && s.Name == name {
				return
			}
		case <-timeout:
			t.Fatalf("no ADDED event for service %s within 30s", name)
		}
	}
}
