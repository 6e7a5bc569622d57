package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestPodModes: insecure answers any dashed IP, verified only a known Pod's
// IP in its namespace, disabled nothing.
func TestPodModes(t *testing.T) {
	env := sharedEnv(t)
	ctx := context.Background()
	ns := newNamespace(t, env)
	// Admission wants the namespace's default ServiceAccount first.
	if _, err := env.Admin.CoreV1().ServiceAccounts(ns).Create(ctx,
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod, err := env.Admin.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p1"},
		Spec:       corev1.PodSpec{NodeName: "node-a", Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pod.Status.PodIP = "10.244.3.7"
	pod.Status.PodIPs = []corev1.PodIP{{IP: "10.244.3.7"}}
	if _, err := env.Admin.CoreV1().Pods(ns).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	up := upstreamServer(t)
	known := "10-244-3-7." + ns + ".pod.cluster.local."
	unknown := "10-244-3-8." + ns + ".pod.cluster.local."
	for _, c := range []struct {
		mode         string
		known, other int
	}{
		{"insecure", dns.RcodeSuccess, dns.RcodeSuccess},
		{"verified", dns.RcodeSuccess, dns.RcodeNameError},
		{"disabled", dns.RcodeNameError, dns.RcodeNameError},
	} {
		t.Run(c.mode, func(t *testing.T) {
			d := startDaemon(t, "--kubeconfig", env.DNSKubeconfig, "--upstream", up.Addr().String(), "--pods", c.mode)
			d.WaitReady(30 * time.Second)
			for name, want := range map[string]int{known: c.known, unknown: c.other} {
				r, err := d.query("udp", name, dns.TypeA)
				if err != nil || r.Rcode != want {
					t.Errorf("%s: %v %v, want %s", name, r, err, dns.RcodeToString[want])
					continue
				}
				if want == dns.RcodeSuccess && (len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() == "") {
					t.Errorf("%s: answer %v", name, r.Answer)
				}
			}
		})
	}
}
