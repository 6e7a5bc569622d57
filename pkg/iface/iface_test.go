package iface_test

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nodedns/nodedns/pkg/iface"
	"github.com/nodedns/nodedns/pkg/iface/ifacetest"
)

func TestSetupCreatesLinkAddressesAndRules(t *testing.T) {
	e := newEnv(t)
	i := e.setup()
	t.Logf("link type used here: %s", i.Kind())
	if i.Adopted() {
		t.Error("Adopted() = true for a link Setup created")
	}
	if k := i.Kind(); k != "dummy" && k != "bridge" {
		t.Errorf("Kind() = %q, want dummy or its fallback bridge", k)
	}
	e.checkInPlace(i)
	for _, a := range e.link().Addrs {
		if a.Family == "inet6" && a.Local == v6.String() && !a.NoDAD {
			t.Errorf("%s added without nodad", a.Local)
		}
	}
	// Nothing differs from what Setup made: a reconcile step repairs
	// nothing (this also proves the rule comparison reads back what it
	// wrote, or every step would rewrite the table).
	if got := e.reconcile(i); len(got) != 0 {
		t.Errorf("reconcile right after Setup did %v, want nothing", got)
	}
}

func TestSetupAdoptsWhatAnEarlierProcessLeft(t *testing.T) {
	e := newEnv(t)
	first, err := iface.Setup(context.Background(), e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	ruleset := e.ns.Ruleset()
	// As after SIGKILL: the first instance never tears down.
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}

	second := e.setup()
	if !second.Adopted() {
		t.Error("second Setup did not adopt the existing link")
	}
	if second.Kind() != first.Kind() {
		t.Errorf("adopted kind %q, created %q", second.Kind(), first.Kind())
	}
	e.checkInPlace(second) // also: no duplicate addresses, no duplicate rules
	if got := e.ns.Ruleset(); got != ruleset {
		t.Errorf("second Setup changed the ruleset:\nbefore\n%s\nafter\n%s", ruleset, got)
	}
	if got := e.reconcile(second); len(got) != 0 {
		t.Errorf("reconcile after adopting did %v, want nothing", got)
	}
}

func TestReconcileRestoresDeletedAddresses(t *testing.T) {
	e := newEnv(t)
	i := e.setup()

	e.ns.IP("addr", "del", "169.254.20.10/32", "dev", e.cfg.Name)
	if got := e.link().hostAddrs(); slices.Contains(got, "169.254.20.10/32") {
		t.Fatalf("address still there after ip addr del: %v", got)
	}
	if got, want := e.reconcile(i), []string{iface.ActionAddressRestored}; !slices.Equal(got, want) {
		t.Errorf("actions %v, want %v", got, want)
	}
	e.checkInPlace(i)

	e.ns.IP("addr", "del", "169.254.20.10/32", "dev", e.cfg.Name)
	e.ns.IP("addr", "del", "fd00:5e::10/128", "dev", e.cfg.Name)
	if got, want := e.reconcile(i), []string{iface.ActionAddressRestored, iface.ActionAddressRestored}; !slices.Equal(got, want) {
		t.Errorf("actions %v, want %v", got, want)
	}
	e.checkInPlace(i)
}

func TestReconcileRestoresDeletedLink(t *testing.T) {
	e := newEnv(t)
	i := e.setup()
	kind := i.Kind()

	e.ns.IP("link", "del", e.cfg.Name)
	if e.link() != nil {
		t.Fatal("link still there after ip link del")
	}
	want := []string{iface.ActionAddressRestored, iface.ActionAddressRestored, iface.ActionLinkRestored}
	if got := e.reconcile(i); !slices.Equal(got, want) {
		t.Errorf("actions %v, want %v", got, want)
	}
	if i.Kind() != kind {
		t.Errorf("re-created as %q, was %q", i.Kind(), kind)
	}
	e.checkInPlace(i)
}

func TestReconcileSetsLinkUp(t *testing.T) {
	e := newEnv(t)
	i := e.setup()

	// Setting a link down also makes the kernel drop its IPv6 addresses
	// (unless keep_addr_on_down): both need repair.
	e.ns.IP("link", "set", e.cfg.Name, "down")
	got := e.reconcile(i)
	if !slices.Contains(got, iface.ActionLinkUp) {
		t.Errorf("actions %v, want %s among them", got, iface.ActionLinkUp)
	}
	e.checkInPlace(i)
}

func TestReconcileRestoresRules(t *testing.T) {
	tamper := map[string][]string{
		"table deleted": {"delete", "table", "inet", "nodedns"},
		"chain flushed": {"flush", "chain", "inet", "nodedns", "raw-prerouting"},
		"chain deleted": {"delete", "chain", "inet", "nodedns", "filter-output"},
		"rule added":    {"add", "rule", "inet", "nodedns", "raw-output", "udp", "dport", "53", "accept"},
		"policy drop":   {"add", "chain", "inet", "nodedns", "filter-input", "{ type filter hook input priority filter; policy drop; }"},
		"dormant":       {"add", "table", "inet", "nodedns", "{ flags dormant; }"},
	}
	for name, cmd := range tamper {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			i := e.setup()
			before := e.ns.Ruleset()
			e.ns.Exec(append([]string{"nft"}, cmd...)...)
			if e.ns.Ruleset() == before {
				t.Fatalf("nft %v changed nothing", cmd)
			}
			if got, want := e.reconcile(i), []string{iface.ActionRulesRestored}; !slices.Equal(got, want) {
				t.Errorf("actions %v, want %v", got, want)
			}
			e.checkInPlace(i)
			if got := e.reconcile(i); len(got) != 0 {
				t.Errorf("second reconcile did %v, want nothing", got)
			}
		})
	}
}

func TestReconcileRestoresOneChangedRule(t *testing.T) {
	const comment = `comment "nodedns: notrack udp to 169.254.20.10:53"`
	tamper := map[string][]string{
		"deleted": {"delete", "rule", "inet", "nodedns", "raw-prerouting", "handle", "HANDLE"},
		// Same comment, other address: only the expressions tell.
		"replaced": {"replace", "rule", "inet", "nodedns", "raw-prerouting", "handle", "HANDLE",
			"ip daddr 169.254.20.11 udp dport 53 counter notrack " + comment},
	}
	for name, cmd := range tamper {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			i := e.setup()
			out := e.ns.Exec("nft", "-a", "list", "chain", "inet", "nodedns", "raw-prerouting")
			var handle string
			for line := range strings.Lines(out) {
				if strings.Contains(line, "ip daddr 169.254.20.10 udp dport 53") {
					_, handle, _ = strings.Cut(strings.TrimSpace(line), "# handle ")
				}
			}
			if handle == "" {
				t.Fatalf("no handle for the udp notrack rule in:\n%s", out)
			}
			before := e.ns.Ruleset()
			args := append([]string{"nft"}, cmd...)
			args[slices.Index(args, "HANDLE")] = handle
			e.ns.Exec(args...)
			if e.ns.Ruleset() == before {
				t.Fatalf("%v changed nothing", args)
			}
			if got, want := e.reconcile(i), []string{iface.ActionRulesRestored}; !slices.Equal(got, want) {
				t.Errorf("actions %v, want %v", got, want)
			}
			e.checkInPlace(i)
		})
	}
}

func TestReconcileReportsErrors(t *testing.T) {
	e := newEnv(t)
	i := e.setup()
	// With IPv6 off on the link the kernel drops the IPv6 address and
	// refuses to add it back: the step fails, is reported, and the rest
	// still runs.
	e.ns.Exec("sysctl", "-q", "-w", "net.ipv6.conf."+e.cfg.Name+".disable_ipv6=1")
	e.ns.IP("addr", "del", "169.254.20.10/32", "dev", e.cfg.Name)
	err := i.Reconcile()
	if err == nil || !strings.Contains(err.Error(), "adding fd00:5e::10/128 to nodelocaldns: ") {
		t.Errorf("Reconcile error %v, want one about adding fd00:5e::10/128", err)
	}
	got := e.rec.take()
	if want := []string{iface.ActionAddressError, iface.ActionAddressRestored}; !slices.Equal(got, want) {
		t.Errorf("actions %v, want %v", got, want)
	}
	if got := e.link().hostAddrs(); !slices.Contains(got, "169.254.20.10/32") {
		t.Errorf("IPv4 address not restored next to the failing IPv6 one: %v", got)
	}

	e.ns.Exec("sysctl", "-q", "-w", "net.ipv6.conf."+e.cfg.Name+".disable_ipv6=0")
	if got := e.reconcile(i); !slices.Contains(got, iface.ActionAddressRestored) {
		t.Errorf("after IPv6 came back, actions %v, want %s", got, iface.ActionAddressRestored)
	}
	e.checkInPlace(i)
}

func TestRunRestoresWithinInterval(t *testing.T) {
	e := newEnv(t)
	const interval = 100 * time.Millisecond
	e.cfg.ReconcileInterval = interval
	e.rec.notify = make(chan string, 16)
	i := e.setup()

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		i.Run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-done })

	e.ns.IP("addr", "del", "169.254.20.10/32", "dev", e.cfg.Name)
	e.ns.Exec("nft", "delete", "table", "inet", "nodedns")
	deleted := time.Now()
	// Within a few intervals (a generous bound for a loaded CI machine).
	ifacetest.Eventually(t, 20*interval, func() string {
		if got := e.link().hostAddrs(); !slices.Equal(got, wantAddrs) {
			return "addresses " + strings.Join(got, ",")
		}
		if !strings.Contains(e.ns.Ruleset(), "table inet nodedns") {
			return "table inet nodedns still missing"
		}
		return ""
	})
	t.Logf("restored %v after the deletion", time.Since(deleted).Round(time.Millisecond))
	seen := map[string]bool{}
	timeout := time.After(5 * time.Second)
	for !seen[iface.ActionAddressRestored] || !seen[iface.ActionRulesRestored] {
		select {
		case a := <-e.rec.notify:
			seen[a] = true
		case <-timeout:
			t.Fatalf("OnReconcile saw %v, want %s and %s", seen, iface.ActionAddressRestored, iface.ActionRulesRestored)
		}
	}
	e.checkInPlace(i)

	// Teardown ends Run even though ctx is still live.
	if err := i.Teardown(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run still running after Teardown")
	}
}

func TestTeardownRemovesEverything(t *testing.T) {
	e := newEnv(t)
	i := e.setup()
	if err := i.Teardown(); err != nil {
		t.Fatal(err)
	}
	if l := e.link(); l != nil {
		t.Errorf("link still there after Teardown: %+v", l)
	}
	if rs := e.ns.Ruleset(); strings.Contains(rs, "nodedns") {
		t.Errorf("rules still there after Teardown:\n%s", rs)
	}
	if err := i.Teardown(); err != nil {
		t.Errorf("second Teardown: %v", err)
	}
	if err := i.Reconcile(); !errors.Is(err, iface.ErrClosed) {
		t.Errorf("Reconcile after Teardown = %v, want ErrClosed", err)
	}
	if got := e.rec.take(); len(got) != 0 {
		t.Errorf("actions after Teardown: %v", got)
	}
}

func TestTeardownOfAdoptedLink(t *testing.T) {
	e := newEnv(t)
	first, err := iface.Setup(context.Background(), e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	first.Close()
	second := e.setup()
	if err := second.Teardown(); err != nil {
		t.Fatal(err)
	}
	if l := e.link(); l != nil {
		t.Errorf("adopted link still there after Teardown")
	}
	if rs := e.ns.Ruleset(); strings.Contains(rs, "nodedns") {
		t.Errorf("rules still there after Teardown:\n%s", rs)
	}
}

func TestTeardownWhenAlreadyGone(t *testing.T) {
	e := newEnv(t)
	i := e.setup()
	e.ns.IP("link", "del", e.cfg.Name)
	e.ns.Exec("nft", "delete", "table", "inet", "nodedns")
	if err := i.Teardown(); err != nil {
		t.Errorf("Teardown with link and table already gone: %v", err)
	}
}

func TestCloseLeavesEverythingInPlace(t *testing.T) {
	e := newEnv(t)
	i, err := iface.Setup(context.Background(), e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := i.Close(); err != nil {
		t.Fatal(err)
	}
	if err := i.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	e.checkInPlace(i)
	if err := i.Teardown(); err != nil {
		t.Errorf("Teardown after Close: %v", err)
	}
	if e.link() == nil {
		t.Error("Teardown after Close removed the link; Close is final")
	}
}

func TestSetupWithoutRules(t *testing.T) {
	e := newEnv(t)
	e.cfg.SetupRules = false
	i := e.setup()
	e.checkInPlace(i)
	if rs := e.ns.Ruleset(); strings.Contains(rs, "nodedns") {
		t.Errorf("rules installed with SetupRules=false:\n%s", rs)
	}
	if got := e.reconcile(i); len(got) != 0 {
		t.Errorf("reconcile did %v, want nothing", got)
	}
}

func TestSetupCustomPorts(t *testing.T) {
	e := newEnv(t)
	e.cfg.Addrs = []netip.Addr{v4}
	e.cfg.Ports = []uint16{53, 5353}
	e.setup()
	rules, _ := parseRuleset(t, e.ns.Ruleset())
	for _, want := range []string{"ip daddr 169.254.20.10 udp dport 5353 notrack", "ip saddr 169.254.20.10 tcp sport 5353 accept"} {
		found := false
		for _, lines := range rules {
			found = found || slices.Contains(lines, want)
		}
		if !found {
			t.Errorf("no rule %q in %q", want, rules)
		}
	}
	if n := len(rules["raw-prerouting"]); n != 8 {
		t.Errorf("raw-prerouting has %d rules, want 8 (2 ports x 2 protocols x 2 directions)", n)
	}
}

func TestSetupRefusesForeignLink(t *testing.T) {
	t.Run("veth", func(t *testing.T) {
		e := newEnv(t)
		e.ns.IP("link", "add", e.cfg.Name, "type", "veth", "peer", "name", "ndt-peer")
		_, err := iface.Setup(context.Background(), e.cfg)
		if err == nil || !strings.Contains(err.Error(), "type veth") {
			t.Fatalf("Setup over a veth: err %v, want a refusal naming type veth", err)
		}
		if got := e.link().hostAddrs(); len(got) != 0 {
			t.Errorf("Setup put addresses on a link it refused: %v", got)
		}
	})
	t.Run("bridge with a port", func(t *testing.T) {
		e := newEnv(t)
		e.ns.IP("link", "add", e.cfg.Name, "type", "bridge")
		e.ns.IP("link", "add", "ndt-port", "type", "veth", "peer", "name", "ndt-peer")
		e.ns.IP("link", "set", "ndt-port", "master", e.cfg.Name)
		_, err := iface.Setup(context.Background(), e.cfg)
		if err == nil || !strings.Contains(err.Error(), "port ndt-port") {
			t.Fatalf("Setup over a bridge with a port: err %v, want a refusal naming the port", err)
		}
	})
}

func TestConcurrentReconcileAndTeardown(t *testing.T) {
	e := newEnv(t)
	e.cfg.ReconcileInterval = time.Millisecond
	i := e.setup()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() { i.Run(ctx) })
	for range 4 {
		wg.Go(func() {
			for range 20 {
				if err := i.Reconcile(); err != nil && !errors.Is(err, iface.ErrClosed) {
					t.Errorf("Reconcile: %v", err)
					return
				}
			}
		})
	}
	wg.Go(func() {
		if err := i.Teardown(); err != nil {
			t.Errorf("Teardown: %v", err)
		}
	})
	wg.Wait()
	if l := e.link(); l != nil {
		t.Error("link back after Teardown: a reconcile ran after it")
	}
}
