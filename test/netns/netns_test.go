package netns

import (
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nodedns/nodedns/pkg/iface/ifacetest"
)

// TestPodQueriesNodeLocalAddress is the whole path: nodedns sets up the
// interface and rules in the node namespace, a pod asks it over IPv4 and
// IPv6, UDP and TCP, the packets skip conntrack, a deleted address comes
// back, and SIGTERM removes everything nodedns made and nothing else.
func TestPodQueriesNodeLocalAddress(t *testing.T) {
	tp := newTopology(t)
	// Something on the node that uses conntrack, as kube-proxy does: without
	// it the namespace tracks nothing, and "no DNS entries" would prove
	// nothing. It is also a table nodedns must leave alone.
	tp.node.Exec("nft", "add", "table", "inet", "ndtest")
	tp.node.Exec("nft", "add", "chain", "inet", "ndtest", "input", "{ type filter hook input priority filter; }")
	tp.node.Exec("nft", "add", "rule", "inet", "ndtest", "input", "ct", "state", "new", "counter")

	d := startDaemon(t, tp.node, "--reconcile-interval=200ms")
	t.Logf("first answer %v after start", d.waitAnswer(tp.pod, localV4).Round(time.Millisecond))
	// Probes that waitAnswer sent before the rules existed were rightly
	// tracked; only the queries from here on must leave no entries.
	tp.node.Exec("conntrack", "-F")
	tp.node.Exec("conntrack", "-F", "-f", "ipv6")

	for _, c := range []struct {
		server string
		extra  []string
	}{
		{localV4, []string{"+tcp"}},
		{localV6, nil},
		{localV6, []string{"+tcp"}},
	} {
		if out, err := dig(tp.pod, c.server, c.extra...); err != nil || out != webIP {
			t.Errorf("dig @%s %v: %q, %v; want %s", c.server, c.extra, out, err, webIP)
		}
	}

	// The rules are there, and the queries went through them.
	ruleset := tp.node.Ruleset()
	for _, rule := range []string{
		"ip daddr 169.254.20.10 udp dport 53", "ip daddr 169.254.20.10 tcp dport 53",
		"ip6 daddr fd00:5e::10 udp dport 53", "ip6 daddr fd00:5e::10 tcp dport 53",
	} {
		if n := notrackPackets(t, ruleset, rule); n == 0 {
			t.Errorf("notrack rule %q counted no packets:\n%s", rule, ruleset)
		}
	}

	// Positive control: UDP to a port the rules do not cover is tracked
	// (the query fails, nobody listens there; the entry is made anyway).
	dig(tp.pod, localV4, "-p", "9")
	conntrack := tp.node.Exec("conntrack", "-L") + tp.node.Exec("conntrack", "-L", "-f", "ipv6")
	if !strings.Contains(conntrack, "dport=9 ") {
		t.Errorf("conntrack is not tracking in the node namespace (no entry for the control flow to port 9):\n%s", conntrack)
	}
	if strings.Contains(conntrack, "port=53 ") {
		t.Errorf("conntrack has DNS entries:\n%s", conntrack)
	}

	// Someone deletes the address: it is back within a few reconcile
	// periods, and the same listener answers again.
	tp.node.IP("addr", "del", localV4+"/32", "dev", "nodelocaldns")
	deleted := time.Now()
	ifacetest.Eventually(t, 10*time.Second, func() string {
		if out, err := dig(tp.pod, localV4); err != nil || out != webIP {
			return "no answer after the address was deleted: " + out
		}
		return ""
	})
	t.Logf("answering again %v after the address was deleted", time.Since(deleted).Round(time.Millisecond))

	exitedCleanly(t, d.stop(syscall.SIGTERM))
	if linkExists(t, tp.node) {
		t.Error("link nodelocaldns still there after SIGTERM")
	}
	ruleset = tp.node.Ruleset()
	if strings.Contains(ruleset, "table inet nodedns") {
		t.Errorf("table inet nodedns still there after SIGTERM:\n%s", ruleset)
	}
	if !strings.Contains(ruleset, "table inet ndtest") {
		t.Errorf("nodedns removed a table that is not its own:\n%s", ruleset)
	}
	if !strings.Contains(d.logs.String(), "node-local interface removed") {
		t.Error("no teardown in the log")
	}
}

// TestSkipTeardownThenAdopt: with --skip-teardown the link and rules
// outlive the process; the next instance adopts them and, without the
// flag, removes them when it stops.
func TestSkipTeardownThenAdopt(t *testing.T) {
	tp := newTopology(t)
	first := startDaemon(t, tp.node, "--skip-teardown")
	first.waitAnswer(tp.pod, localV4)
	exitedCleanly(t, first.stop(syscall.SIGTERM))
	if !linkExists(t, tp.node) || !tableExists(t, tp.node) {
		t.Fatalf("--skip-teardown: link or table gone after SIGTERM:\n%s", tp.node.Ruleset())
	}
	if out := tp.node.IP("addr", "show", "dev", "nodelocaldns"); !strings.Contains(out, localV4+"/32") || !strings.Contains(out, localV6+"/128") {
		t.Errorf("--skip-teardown: addresses gone:\n%s", out)
	}

	second := startDaemon(t, tp.node)
	t.Logf("adopting instance answered %v after start", second.waitAnswer(tp.pod, localV6).Round(time.Millisecond))
	if !strings.Contains(second.logs.String(), "adopted=true") {
		t.Error("second instance did not log adopting the link")
	}
	exitedCleanly(t, second.stop(syscall.SIGTERM))
	if linkExists(t, tp.node) || tableExists(t, tp.node) {
		t.Errorf("adopted link or table still there after SIGTERM:\n%s", tp.node.Ruleset())
	}
}

// TestRestartAfterSIGKILL: a killed instance leaves link and rules; the
// restarted one adopts them and answers within 2 s of its start.
func TestRestartAfterSIGKILL(t *testing.T) {
	tp := newTopology(t)
	first := startDaemon(t, tp.node)
	first.waitAnswer(tp.pod, localV4)
	first.stop(syscall.SIGKILL)
	if !linkExists(t, tp.node) || !tableExists(t, tp.node) {
		t.Fatal("link or table gone after SIGKILL; nothing to adopt")
	}

	second := startDaemon(t, tp.node)
	took := second.waitAnswer(tp.pod, localV4)
	t.Logf("restarted instance answered %v after start", took.Round(time.Millisecond))
	if took > 2*time.Second {
		t.Errorf("first answer %v after restart, want within 2s", took)
	}
	exitedCleanly(t, second.stop(syscall.SIGTERM))
	if linkExists(t, tp.node) || tableExists(t, tp.node) {
		t.Error("link or table still there after SIGTERM")
	}
}

// notrackPackets reads the packet counter of the raw-prerouting rule that
// starts with match.
func notrackPackets(t *testing.T, ruleset, match string) int {
	t.Helper()
	re := regexp.MustCompile(regexp.QuoteMeta(match) + ` counter packets (\d+) bytes \d+ notrack`)
	m := re.FindStringSubmatch(ruleset)
	if m == nil {
		t.Errorf("no notrack rule %q in:\n%s", match, ruleset)
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// TestFailedStartLeavesServingInstanceAlone: a second instance that adopts
// the link and then fails to start (here: a zone file that does not exist)
// must not tear down the link the first instance serves on.
func TestFailedStartLeavesServingInstanceAlone(t *testing.T) {
	tp := newTopology(t)
	first := startDaemon(t, tp.node)
	first.waitAnswer(tp.pod, localV4)

	failing := startDaemon(t, tp.node, "--zone-file", "/nonexistent/zone.yaml")
	select {
	case <-failing.done:
	case <-time.After(20 * time.Second):
		t.Fatal("an instance with a missing zone file kept running")
	}
	if failing.err == nil {
		t.Fatal("an instance with a missing zone file exited 0")
	}
	if !strings.Contains(failing.logs.String(), "adopted=true") {
		t.Fatalf("the failing instance did not adopt the link first; the test proves nothing:\n%s", failing.logs)
	}
	if !linkExists(t, tp.node) || !tableExists(t, tp.node) {
		t.Fatalf("a failed start removed the link or table the running instance serves on:\n%s", failing.logs)
	}
	if out, err := dig(tp.pod, localV4); err != nil || out != webIP {
		t.Errorf("the running instance no longer answers after a failed start: %q %v", out, err)
	}
	exitedCleanly(t, first.stop(syscall.SIGTERM))
}
