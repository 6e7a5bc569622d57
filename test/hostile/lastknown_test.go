package hostile

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nodedns/nodedns/internal/testproc"
	"github.com/nodedns/nodedns/pkg/lastknown"
	"github.com/nodedns/nodedns/pkg/zone"
)

// TestRestartWhileAPIServerDown: nodedns restarts while its API server is
// unreachable. With --last-known-zone it answers cluster names from the
// zone it saved before, instead of SERVFAIL for every one of them (names
// not in it still get SERVFAIL, never a false NXDOMAIN); once
// the API server is back, what changed meanwhile replaces it: a Service
// deleted while nodedns was down is gone, one created is there.
func TestRestartWhileAPIServerDown(t *testing.T) {
	const ns = "lastknown"
	env := ownAPIServer(t, ns)
	ctx := t.Context()
	api := env.Admin
	create := func(name string) string {
		t.Helper()
		svc, err := api.CoreV1().Services(ns).Create(ctx, clusterIPService(ns, name), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return svc.Spec.ClusterIP
	}
	fqdn := func(name string) string { return name + "." + ns + ".svc.cluster.local." }
	keepIP, goneIP := create("keep"), create("gone")

	path := filepath.Join(t.TempDir(), "state", "last-known-zone.json") // its directory is made
	up := upstreamServer(t, "127.0.0.2:0")
	args := []string{"--kubeconfig", env.DNSKubeconfig, "--upstream", up.Addr().String()}
	withFile := append(slices.Clone(args), "--last-known-zone", path)

	// The first run saves the zone once the watches have synced.
	first := &daemon{testproc.StartDaemon(t, nodednsBin, withFile...)}
	first.WaitReady(30 * time.Second)
	waitFor(t, "the last known zone saved with both services", 10*time.Second, func() bool {
		objs, _, err := lastknown.Load(path)
		return err == nil && len(servicesIn(objs.Services, ns)) == 2
	})
	first.Stop()

	// Changes nodedns does not see, then the API server goes away.
	if err := api.CoreV1().Services(ns).Delete(ctx, "gone", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	bornIP := create("born")
	if err := env.KillAPIServer(); err != nil {
		t.Fatal(err)
	}

	// Control: without the file, cluster names get SERVFAIL meanwhile.
	without := &daemon{testproc.StartDaemon(t, nodednsBin, args...)}
	waitFor(t, "the daemon without a last known zone answering", 10*time.Second, func() bool {
		_, rc := without.aRecords(fqdn("keep"))
		return rc >= 0
	})
	if ips, rc := without.aRecords(fqdn("keep")); rc != dns.RcodeServerFailure {
		t.Errorf("without --last-known-zone, API server down: keep = %v rcode %s, want SERVFAIL", ips, dns.RcodeToString[rc])
	}
	without.Stop()

	second := &daemon{testproc.StartDaemon(t, nodednsBin, withFile...)}
	restarted := time.Now()
	waitFor(t, "an answer from the last known zone", 10*time.Second, func() bool {
		_, rc := second.aRecords(fqdn("keep"))
		return rc == dns.RcodeSuccess
	})
	answering := time.Since(restarted)
	// Answering, but not ready: a rollout must wait for the API server.
	if code, body := second.HTTPStatus("/ready"); code != 503 || !strings.Contains(body, "last known zone") {
		t.Errorf("/ready while answering from the last known zone: %d %q, want 503 naming it", code, body)
	}
	for name, want := range map[string]string{"keep": keepIP, "gone": goneIP} {
		if ips, rc := second.aRecords(fqdn(name)); rc != dns.RcodeSuccess || !slices.Equal(ips, []string{want}) {
			t.Errorf("API server down, last known zone: %s = %v rcode %s, want %s", name, ips, dns.RcodeToString[rc], want)
		}
	}
	// born was created after the save: SERVFAIL, as before any sync,
	// never a false NXDOMAIN.
	if ips, rc := second.aRecords(fqdn("born")); rc != dns.RcodeServerFailure {
		t.Errorf("API server down, last known zone: born = %v rcode %s, want SERVFAIL", ips, dns.RcodeToString[rc])
	}
	// Published just before the metrics are set: waited for, not read once.
	waitFor(t, "nodedns_zone_last_known 1 with nodedns_zone_synced 0", 5*time.Second, func() bool {
		return second.Metric("nodedns_zone_synced") == 0 && second.Metric("nodedns_zone_last_known") == 1
	})
	if !strings.Contains(second.Logs.String(), "serving the last known zone until the API watches sync") {
		t.Error("the restart did not log serving the last known zone")
	}

	// Back: the watches sync and replace the last known zone.
	if err := env.StartAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	waitFor(t, "gone deleted and born created after the API server came back", 30*time.Second, func() bool {
		_, goneRC := second.aRecords(fqdn("gone"))
		ips, bornRC := second.aRecords(fqdn("born"))
		return goneRC == dns.RcodeNameError && bornRC == dns.RcodeSuccess && slices.Equal(ips, []string{bornIP})
	})
	caughtUp := time.Since(back)
	waitFor(t, "nodedns_zone_synced 1 and nodedns_zone_last_known 0", 10*time.Second, func() bool {
		return second.Metric("nodedns_zone_synced") == 1 && second.Metric("nodedns_zone_last_known") == 0
	})
	if ips, rc := second.aRecords(fqdn("keep")); rc != dns.RcodeSuccess || !slices.Equal(ips, []string{keepIP}) {
		t.Errorf("after the sync: keep = %v rcode %s, want %s", ips, dns.RcodeToString[rc], keepIP)
	}
	// And the file follows: it now holds keep and born.
	waitFor(t, "the last known zone saved again after the sync", 10*time.Second, func() bool {
		objs, _, err := lastknown.Load(path)
		return err == nil && slices.Equal(servicesIn(objs.Services, ns), []string{"born", "keep"})
	})
	second.Alive()
	second.WaitReady(10 * time.Second)
	figure(t, "restart with the API server down: answering from the last known zone %v after start (not ready); without it SERVFAIL; the changes made meanwhile visible %v after the API server was back, then ready",
		answering.Round(time.Millisecond), caughtUp.Round(time.Millisecond))
}

// servicesIn lists the sorted names of the services of namespace ns.
func servicesIn(services []*zone.Service, ns string) []string {
	var out []string
	for _, s := range services {
		if s.Namespace == ns {
			out = append(out, s.Name)
		}
	}
	slices.Sort(out)
	return out
}
