package deploy

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/nodedns/nodedns/internal/testproc"
)

// TestSurgeNeedsSideBySide: a DaemonSet surge upgrade starts the new Pod
// next to the old one on each node, with the same flags and, with
// hostNetwork, the same ports. If deploy/daemonset.yaml asks for surge, two
// instances with identical addresses must run side by side, and the second
// must keep serving when the first stops. (Only the listeners are tested
// here, on loopback; the interface handoff on a node is pkg/iface's and
// test/netns's.)
func TestSurgeNeedsSideBySide(t *testing.T) {
	m := loadManifests(t)
	surge := 0
	if ru := m.ds.Spec.UpdateStrategy.RollingUpdate; ru != nil && ru.MaxSurge != nil {
		var err error
		if surge, err = intstr.GetScaledValueFromIntOrPercent(ru.MaxSurge, 100, true); err != nil {
			t.Fatalf("maxSurge: %v", err)
		}
	}

	dnsAddr := fmt.Sprintf("127.0.0.1:%d", testproc.FreePort(t))
	health := fmt.Sprintf("127.0.0.1:%d", testproc.FreePort(t))
	args := []string{
		"--zone-file", repoPath("examples", "zone.yaml"),
		"--setup-interface=false",
		"--listen", dnsAddr,
		"--health-listen", health,
		"--metrics-listen", fmt.Sprintf("127.0.0.1:%d", testproc.FreePort(t)),
		"--upstream", "127.0.0.1:9",
		"--shutdown-grace=0s",
		// Shared by both instances, as the DaemonSet's hostPath is.
		"--handoff-socket", filepath.Join(t.TempDir(), "handoff.sock"),
	}
	ready := "http://" + health + "/ready"
	old := startDaemon(t, args...)
	old.waitReady(ready, 30*time.Second)
	next := startDaemon(t, args...)

	// The new instance either comes up next to the old one or exits. Ready
	// is asked of whichever answers the shared port, so what decides is
	// whether the new one still runs and serves once the old one is gone.
	sideBySide, why := false, ""
	deadline := time.Now().Add(30 * time.Second)
	for {
		if next.exited() {
			why = fmt.Sprintf("the second instance exited: %v\n%s", next.err, next.logs.String())
			break
		}
		if code, _ := get(ready); code == http.StatusOK && logsServing(next) {
			old.stop()
			code, body := get(ready)
			_, qerr := dnsVersion(dnsAddr)
			sideBySide = !next.exited() && code == http.StatusOK && qerr == nil
			why = fmt.Sprintf("after the first stopped: second running %v, /ready %d %q, DNS %v", !next.exited(), code, body, qerr)
			break
		}
		if time.Now().After(deadline) {
			why = "the second instance neither served nor exited within 30s"
			break
		}
		time.Sleep(25 * time.Millisecond) // poll interval, not synchronisation
	}

	switch {
	case surge > 0 && !sideBySide:
		t.Errorf("deploy/daemonset.yaml surges (maxSurge %v), but two instances with the same addresses cannot run side by side: %s",
			m.ds.Spec.UpdateStrategy.RollingUpdate.MaxSurge, why)
	case surge == 0 && sideBySide:
		t.Logf("two instances now run side by side: deploy/daemonset.yaml may switch to maxSurge 1, maxUnavailable 0 (%s)", why)
	default:
		t.Logf("maxSurge %d, side by side %v: %s", surge, sideBySide, why)
	}
}

// logsServing reports whether d logged that it started serving (so a 200
// on the shared port is not only the old instance's).
func logsServing(d *daemon) bool {
	return strings.Contains(d.logs.String(), "nodedns started")
}

// dnsVersion asks addr for dns-version.cluster.local TXT over UDP.
func dnsVersion(addr string) (*dns.Msg, error) {
	q := new(dns.Msg)
	q.SetQuestion("dns-version.cluster.local.", dns.TypeTXT)
	c := dns.Client{Net: "udp", Timeout: 2 * time.Second}
	r, _, err := c.Exchange(q, addr)
	if err == nil && r.Rcode != dns.RcodeSuccess {
		err = fmt.Errorf("rcode %s", dns.RcodeToString[r.Rcode])
	}
	return r, err
}
