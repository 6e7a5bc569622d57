package hostile

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nodedns/nodedns/internal/testproc"
	"github.com/nodedns/nodedns/pkg/iface/ifacetest"
)

// deployCaps are the capabilities deploy/daemonset.yaml leaves the
// container (everything else dropped, UID 0, no privilege escalation):
// CAP_NET_BIND_SERVICE (10) and CAP_NET_ADMIN (12).
const deployCaps = 1<<10 | 1<<12

// capsOf returns the effective, permitted and bounding capability sets of
// pid.
func capsOf(pid int) (eff, prm, bnd uint64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":\t")
		if !ok {
			continue
		}
		var dst *uint64
		switch k {
		case "CapEff":
			dst = &eff
		case "CapPrm":
			dst = &prm
		case "CapBnd":
			dst = &bnd
		default:
			continue
		}
		if *dst, err = strconv.ParseUint(strings.TrimSpace(v), 16, 64); err != nil {
			return 0, 0, 0, err
		}
	}
	return eff, prm, bnd, nil
}

// TestOnlyListenAddressAnswers runs nodedns in a node namespace with the
// capabilities of deploy/ and nothing more (UID 0 with CAP_NET_ADMIN and
// CAP_NET_BIND_SERVICE only, no_new_privs): it must still create its link,
// address and nftables table, and answer a pod on 169.254.20.10, while the
// node's other addresses (two on the pod-facing link, and loopback) get no
// answer on port 53. Its API identity is tested elsewhere: test/deploy
// runs it with a token bound to exactly deploy/rbac.yaml's ClusterRole,
// and TestFlappingAPIServer with the e2e list/watch-only user.
func TestOnlyListenAddressAnswers(t *testing.T) {
	for _, tool := range []string{"ip", "dig", "nft", "setpriv"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found (hack/deps.sh installs it): %v", tool, err)
		}
	}
	node, pod := ifacetest.New(t), ifacetest.New(t)
	node.IP("link", "add", "veth-pod", "type", "veth", "peer", "name", "veth-node", "netns", pod.Name)
	node.IP("addr", "add", "10.124.0.1/24", "dev", "veth-pod")
	node.IP("addr", "add", "10.124.0.3/24", "dev", "veth-pod")
	node.IP("link", "set", "veth-pod", "up")
	pod.IP("addr", "add", "10.124.0.2/24", "dev", "veth-node")
	pod.IP("link", "set", "veth-node", "up")
	pod.IP("route", "add", "169.254.20.10/32", "via", "10.124.0.1")

	const caps = "-all,+net_admin,+net_bind_service"
	logs := &testproc.SyncBuffer{}
	cmd := exec.Command("ip", "netns", "exec", node.Name,
		// Each execs in place: the PID is nodedns's own.
		"setpriv", "--no-new-privs", "--inh-caps="+caps, "--bounding-set="+caps, "--",
		nodednsBin,
		"--zone-file", exampleZone,
		"--listen", "169.254.20.10:53",
		"--health-listen", "169.254.20.10:8080",
		"--metrics-listen", "127.0.0.1:9253",
		"--upstream", "127.0.0.1:5399", // never asked: only cluster names here
		"--shutdown-grace=0s",
		"--handoff-socket", filepath.Join(t.TempDir(), "handoff.sock"),
	)
	cmd.Stdout, cmd.Stderr = logs, logs
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(done)
	}()
	exited := func() bool {
		select {
		case <-done:
			return true
		default:
			return false
		}
	}
	t.Cleanup(func() {
		if !exited() {
			cmd.Process.Kill() // ours, by PID
			<-done
		}
		if t.Failed() {
			t.Logf("nodedns log:\n%s", logs)
		}
	})

	digAt := func(ns *ifacetest.NetNS, server string, extra ...string) (string, error) {
		out, err := ns.TryExec(append([]string{"dig", "+short", "+tries=1", "+time=1", "@" + server, webName, "A"}, extra...)...)
		return strings.TrimSpace(out), err
	}
	ifacetest.Eventually(t, 20*time.Second, func() string {
		if exited() {
			t.Fatalf("nodedns exited: %v\n%s", waitErr, logs)
		}
		if out, err := digAt(pod, "169.254.20.10"); err != nil || out != webIP {
			return fmt.Sprintf("no answer on 169.254.20.10 yet: %q %v", out, err)
		}
		return ""
	})
	firstAnswer := time.Since(start)

	// The process holds exactly deploy's capabilities.
	eff, prm, bnd, err := capsOf(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", cmd.Process.Pid)); strings.TrimSpace(string(comm)) != "nodedns" {
		t.Fatalf("PID %d is %q, not nodedns", cmd.Process.Pid, comm)
	}
	if eff != deployCaps || prm != deployCaps || bnd != deployCaps {
		t.Errorf("capabilities eff %#x prm %#x bnd %#x, want exactly %#x (NET_ADMIN, NET_BIND_SERVICE)", eff, prm, bnd, deployCaps)
	}
	// With them it set up its link and rules.
	if out := node.IP("addr", "show", "dev", "nodelocaldns"); !strings.Contains(out, "169.254.20.10/32") {
		t.Errorf("link nodelocaldns has no 169.254.20.10:\n%s", out)
	}
	if rs := node.Ruleset(); !strings.Contains(rs, "table inet nodedns {") {
		t.Errorf("no table inet nodedns:\n%s", rs)
	}

	// Who may ask: only the listen address answers.
	answered, asked := 0, 0
	for _, c := range []struct {
		ns     *ifacetest.NetNS
		server string
	}{
		{pod, "10.124.0.1"}, {pod, "10.124.0.3"}, {node, "10.124.0.1"}, {node, "10.124.0.3"}, {node, "127.0.0.1"},
	} {
		for _, extra := range [][]string{nil, {"+tcp"}} {
			asked++
			if out, err := digAt(c.ns, c.server, extra...); err == nil && out != "" {
				answered++
				t.Errorf("dig @%s %v from the %s namespace answered %q: nodedns must answer only on its --listen address",
					c.server, extra, map[bool]string{true: "pod", false: "node"}[c.ns == pod], out)
			}
		}
	}
	for _, extra := range [][]string{nil, {"+tcp"}} {
		if out, err := digAt(pod, "169.254.20.10", extra...); err != nil || out != webIP {
			t.Errorf("dig @169.254.20.10 %v: %q %v, want %s", extra, out, err, webIP)
		}
	}

	// SIGTERM: it removes what it made, with the same two capabilities.
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("nodedns still running 20s after SIGTERM")
	}
	if waitErr != nil {
		t.Errorf("nodedns exited with %v", waitErr)
	}
	if out, err := node.TryIP("link", "show", "nodelocaldns"); err == nil {
		t.Errorf("link nodelocaldns left behind:\n%s", out)
	}
	figure(t, "capabilities %#x (NET_ADMIN+NET_BIND_SERVICE only, no_new_privs): link, address and nftables set up, first pod answer %v after start, torn down on SIGTERM; queries to other node addresses answered: %d of %d",
		eff, firstAnswer.Round(time.Millisecond), answered, asked)
}
