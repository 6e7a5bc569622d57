package hostile

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nodedns/nodedns/internal/testproc"
)

// TestHandoffWaitsForSync: a new instance takes the running one's sockets
// (a rolling update) while the API server is down, so its zone cannot
// sync. It must not read the shared sockets meanwhile, or it would answer
// its share of the queries SERVFAIL; the running instance, whose zone is
// the last known, answers them all. Once the API server is back, the new
// one syncs, serves, and answers alone after the old one stops.
func TestHandoffWaitsForSync(t *testing.T) {
	const ns = "handoff"
	env := ownAPIServer(t, ns)
	ctx := t.Context()
	svc, err := env.Admin.CoreV1().Services(ns).Create(ctx, clusterIPService(ns, "web"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	name, want := "web."+ns+".svc.cluster.local.", []string{svc.Spec.ClusterIP}

	up := upstreamServer(t, "127.0.0.2:0")
	// Both instances on the same addresses and handoff socket, as the
	// old and new Pod of one node.
	dnsAddr, health, metrics := fmt.Sprintf("127.0.0.1:%d", testproc.FreePort(t)),
		fmt.Sprintf("127.0.0.1:%d", testproc.FreePort(t)), fmt.Sprintf("127.0.0.1:%d", testproc.FreePort(t))
	args := []string{"--kubeconfig", env.DNSKubeconfig, "--upstream", up.Addr().String(),
		"--listen", dnsAddr, "--health-listen", health, "--metrics-listen", metrics,
		"--handoff-socket", filepath.Join(t.TempDir(), "handoff.sock")}
	start := func() *daemon {
		d := &daemon{testproc.StartDaemon(t, nodednsBin, args...)}
		d.DNS, d.Health, d.Metrics = dnsAddr, health, metrics // the flags given last win
		return d
	}
	old := start()
	old.WaitReady(30 * time.Second)

	if err := env.KillAPIServer(); err != nil {
		t.Fatal(err)
	}
	next := start()
	waitFor(t, "the new instance holding the old one's sockets", 10*time.Second, func() bool {
		return strings.Contains(next.Logs.String(), "handoff: received the running instance's sockets")
	})
	ask := func(what string, n int) (bad int) {
		for range n {
			if ips, rc := old.aRecords(name); rc != dns.RcodeSuccess || !slices.Equal(ips, want) {
				if bad++; bad == 1 {
					t.Errorf("%s: %s = %v rcode %d, want %v", what, name, ips, rc, want)
				}
			}
		}
		return bad
	}
	const n = 300
	badWaiting := ask("new instance waiting for its zone", n)
	if strings.Contains(next.Logs.String(), "serving the inherited sockets") {
		t.Fatal("the new instance served before its zone synced (the API server is down)")
	}

	if err := env.StartAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the new instance synced and serving", 30*time.Second, func() bool {
		return strings.Contains(next.Logs.String(), "handoff: zone synced; serving the inherited sockets")
	})
	badBoth := ask("both instances serving", n)
	old.Stop()
	badNew := ask("the new instance alone", n)
	next.Alive()
	figure(t, "handoff while the API server is down: %d queries while the new instance waited for its zone, %d bad; %d with both serving, %d bad; %d with the new alone, %d bad",
		n, badWaiting, n, badBoth, n, badNew)
}
