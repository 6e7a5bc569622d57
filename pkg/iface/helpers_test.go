package iface_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/nodedns/nodedns/pkg/iface"
	"github.com/nodedns/nodedns/pkg/iface/ifacetest"
)

var (
	v4 = netip.MustParseAddr("169.254.20.10")
	v6 = netip.MustParseAddr("fd00:5e::10")
)

// recorder collects OnReconcile actions.
type recorder struct {
	mu      sync.Mutex
	actions []string
	notify  chan string // optional; gets every action without blocking
}

func (r *recorder) on(action string) {
	r.mu.Lock()
	r.actions = append(r.actions, action)
	r.mu.Unlock()
	if r.notify != nil {
		select {
		case r.notify <- action:
		default:
		}
	}
}

// take returns the actions so far, sorted, and forgets them.
func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	a := r.actions
	r.actions = nil
	slices.Sort(a)
	return a
}

// env is one namespace with the config a test sets up in it.
type env struct {
	t   *testing.T
	ns  *ifacetest.NetNS
	rec *recorder
	cfg iface.Config
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ns := ifacetest.New(t)
	rec := &recorder{}
	return &env{t: t, ns: ns, rec: rec, cfg: iface.Config{
		Name:        iface.DefaultName,
		Addrs:       []netip.Addr{v4, v6},
		SetupRules:  true,
		Logger:      slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
		OnReconcile: rec.on,
		NetNSPath:   ns.Path(),
	}}
}

// setup runs iface.Setup in the namespace and tears down at the end of
// the test (a no-op if the test already did).
func (e *env) setup() *iface.Interface {
	e.t.Helper()
	i, err := iface.Setup(context.Background(), e.cfg)
	if err != nil {
		e.t.Fatalf("Setup: %v", err)
	}
	e.t.Cleanup(func() {
		if err := i.Teardown(); err != nil {
			e.t.Errorf("Teardown at cleanup: %v", err)
		}
	})
	return i
}

// reconcile runs one step, which must succeed, and returns the actions.
func (e *env) reconcile(i *iface.Interface) []string {
	e.t.Helper()
	if err := i.Reconcile(); err != nil {
		e.t.Fatalf("Reconcile: %v", err)
	}
	return e.rec.take()
}

// linkState is what `ip -d -j addr show` says about the link.
type linkState struct {
	Name     string   `json:"ifname"`
	Flags    []string `json:"flags"`
	LinkInfo struct {
		Kind string `json:"info_kind"`
	} `json:"linkinfo"`
	Addrs []struct {
		Family    string `json:"family"`
		Local     string `json:"local"`
		PrefixLen int    `json:"prefixlen"`
		Tentative bool   `json:"tentative"`
		NoDAD     bool   `json:"nodad"`
	} `json:"addr_info"`
}

// link returns the link's state, or nil when there is no such link.
func (e *env) link() *linkState {
	e.t.Helper()
	out, err := e.ns.TryIP("-d", "-j", "addr", "show", "dev", e.cfg.Name)
	if err != nil {
		if strings.Contains(out, "does not exist") {
			return nil
		}
		e.t.Fatal(err)
	}
	var ls []linkState
	if err := json.Unmarshal([]byte(out), &ls); err != nil || len(ls) != 1 {
		e.t.Fatalf("parsing ip -j output %q: %v", out, err)
	}
	return &ls[0]
}

// hostAddrs lists the link's addresses as "addr/len" plus " tentative"
// when the kernel would not use it yet.
func (l *linkState) hostAddrs() []string {
	var out []string
	for _, a := range l.Addrs {
		if strings.HasPrefix(a.Local, "fe80:") {
			continue // the kernel's own link-local address
		}
		s := fmt.Sprintf("%s/%d", a.Local, a.PrefixLen)
		if a.Tentative {
			s += " tentative"
		}
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

var wantAddrs = []string{"169.254.20.10/32", "fd00:5e::10/128"}

// checkInPlace fails the test unless the link is up with both addresses
// and the rules are in place.
func (e *env) checkInPlace(i *iface.Interface) {
	e.t.Helper()
	l := e.link()
	if l == nil {
		e.t.Fatalf("link %s missing", e.cfg.Name)
	}
	if !slices.Contains(l.Flags, "UP") {
		e.t.Errorf("link flags %v: not UP", l.Flags)
	}
	if l.LinkInfo.Kind != i.Kind() {
		e.t.Errorf("link kind %q, Kind() = %q", l.LinkInfo.Kind, i.Kind())
	}
	if got := l.hostAddrs(); !slices.Equal(got, wantAddrs) {
		e.t.Errorf("addresses %v, want %v", got, wantAddrs)
	}
	if e.cfg.SetupRules {
		checkRules(e.t, e.ns.Ruleset())
	}
}

// wantRuleLines are the rules as nft prints them (counters and comments
// stripped), for the addresses v4 and v6 and port 53: every address,
// protocol and direction, untracked in both raw chains, accepted in both
// filter chains.
func wantRuleLines() map[string][]string {
	want := map[string][]string{}
	for _, chain := range []string{"raw-prerouting", "raw-output", "filter-input", "filter-output"} {
		verdict := "accept"
		if strings.HasPrefix(chain, "raw-") {
			verdict = "notrack"
		}
		for _, a := range []string{"ip 169.254.20.10", "ip6 fd00:5e::10"} {
			fam, addr, _ := strings.Cut(a, " ")
			for _, proto := range []string{"udp", "tcp"} {
				want[chain] = append(want[chain],
					fmt.Sprintf("%s daddr %s %s dport 53 %s", fam, addr, proto, verdict),
					fmt.Sprintf("%s saddr %s %s sport 53 %s", fam, addr, proto, verdict))
			}
		}
	}
	return want
}

// parseRuleset returns the rules of table inet nodedns per chain, without
// counters and comments, and each chain's header line.
func parseRuleset(t testing.TB, ruleset string) (rules map[string][]string, headers map[string]string) {
	t.Helper()
	rules, headers = map[string][]string{}, map[string]string{}
	inTable, chain := false, ""
	for line := range strings.Lines(ruleset) {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "table "):
			inTable = line == "table inet nodedns {"
		case !inTable || line == "" || line == "}":
		case strings.HasPrefix(line, "chain "):
			chain = strings.TrimSuffix(strings.TrimPrefix(line, "chain "), " {")
		case strings.HasPrefix(line, "type "):
			headers[chain] = line
		default:
			if c, _, ok := strings.Cut(line, " comment "); ok {
				line = c
			}
			f := strings.Fields(line)
			if k := slices.Index(f, "counter"); k >= 0 && k+4 < len(f) {
				f = slices.Delete(f, k, k+5) // counter packets N bytes M
			}
			rules[chain] = append(rules[chain], strings.Join(f, " "))
		}
	}
	return rules, headers
}

// checkRules fails unless the ruleset holds exactly the wanted table.
func checkRules(t testing.TB, ruleset string) {
	t.Helper()
	rules, headers := parseRuleset(t, ruleset)
	want := wantRuleLines()
	for chain, lines := range want {
		got := slices.Sorted(slices.Values(rules[chain]))
		w := slices.Sorted(slices.Values(lines))
		if !slices.Equal(got, w) {
			t.Errorf("chain %s rules:\n got %q\nwant %q\nruleset:\n%s", chain, got, w, ruleset)
		}
	}
	wantHeaders := map[string]string{
		"raw-prerouting": "type filter hook prerouting priority raw; policy accept;",
		"raw-output":     "type filter hook output priority raw; policy accept;",
		"filter-input":   "type filter hook input priority filter; policy accept;",
		"filter-output":  "type filter hook output priority filter; policy accept;",
	}
	if !maps.Equal(headers, wantHeaders) {
		t.Errorf("chains %q, want %q", headers, wantHeaders)
	}
	if n := strings.Count(ruleset, `comment "nodedns: `); n != 32 {
		t.Errorf("%d rules carry a nodedns comment, want 32", n)
	}
}

// testWriter sends log lines to t.Log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}
