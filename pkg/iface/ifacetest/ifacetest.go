// Package ifacetest gives tests throwaway network namespaces, so that
// nothing they do reaches the host's interfaces, addresses or firewall.
package ifacetest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

var seq atomic.Int64

// NetNS is a named network namespace (as `ip netns add` makes them) that
// lives until the end of the test that created it.
type NetNS struct {
	Name string
	t    testing.TB
}

// RequireRoot skips the test when it cannot create namespaces.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces (run the tests as root, e.g. in CI)")
	}
}

// New creates a namespace named ndt-<pid>-<n> with lo up, and deletes it
// when the test ends, whether it passed or not.
func New(t testing.TB) *NetNS {
	t.Helper()
	RequireRoot(t)
	ns := &NetNS{Name: fmt.Sprintf("ndt-%d-%d", os.Getpid(), seq.Add(1)), t: t}
	if out, err := exec.Command("ip", "netns", "add", ns.Name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", ns.Name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", ns.Name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", ns.Name, err, out)
		}
	})
	ns.IP("link", "set", "lo", "up")
	return ns
}

// Path is the namespace's file, for iface.Config.NetNSPath.
func (ns *NetNS) Path() string { return "/run/netns/" + ns.Name }

// IP runs `ip -n NS args...` and returns its output; failing fails the test.
func (ns *NetNS) IP(args ...string) string {
	ns.t.Helper()
	out, err := ns.TryIP(args...)
	if err != nil {
		ns.t.Fatal(err)
	}
	return out
}

// TryIP is IP returning the error instead.
func (ns *NetNS) TryIP(args ...string) (string, error) {
	return run(append([]string{"ip", "-n", ns.Name}, args...))
}

// Exec runs a command inside the namespace (`ip netns exec`) and returns
// its combined output; failing fails the test.
func (ns *NetNS) Exec(args ...string) string {
	ns.t.Helper()
	out, err := ns.TryExec(args...)
	if err != nil {
		ns.t.Fatal(err)
	}
	return out
}

// TryExec is Exec returning the error instead.
func (ns *NetNS) TryExec(args ...string) (string, error) {
	return run(append([]string{"ip", "netns", "exec", ns.Name}, args...))
}

// Command is an *exec.Cmd that runs args inside the namespace.
func (ns *NetNS) Command(ctx context.Context, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns.Name}, args...)...)
}

// Ruleset is `nft list ruleset` inside the namespace.
func (ns *NetNS) Ruleset() string {
	ns.t.Helper()
	return ns.Exec("nft", "list", "ruleset")
}

func run(args []string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// Eventually polls cond until it returns "" (success) or the deadline
// passes, then fails the test with cond's last message.
func Eventually(t testing.TB, within time.Duration, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		msg := cond()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, msg)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
