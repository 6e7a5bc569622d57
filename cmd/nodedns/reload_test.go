package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/nodedns/nodedns/internal/dnstest"
	"github.com/nodedns/nodedns/internal/dnswire"
	"github.com/nodedns/nodedns/internal/testproc"
	"github.com/nodedns/nodedns/pkg/cache"
	"github.com/nodedns/nodedns/pkg/metrics"
	"github.com/nodedns/nodedns/pkg/upstream"
)

// reloadFixture is a reloader on a config file in a temporary directory,
// logging into a buffer.
type reloadFixture struct {
	t     *testing.T
	dir   string
	path  string
	logs  *testproc.SyncBuffer
	level *slog.LevelVar
	m     *metrics.Metrics
	r     *reloader
}

func newReloadFixture(t *testing.T, file string, args ...string) *reloadFixture {
	t.Helper()
	f := &reloadFixture{t: t, dir: t.TempDir(), logs: &testproc.SyncBuffer{}, level: new(slog.LevelVar), m: metrics.New()}
	f.path = filepath.Join(f.dir, "config.yaml")
	f.write(file)
	cfg, err := parseFlags(append([]string{"--config", f.path, "--listen", "127.0.0.1:5353"}, args...), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	f.r, err = newReloader(cfg, log, f.level, f.m, func(s []netip.AddrPort) (*upstream.Forwarder, error) {
		return newForwarder(cfg, s, log, nil)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.r.close)
	return f
}

// write replaces the file the way editors and kubelet do: a new file
// renamed over the old one.
func (f *reloadFixture) write(data string) {
	f.t.Helper()
	tmp := f.path + ".tmp"
	if err := os.WriteFile(tmp, []byte(data), 0o644); err != nil {
		f.t.Fatal(err)
	}
	if err := os.Rename(tmp, f.path); err != nil {
		f.t.Fatal(err)
	}
}

// servers returns the servers a name is forwarded to now.
func (f *reloadFixture) servers(name string) []netip.AddrPort {
	switch u := f.r.router().Upstream(name).(type) {
	case *upstream.Forwarder:
		return u.Servers()
	case noUpstream:
		return nil
	default:
		f.t.Fatalf("upstream of %s is a %T", name, u)
		return nil
	}
}

func (f *reloadFixture) reloads(result string) float64 {
	f.t.Helper()
	n, err := testutil.GatherAndCount(f.m.Registry(), "nodedns_config_reloads_total")
	if err != nil || n != 2 {
		f.t.Fatalf("config_reloads_total: %d series, %v", n, err)
	}
	mfs, _ := f.m.Registry().Gather()
	for _, mf := range mfs {
		if mf.GetName() != "nodedns_config_reloads_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == result {
				return m.GetCounter().GetValue()
			}
		}
	}
	return -1
}

func exchangeA(t *testing.T, f *reloadFixture, name string) string {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeA)
	q, _ := m.Pack()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b, err := f.r.router().Exchange(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	r := new(dns.Msg)
	if err := r.Unpack(b); err != nil || len(r.Answer) == 0 {
		t.Fatalf("answer %v %v", r, err)
	}
	return r.Answer[0].(*dns.A).A.String()
}

func TestReloadConfigFile(t *testing.T) {
	a := dnstest.Start(t, "127.0.0.1:0", dnstest.WithRecords("api.example.com. 60 IN A 192.0.2.1"))
	b := dnstest.Start(t, "127.0.0.1:0", dnstest.WithRecords("api.example.com. 60 IN A 192.0.2.2"))
	f := newReloadFixture(t, fmt.Sprintf("upstream: [%s]\nlog-level: info\nmax-ttl: 30s\n", a.Addr()))
	c, err := cache.New(cache.Config{})
	if err != nil {
		t.Fatal(err)
	}
	f.r.setCache(c)
	if got := exchangeA(t, f, "api.example.com."); got != "192.0.2.1" {
		t.Fatalf("before: %s", got)
	}
	fillCache(t, c, "api.example.com.")

	// A change of upstream and log level applies; max-ttl waits for a
	// restart, and says so.
	f.write(fmt.Sprintf("upstream: [%s]\nlog-level: debug\nmax-ttl: 10s\n", b.Addr()))
	f.r.poll()
	if got := f.servers("api.example.com."); !slices.Equal(got, []netip.AddrPort{b.Addr()}) {
		t.Errorf("after the change: upstreams %v, want %v", got, b.Addr())
	}
	if got := exchangeA(t, f, "api.example.com."); got != "192.0.2.2" {
		t.Errorf("after the change: %s", got)
	}
	if f.level.Level() != slog.LevelDebug {
		t.Errorf("log level %v, want debug", f.level.Level())
	}
	if c.Len() != 0 {
		t.Errorf("%d cache entries of the old upstream left", c.Len())
	}
	logs := f.logs.String()
	if !strings.Contains(logs, "takes effect only at a restart") || !strings.Contains(logs, "key=max-ttl") {
		t.Errorf("no restart warning naming max-ttl:\n%s", logs)
	}
	if f.reloads("ok") != 1 {
		t.Errorf("reloads ok = %v", f.reloads("ok"))
	}

	// Invalid: the error names the key and line, b stays.
	f.write(fmt.Sprintf("upstream: [%s]\nmax-ttl: 10s\nbogus-key: 1\n", a.Addr()))
	f.r.poll()
	if got := f.servers("api.example.com."); !slices.Equal(got, []netip.AddrPort{b.Addr()}) {
		t.Errorf("after a bad file: upstreams %v, want %v still", got, b.Addr())
	}
	if !strings.Contains(f.logs.String(), f.path+":3: bogus-key: unknown key") {
		t.Errorf("log does not name the bad key:\n%s", f.logs.String())
	}
	// Reported once, not on every poll.
	f.r.poll()
	if f.reloads("error") != 1 {
		t.Errorf("reloads error = %v, want 1", f.reloads("error"))
	}

	// A missing file is an error too, and the configuration stays.
	os.Remove(f.path)
	f.r.poll()
	if f.reloads("error") != 2 || !slices.Equal(f.servers("x."), []netip.AddrPort{b.Addr()}) {
		t.Errorf("missing file: reloads error %v, upstreams %v", f.reloads("error"), f.servers("x."))
	}
	// Back to the first: both apply.
	f.write(fmt.Sprintf("upstream: [%s]\nlog-level: info\nmax-ttl: 30s\n", a.Addr()))
	f.r.poll()
	if got := f.servers("api.example.com."); !slices.Equal(got, []netip.AddrPort{a.Addr()}) || f.level.Level() != slog.LevelInfo {
		t.Errorf("after the fix: upstreams %v level %v", got, f.level.Level())
	}
	if f.reloads("ok") != 2 {
		t.Errorf("reloads ok = %v, want 2", f.reloads("ok"))
	}
}

// TestReloadKeepsForwarders: an unchanged server list keeps its
// forwarder (health state, idle connections) across a reload.
func TestReloadKeepsForwarders(t *testing.T) {
	f := newReloadFixture(t, "upstream: [192.0.2.1]\nstub-domain: {corp.example: [192.0.2.9]}\n")
	def, stub := f.r.router().Upstream("x."), f.r.router().Upstream("corp.example.")
	f.write("upstream: [192.0.2.1]\nstub-domain: {corp.example: [192.0.2.9], lab.example: [192.0.2.8]}\n")
	f.r.poll()
	if f.r.router().Upstream("x.") != def || f.r.router().Upstream("corp.example.") != stub {
		t.Error("a forwarder with unchanged servers was replaced")
	}
	if got := f.servers("a.lab.example."); !slices.Equal(got, []netip.AddrPort{netip.MustParseAddrPort("192.0.2.8:53")}) {
		t.Errorf("new stub domain: %v", got)
	}
}

// kubeDNSDir lays out a ConfigMap volume as kubelet does (see
// pkg/config's tests) and swaps ..data to update it.
type kubeDNSDir struct {
	t   *testing.T
	dir string
	n   int
}

func (k *kubeDNSDir) update(data map[string]string) {
	k.t.Helper()
	k.n++
	ts := filepath.Join(k.dir, fmt.Sprintf("..2026_01_01_00_00_%02d", k.n))
	if err := os.Mkdir(ts, 0o755); err != nil {
		k.t.Fatal(err)
	}
	for key, v := range data {
		if err := os.WriteFile(filepath.Join(ts, key), []byte(v), 0o644); err != nil {
			k.t.Fatal(err)
		}
		if _, err := os.Lstat(filepath.Join(k.dir, key)); err != nil {
			if err := os.Symlink(filepath.Join("..data", key), filepath.Join(k.dir, key)); err != nil {
				k.t.Fatal(err)
			}
		}
	}
	tmp := filepath.Join(k.dir, "..data_tmp")
	if err := os.Symlink(filepath.Base(ts), tmp); err != nil {
		k.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(k.dir, "..data")); err != nil {
		k.t.Fatal(err)
	}
}

func TestReloadKubeDNS(t *testing.T) {
	kd := &kubeDNSDir{t: t, dir: t.TempDir()}
	kd.update(map[string]string{"stubDomains": `{"corp.example": ["192.0.2.53"]}`})
	f := newReloadFixture(t, "", "--upstream", "192.0.2.1", "--kube-dns-config-dir", kd.dir)
	ap := func(s string) []netip.AddrPort { return []netip.AddrPort{netip.MustParseAddrPort(s)} }
	if got := f.servers("www.corp.example."); !slices.Equal(got, ap("192.0.2.53:53")) {
		t.Fatalf("stub domain at start: %v", got)
	}
	if got := f.servers("example.com."); !slices.Equal(got, ap("192.0.2.1:53")) {
		t.Fatalf("default at start: %v", got)
	}

	kd.update(map[string]string{"stubDomains": `{"corp.example": ["192.0.2.54:5353"]}`, "upstreamNameservers": `["192.0.2.2"]`})
	f.r.poll()
	if got := f.servers("www.corp.example."); !slices.Equal(got, ap("192.0.2.54:5353")) {
		t.Errorf("stub domain after the swap: %v", got)
	}
	if got := f.servers("example.com."); !slices.Equal(got, ap("192.0.2.1:53")) {
		t.Errorf("--upstream must win over upstreamNameservers: %v", got)
	}

	// Invalid JSON and a stub domain under the cluster domain: rejected,
	// named, and the running routes stay.
	kd.update(map[string]string{"stubDomains": `{"corp.example": ["192.0.2.55"],}`})
	f.r.poll()
	if !strings.Contains(f.logs.String(), filepath.Join(kd.dir, "stubDomains")+":1: invalid JSON") {
		t.Errorf("log does not name the file:\n%s", f.logs.String())
	}
	kd.update(map[string]string{"stubDomains": `{"svc.cluster.local": ["192.0.2.55"]}`})
	f.r.poll()
	if !strings.Contains(f.logs.String(), `\"svc.cluster.local\": under the cluster domain cluster.local`) {
		t.Errorf("log does not reject the cluster domain:\n%s", f.logs.String())
	}
	if got := f.servers("www.corp.example."); !slices.Equal(got, ap("192.0.2.54:5353")) {
		t.Errorf("after bad updates: %v, want the previous", got)
	}
	if f.reloads("error") != 2 || f.reloads("ok") != 1 {
		t.Errorf("reloads ok %v error %v, want 1, 2", f.reloads("ok"), f.reloads("error"))
	}

	// The ConfigMap deleted (kubelet empties an optional volume): back to
	// no stub domains.
	kd.update(map[string]string{})
	os.Remove(filepath.Join(kd.dir, "stubDomains"))
	os.Remove(filepath.Join(kd.dir, "upstreamNameservers"))
	f.r.poll()
	if got := f.servers("www.corp.example."); !slices.Equal(got, ap("192.0.2.1:53")) {
		t.Errorf("after the ConfigMap went: %v, want the default", got)
	}
}

// TestUpstreamNameserversReplaceResolvConf: without --upstream,
// upstreamNameservers replaces resolv.conf, and resolv.conf is used again
// when they go.
func TestUpstreamNameserversReplaceResolvConf(t *testing.T) {
	resolv := filepath.Join(t.TempDir(), "resolv.conf")
	os.WriteFile(resolv, []byte("nameserver 192.0.2.7\n"), 0o644)
	kd := &kubeDNSDir{t: t, dir: t.TempDir()}
	kd.update(map[string]string{"upstreamNameservers": `["192.0.2.8"]`})
	f := newReloadFixture(t, "", "--resolv-conf", resolv, "--kube-dns-config-dir", kd.dir)
	ap := func(s string) []netip.AddrPort { return []netip.AddrPort{netip.MustParseAddrPort(s)} }
	if got := f.servers("example.com."); !slices.Equal(got, ap("192.0.2.8:53")) {
		t.Fatalf("with upstreamNameservers: %v", got)
	}
	kd.update(map[string]string{"upstreamNameservers": `[]`})
	f.r.poll()
	if got := f.servers("example.com."); !slices.Equal(got, ap("192.0.2.7:53")) {
		t.Fatalf("upstreamNameservers empty: %v, want resolv.conf's", got)
	}
	// resolv.conf itself changing is picked up too.
	os.WriteFile(resolv+".tmp", []byte("nameserver 192.0.2.6\n"), 0o644)
	os.Rename(resolv+".tmp", resolv)
	f.r.poll()
	if got := f.servers("example.com."); !slices.Equal(got, ap("192.0.2.6:53")) {
		t.Errorf("after resolv.conf changed: %v", got)
	}
}

// fillCache stores an answer for name in c.
func fillCache(t *testing.T, c *cache.Cache, name string) {
	t.Helper()
	q := new(dns.Msg)
	q.SetQuestion(name, dns.TypeA)
	r := new(dns.Msg)
	r.SetReply(q)
	rr, _ := dns.NewRR(name + " 60 IN A 192.0.2.1")
	r.Answer = append(r.Answer, rr)
	qb, _ := q.Pack()
	rb, _ := r.Pack()
	var pq dnswire.Query
	if err := dnswire.ParseQuery(qb, &pq); err != nil {
		t.Fatal(err)
	}
	c.Set(&pq, rb)
	if c.Len() == 0 {
		t.Fatal("not cached")
	}
}

// The query log is a live key: the resolver is told on and off, and of a
// new rate, and not told when neither changed.
func TestReloadQueryLog(t *testing.T) {
	f := newReloadFixture(t, "upstream: [127.0.0.1:5399]\n")
	type call struct {
		on   bool
		rate int
	}
	var calls []call
	f.r.setQueryLog = func(on bool, rate int) error { calls = append(calls, call{on, rate}); return nil }
	for _, c := range []struct {
		file string
		want []call
	}{
		{"upstream: [127.0.0.1:5399]\nquery-log: true\n", []call{{true, 100}}},
		{"upstream: [127.0.0.1:5399]\nquery-log: true\nquery-log-rate: 5\n", []call{{true, 5}}},
		{"upstream: [127.0.0.1:5399]\nquery-log: true\nquery-log-rate: 5\nlog-level: debug\n", nil},
		{"upstream: [127.0.0.1:5399]\n", []call{{false, 100}}},
	} {
		calls = nil
		f.write(c.file)
		f.r.poll()
		if !slices.Equal(calls, c.want) {
			t.Errorf("after %q: SetQueryLog calls %v, want %v", c.file, calls, c.want)
		}
	}
	if logs := f.logs.String(); strings.Contains(logs, "takes effect only at a restart") {
		t.Errorf("a query log change waits for a restart:\n%s", logs)
	}
}
