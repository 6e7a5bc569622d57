package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nodedns/nodedns/test/e2e/kubeenv"
)

// TestUnreachableAPIServer: with no API server, nodedns starts, is not
// ready, answers SERVFAIL (never a false NXDOMAIN) for cluster names, and
// still forwards everything else.
func TestUnreachableAPIServer(t *testing.T) {
	env := sharedEnv(t)
	// A port nothing listens on: bind and close.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "https://" + l.Addr().String()
	l.Close()
	up := upstreamServer(t)
	d := startDaemon(t, "--kubeconfig", writeKubeconfigTo(t, env.DNSKubeconfig, dead), "--upstream", up.Addr().String())
	d.waitListening(30 * time.Second)

	for _, network := range []string{"udp", "tcp"} {
		for _, name := range []string{"kubernetes.default.svc.cluster.local.", "nothere.svc.cluster.local.", "dns-version.cluster.local."} {
			r, err := d.query(network, name, dns.TypeA)
			if err != nil || r.Rcode != dns.RcodeServerFailure {
				t.Errorf("%s %s before sync: %v %v, want SERVFAIL", network, name, r, err)
			}
		}
		r, err := d.query(network, "api.example.com.", dns.TypeA)
		if err != nil || r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
			t.Errorf("%s forwarding without an API server: %v %v", network, r, err)
		}
	}
	if code, body := d.HTTPStatus("/ready"); code != http.StatusServiceUnavailable {
		t.Errorf("/ready = %d %q, want 503 before sync", code, body)
	}
	if code, body := d.HTTPStatus("/health"); code != http.StatusOK {
		t.Errorf("/health = %d %q, want 200: the process is alive", code, body)
	}
}

// TestAPIServerOutage: the API server goes away; the last zone keeps
// serving; it comes back and a change made after it returned appears.
func TestAPIServerOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("restarts an API server")
	}
	env := kubeenv.StartForTest(t) // its own: this test stops it
	ctx := context.Background()
	ns := newNamespace(t, env)
	createService(t, env, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "db"},
		Spec:       corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone},
	})
	createSlice(t, env, slice(ns, "db-1", "db", nil, endpoint("10.244.9.1", true, "", "")))
	up := upstreamServer(t)
	d := startDaemon(t, "--kubeconfig", env.DNSKubeconfig, "--upstream", up.Addr().String())
	d.WaitReady(30 * time.Second)
	name := "db." + ns + ".svc.cluster.local."
	hasA := func(ip string) bool {
		r, err := d.query("udp", name, dns.TypeA)
		if err != nil || r.Rcode != dns.RcodeSuccess {
			return false
		}
		for _, rr := range r.Answer {
			if a, ok := rr.(*dns.A); ok && a.A.String() == ip {
				return true
			}
		}
		return false
	}
	if !hasA("10.244.9.1") {
		t.Fatal("no answer before the outage")
	}

	if err := env.StopAPIServer(); err != nil {
		t.Fatal(err)
	}
	// The watch breaks; the informers retry. Every answer meanwhile must
	// still come from the last zone, and the daemon stays ready.
	deadline := time.Now().Add(3 * time.Second)
	n := 0
	for time.Now().Before(deadline) {
		if !hasA("10.244.9.1") {
			t.Fatalf("answer %d during the outage lost", n)
		}
		n++
	}
	if code, _ := d.HTTPStatus("/ready"); code != http.StatusOK {
		t.Errorf("/ready = %d during the outage, want 200 (the last zone serves)", code)
	}
	t.Logf("%d answers from the last zone during a 3 s outage", n)

	if err := env.StartAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	es, err := env.Admin.DiscoveryV1().EndpointSlices(ns).Get(ctx, "db-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{"10.244.9.2"}})
	if _, err := env.Admin.DiscoveryV1().EndpointSlices(ns).Update(ctx, es, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	createService(t, env, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "after"},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}},
	})
	// The reflector's backoff after a broken watch can reach tens of
	// seconds; 60 s bounds it.
	waitFor(t, "the change made after the API server returned", 60*time.Second, func() bool { return hasA("10.244.9.2") })
	waitFor(t, "the service created after the API server returned", 60*time.Second, func() bool {
		r, err := d.query("udp", fmt.Sprintf("after.%s.svc.cluster.local.", ns), dns.TypeA)
		return err == nil && r.Rcode == dns.RcodeSuccess && len(r.Answer) == 1
	})
}
