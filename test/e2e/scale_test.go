package e2e

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestScaleRSS loads 1,000 Services with 10 endpoints each through the API
// server and reports nodedns's RSS and time to ready. Opt in with
// NODEDNS_E2E_SCALE=1 (it takes a minute of API writes).
func TestScaleRSS(t *testing.T) {
	if os.Getenv("NODEDNS_E2E_SCALE") != "1" {
		t.Skip("set NODEDNS_E2E_SCALE=1 to run")
	}
	const services, perService = 1000, 10
	env := sharedEnv(t)
	ns := newNamespace(t, env)
	ctx := context.Background()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, services)
	work := make(chan int)
	for range 8 {
		wg.Go(func() {
			for i := range work {
				name := fmt.Sprintf("s%04d", i)
				spec := corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}}
				if i%2 == 1 {
					spec.ClusterIP = corev1.ClusterIPNone
				}
				if _, err := env.Admin.CoreV1().Services(ns).Create(ctx, &corev1.Service{
					ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: spec}, metav1.CreateOptions{}); err != nil {
					errs <- err
					continue
				}
				var eps []discoveryv1.Endpoint
				for j := range perService {
					host := ""
					if j%2 == 0 {
						host = fmt.Sprintf("h%d", j)
					}
					eps = append(eps, endpoint(fmt.Sprintf("10.%d.%d.%d", 100+i/250, i%250, j+1), true, host, fmt.Sprintf("%s-pod-%d", name, j)))
				}
				if _, err := env.Admin.DiscoveryV1().EndpointSlices(ns).Create(ctx,
					slice(ns, name+"-1", name, []discoveryv1.EndpointPort{port("http", corev1.ProtocolTCP, 8080)}, eps...),
					metav1.CreateOptions{}); err != nil {
					errs <- err
				}
			}
		})
	}
	for i := range services {
		work <- i
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Logf("created %d services, %d endpoints in %v", services, services*perService, time.Since(start).Round(time.Millisecond))

	up := upstreamServer(t)
	started := time.Now()
	d := startDaemon(t, "--kubeconfig", env.DNSKubeconfig, "--upstream", up.Addr().String())
	d.WaitReady(60 * time.Second)
	ready := time.Since(started)
	r, err := d.query("udp", "s0999."+ns+".svc.cluster.local.", dns.TypeA)
	if err != nil || len(r.Answer) != perService {
		t.Fatalf("last headless service: %v %v", r, err)
	}
	// Settle: ask once more for every service so the answer paths are warm.
	for i := 0; i < services; i += 10 {
		d.query("udp", fmt.Sprintf("s%04d.%s.svc.cluster.local.", i, ns), dns.TypeA)
	}
	rss := procStatusKB(t, d.Cmd.Process.Pid, "VmRSS")
	hwm := procStatusKB(t, d.Cmd.Process.Pid, "VmHWM")
	t.Logf("nodedns with %d services / %d endpoints: time to ready %v, RSS %.1f MiB, peak RSS %.1f MiB",
		services, services*perService, ready.Round(time.Millisecond), float64(rss)/1024, float64(hwm)/1024)
}

func procStatusKB(t *testing.T, pid int, field string) int {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("%s not in /proc/%d/status", field, pid)
	return 0
}
