// Package netns runs the nodedns binary in network namespaces the tests
// create: a "node" namespace where nodedns runs and a "pod" namespace
// joined to it by a veth pair, querying the node-local address as a pod
// would. Nothing reaches the host's interfaces, addresses or firewall, and
// no packet leaves the two namespaces.
package netns

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nodedns/nodedns/internal/testproc"
	"github.com/nodedns/nodedns/pkg/iface/ifacetest"
)

// nodednsBin is the daemon, built once by TestMain.
var nodednsBin string

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "nodedns-netns-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if nodednsBin, err = testproc.BuildNodedns(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

const (
	localV4 = "169.254.20.10"
	localV6 = "fd00:5e::10"
	// web.default in examples/zone.yaml.
	webName = "web.default.svc.cluster.local"
	webIP   = "10.96.0.50"
	zone    = "../../examples/zone.yaml"
)

// topology is a node namespace and a pod namespace joined by a veth pair:
// 10.123.0.1/24 and fd00:123::1/64 on the node side, .2 and ::2 on the
// pod side, which routes the local addresses via the node.
type topology struct {
	node, pod *ifacetest.NetNS
}

func newTopology(t *testing.T) topology {
	t.Helper()
	for _, tool := range []string{"dig", "nft", "conntrack"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found (hack/deps.sh installs it): %v", tool, err)
		}
	}
	tp := topology{node: ifacetest.New(t), pod: ifacetest.New(t)}
	tp.node.IP("link", "add", "veth-pod", "type", "veth", "peer", "name", "veth-node", "netns", tp.pod.Name)
	tp.node.IP("addr", "add", "10.123.0.1/24", "dev", "veth-pod")
	tp.node.IP("addr", "add", "fd00:123::1/64", "dev", "veth-pod", "nodad")
	tp.node.IP("link", "set", "veth-pod", "up")
	tp.pod.IP("addr", "add", "10.123.0.2/24", "dev", "veth-node")
	tp.pod.IP("addr", "add", "fd00:123::2/64", "dev", "veth-node", "nodad")
	tp.pod.IP("link", "set", "veth-node", "up")
	tp.pod.IP("route", "add", localV4+"/32", "via", "10.123.0.1")
	tp.pod.IP("-6", "route", "add", localV6+"/128", "via", "fd00:123::1")
	return tp
}

// daemon is one nodedns process running in the node namespace.
type daemon struct {
	t     *testing.T
	cmd   *exec.Cmd
	logs  *testproc.SyncBuffer
	start time.Time
	done  chan struct{}
	err   error // valid after done is closed
}

// startDaemon runs nodedns in ns with the flags every test uses plus extra.
func startDaemon(t *testing.T, ns *ifacetest.NetNS, extra ...string) *daemon {
	t.Helper()
	args := append([]string{nodednsBin,
		"--zone-file", zone,
		"--listen", localV4 + ":53", "--listen", "[" + localV6 + "]:53",
		"--health-listen", localV4 + ":8080",
		"--metrics-listen", "127.0.0.1:9253",
		"--upstream", "127.0.0.1:5399", // never asked: the tests ask the cluster zone only
		"--shutdown-grace=0s",
		"--log-level", "debug",
		// Per test unless extra names one (the last flag wins): never
		// the host's /run, never another test's daemon.
		"--handoff-socket", filepath.Join(t.TempDir(), "handoff.sock"),
	}, extra...)
	d := &daemon{t: t, logs: &testproc.SyncBuffer{}, done: make(chan struct{})}
	// ip netns exec execs nodedns in place: the PID is nodedns's own.
	d.cmd = exec.Command("ip", append([]string{"netns", "exec", ns.Name}, args...)...)
	d.cmd.Stdout, d.cmd.Stderr = d.logs, d.logs
	d.start = time.Now()
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("starting nodedns: %v", err)
	}
	go func() {
		d.err = d.cmd.Wait()
		close(d.done)
	}()
	t.Cleanup(func() {
		select {
		case <-d.done:
		default:
			d.cmd.Process.Kill() // ours, by PID
			<-d.done
		}
		if t.Failed() {
			t.Logf("nodedns log:\n%s", d.logs)
		}
	})
	return d
}

func (d *daemon) exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// stop sends sig and waits for the process to end.
func (d *daemon) stop(sig syscall.Signal) error {
	d.t.Helper()
	if err := d.cmd.Process.Signal(sig); err != nil {
		d.t.Fatalf("signal %v: %v", sig, err)
	}
	select {
	case <-d.done:
		return d.err
	case <-time.After(20 * time.Second):
		d.t.Fatalf("nodedns still running 20s after %v", sig)
		return nil
	}
}

// dig asks server for name's A record from ns (+short: answers only).
func dig(ns *ifacetest.NetNS, server string, extra ...string) (string, error) {
	args := append([]string{"dig", "+short", "+tries=1", "+time=1", "@" + server, webName, "A"}, extra...)
	out, err := ns.TryExec(args...)
	return strings.TrimSpace(out), err
}

// waitAnswer polls until the pod gets web's address from server, and
// returns how long that took from the daemon's start.
func (d *daemon) waitAnswer(pod *ifacetest.NetNS, server string) time.Duration {
	d.t.Helper()
	ifacetest.Eventually(d.t, 20*time.Second, func() string {
		if d.exited() {
			d.t.Fatalf("nodedns exited early: %v\n%s", d.err, d.logs)
		}
		out, err := dig(pod, server)
		if err != nil || out != webIP {
			return fmt.Sprintf("dig @%s %s: %q %v", server, webName, out, err)
		}
		return ""
	})
	return time.Since(d.start)
}

// linkExists reports whether ns has the link nodelocaldns.
func linkExists(t *testing.T, ns *ifacetest.NetNS) bool {
	t.Helper()
	out, err := ns.TryIP("link", "show", "nodelocaldns")
	if err != nil {
		if strings.Contains(out, "does not exist") {
			return false
		}
		t.Fatal(err)
	}
	return true
}

// tableExists reports whether ns has the table inet nodedns.
func tableExists(t *testing.T, ns *ifacetest.NetNS) bool {
	t.Helper()
	return strings.Contains(ns.Ruleset(), "table inet nodedns {")
}

// exitedCleanly fails unless err is a clean exit.
func exitedCleanly(t *testing.T, err error) {
	t.Helper()
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		t.Errorf("nodedns exited with %v", ee)
	} else if err != nil {
		t.Error(err)
	}
}
