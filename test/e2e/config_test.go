package e2e

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/nodedns/nodedns/internal/dnstest"
)

// client sends queries to the daemon without pause (paced, not
// synchronised, by a ticker) until stopped, and counts the answers that
// were not NOERROR or NXDOMAIN, timeouts included.
type client struct {
	d        *daemon
	names    func(i int) string
	sent     atomic.Int64
	failures atomic.Int64
	firstErr atomic.Value
	stop     chan struct{}
	wg       sync.WaitGroup
}

func startClient(d *daemon, names func(i int) string) *client {
	c := &client{d: d, names: names, stop: make(chan struct{})}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-c.stop:
				return
			case <-tick.C:
			}
			name := c.names(i)
			r, err := d.query("udp", name, dns.TypeA)
			c.sent.Add(1)
			if err == nil && r.Rcode != dns.RcodeSuccess && r.Rcode != dns.RcodeNameError {
				err = fmt.Errorf("%s: rcode %s", name, dns.RcodeToString[r.Rcode])
			}
			if err != nil {
				c.failures.Add(1)
				c.firstErr.CompareAndSwap(nil, err)
			}
		}
	}()
	return c
}

// finish stops the client and fails t if any query failed.
func (c *client) finish(t *testing.T) {
	t.Helper()
	close(c.stop)
	c.wg.Wait()
	if n := c.failures.Load(); n != 0 {
		t.Errorf("%d of %d queries failed while the configuration changed; first: %v", n, c.sent.Load(), c.firstErr.Load())
	}
	t.Logf("%d queries, %d failed", c.sent.Load(), c.failures.Load())
}

// replaceFile writes data to a new file renamed over path, as editors
// and kubelet do.
func replaceFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path+".tmp", []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
}

func exampleServer(t *testing.T, ip string) *dnstest.Server {
	return dnstest.Start(t, "127.0.0.1:0", dnstest.WithZone("example.com."),
		dnstest.WithRecords("api.example.com. 60 IN A "+ip))
}

// TestConfigFileReload: with a zone file and a config file, changing the
// upstream in the config file moves queries to the new upstream while a
// client queries without a single failure; an invalid file is logged,
// naming the key and line, and the running configuration keeps serving.
func TestConfigFileReload(t *testing.T) {
	a, b := exampleServer(t, "192.0.2.1"), exampleServer(t, "192.0.2.2")
	path := filepath.Join(t.TempDir(), "config.yaml")
	replaceFile(t, path, fmt.Sprintf("upstream: [%s]\nmax-ttl: 30s\n", a.Addr()))
	d := startDaemon(t, "--zone-file", exampleZone(t), "--config", path)
	d.WaitReady(10 * time.Second)
	if got := firstA(d, "api.example.com."); got != "192.0.2.1" {
		t.Fatalf("api.example.com = %q, want a's 192.0.2.1", got)
	}

	// Half the queries hit the cache (api), half miss (a new name each).
	c := startClient(d, func(i int) string {
		if i%2 == 0 {
			return "api.example.com."
		}
		return fmt.Sprintf("q%d.example.com.", i)
	})
	waitFor(t, "queries reaching a", 10*time.Second, func() bool { return a.Len() > 20 })
	replaceFile(t, path, fmt.Sprintf("upstream: [%s]\nmax-ttl: 30s\n", b.Addr()))
	// The cache is emptied with the change: even the cached name moves.
	waitFor(t, "api.example.com from b", 10*time.Second, func() bool { return firstA(d, "api.example.com.") == "192.0.2.2" })
	atSwitch, bAtSwitch := a.Len(), b.Len()
	waitFor(t, "queries reaching b", 10*time.Second, func() bool { return b.Len() > bAtSwitch+20 })
	c.finish(t)
	if n := a.Len() - atSwitch; n > 0 {
		t.Errorf("%d queries reached the old upstream after the change", n)
	}
	if got := d.Metric(`nodedns_config_reloads_total{result="ok"}`); got != 1 {
		t.Errorf(`config_reloads_total{result="ok"} = %v, want 1`, got)
	}

	// Invalid: an unknown key and a bad value. Logged with file, line and
	// key; b keeps answering.
	replaceFile(t, path, fmt.Sprintf("upstream: [%s]\nmax-ttl: forever\nupstreams: [%s]\n", a.Addr(), a.Addr()))
	waitFor(t, "the error in the log", 10*time.Second, func() bool {
		return strings.Contains(d.Logs.String(), path+":3: upstreams: unknown key")
	})
	if !strings.Contains(d.Logs.String(), path+":2: max-ttl:") {
		t.Errorf("the log does not name max-ttl on line 2:\n%s", d.Logs.String())
	}
	before := b.Len()
	if r, err := d.query("udp", "after-bad-file.example.com.", dns.TypeA); err != nil || r.Rcode != dns.RcodeNameError {
		t.Errorf("after the bad file: %v %v", r, err)
	}
	if b.Len() != before+1 || a.Len() != atSwitch {
		t.Errorf("after the bad file the query went to a (%d) or nowhere (b %d -> %d)", a.Len()-atSwitch, before, b.Len())
	}
	if got := d.Metric(`nodedns_config_reloads_total{result="error"}`); got != 1 {
		t.Errorf(`config_reloads_total{result="error"} = %v, want 1`, got)
	}

	// A key that needs a restart: applied keys apply, it is named.
	replaceFile(t, path, fmt.Sprintf("upstream: [%s]\nmax-ttl: 10s\n", b.Addr()))
	waitFor(t, "the restart warning", 10*time.Second, func() bool {
		return strings.Contains(d.Logs.String(), "takes effect only at a restart") && strings.Contains(d.Logs.String(), "key=max-ttl")
	})
	if got := d.Metric("nodedns_config_last_reload_success_timestamp_seconds"); got < float64(time.Now().Add(-time.Minute).Unix()) {
		t.Errorf("last reload success timestamp %v", got)
	}

	// The query log, live: on, off, and on again.
	reloads := d.Metric(`nodedns_config_reloads_total{result="ok"}`)
	setQueryLog := func(on bool) {
		t.Helper()
		replaceFile(t, path, fmt.Sprintf("upstream: [%s]\nmax-ttl: 10s\nquery-log: %v\n", b.Addr(), on))
		reloads++
		waitFor(t, fmt.Sprintf("the reload with query-log %v", on), 10*time.Second, func() bool {
			return d.Metric(`nodedns_config_reloads_total{result="ok"}`) == reloads
		})
	}
	loggedLine := func(name string) func() bool {
		return func() bool { return strings.Contains(d.Logs.String(), "name="+name) }
	}
	setQueryLog(true)
	if _, err := d.query("udp", "logged.example.com.", dns.TypeA); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the query line of logged.example.com", 10*time.Second, loggedLine("logged.example.com."))
	setQueryLog(false)
	if _, err := d.query("udp", "unlogged.example.com.", dns.TypeA); err != nil {
		t.Fatal(err)
	}
	setQueryLog(true)
	if _, err := d.query("udp", "logged-again.example.com.", dns.TypeA); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the query line of logged-again.example.com", 10*time.Second, loggedLine("logged-again.example.com."))
	if loggedLine("unlogged.example.com.")() {
		t.Error("a query answered while the query log was off was logged")
	}
	if strings.Contains(d.Logs.String(), "key=query-log") {
		t.Error("query-log was reported as needing a restart")
	}
}

// TestConfigFileBadAtStart: an unknown key at start is an error naming
// file, line and key, and exit status 1.
func TestConfigFileBadAtStart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.yaml")
	replaceFile(t, path, "upstream: [127.0.0.1]\nmax-tll: 30s\n")
	d := startDaemon(t, "--zone-file", exampleZone(t), "--config", path)
	select {
	case <-d.Done:
	case <-time.After(10 * time.Second):
		t.Fatal("nodedns kept running with a bad config file")
	}
	if d.Cmd.ProcessState.ExitCode() != 1 {
		t.Errorf("exit status %d, want 1", d.Cmd.ProcessState.ExitCode())
	}
	if want := path + ":2: max-tll: unknown key"; !strings.Contains(d.Logs.String(), want) {
		t.Errorf("output does not contain %q:\n%s", want, d.Logs.String())
	}
}

// configMapDir lays out a directory as kubelet does for a ConfigMap
// volume: the files in a timestamped directory, ..data pointing at it,
// and each key a symlink through ..data. update writes a new version and
// swaps ..data with one rename.
type configMapDir struct {
	t   *testing.T
	dir string
	n   int
}

func (c *configMapDir) update(data map[string]string) {
	c.t.Helper()
	c.n++
	ts := filepath.Join(c.dir, fmt.Sprintf("..2026_01_01_00_00_%02d.%d", c.n, os.Getpid()))
	if err := os.Mkdir(ts, 0o755); err != nil {
		c.t.Fatal(err)
	}
	for k, v := range data {
		if err := os.WriteFile(filepath.Join(ts, k), []byte(v), 0o644); err != nil {
			c.t.Fatal(err)
		}
		if _, err := os.Lstat(filepath.Join(c.dir, k)); err != nil {
			if err := os.Symlink(filepath.Join("..data", k), filepath.Join(c.dir, k)); err != nil {
				c.t.Fatal(err)
			}
		}
	}
	tmp := filepath.Join(c.dir, "..data_tmp")
	if err := os.Symlink(filepath.Base(ts), tmp); err != nil {
		c.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(c.dir, "..data")); err != nil {
		c.t.Fatal(err)
	}
}

// TestKubeDNSStubDomains: the kube-dns ConfigMap's stubDomains route
// corp.example to its own server, and a ConfigMap update (the ..data
// swap) moves it, with no failed query; bad updates are logged and leave
// the routes alone.
func TestKubeDNSStubDomains(t *testing.T) {
	def := exampleServer(t, "192.0.2.1")
	corp := func(ip string) *dnstest.Server {
		return dnstest.Start(t, "127.0.0.1:0", dnstest.WithZone("corp.example."),
			dnstest.WithRecords("www.corp.example. 60 IN A "+ip))
	}
	c1, c2 := corp("10.0.0.1"), corp("10.0.0.2")
	cm := &configMapDir{t: t, dir: t.TempDir()}
	cm.update(map[string]string{"stubDomains": fmt.Sprintf(`{"corp.example": [%q]}`, c1.Addr())})
	d := startDaemon(t, "--zone-file", exampleZone(t), "--upstream", def.Addr().String(), "--kube-dns-config-dir", cm.dir)
	d.WaitReady(10 * time.Second)
	if got := firstA(d, "www.corp.example."); got != "10.0.0.1" {
		t.Fatalf("www.corp.example = %q, want c1's 10.0.0.1", got)
	}
	if got := firstA(d, "api.example.com."); got != "192.0.2.1" {
		t.Fatalf("api.example.com = %q, want the default upstream's", got)
	}
	if n := def.Count("www.corp.example.", dns.TypeA); n != 0 {
		t.Errorf("the default upstream was asked for www.corp.example %d times", n)
	}

	c := startClient(d, func(i int) string {
		switch i % 3 {
		case 0:
			return "www.corp.example."
		case 1:
			return fmt.Sprintf("q%d.corp.example.", i)
		}
		return "api.example.com."
	})
	waitFor(t, "queries reaching c1", 10*time.Second, func() bool { return c1.Len() > 20 })
	cm.update(map[string]string{"stubDomains": fmt.Sprintf(`{"corp.example": [%q]}`, c2.Addr())})
	waitFor(t, "www.corp.example from c2", 10*time.Second, func() bool { return firstA(d, "www.corp.example.") == "10.0.0.2" })
	atSwitch, c2AtSwitch := c1.Len(), c2.Len()
	waitFor(t, "queries reaching c2", 10*time.Second, func() bool { return c2.Len() > c2AtSwitch+20 })
	c.finish(t)
	if n := c1.Len() - atSwitch; n > 0 {
		t.Errorf("%d queries reached the old stub server after the update", n)
	}

	// Invalid JSON, then a stub domain under the cluster zone: each is
	// logged naming the file, and c2 keeps the domain.
	file := filepath.Join(cm.dir, "stubDomains")
	cm.update(map[string]string{"stubDomains": fmt.Sprintf(`{"corp.example": [%q],}`, c1.Addr())})
	waitFor(t, "the JSON error in the log", 10*time.Second, func() bool {
		return strings.Contains(d.Logs.String(), file+":1: invalid JSON")
	})
	cm.update(map[string]string{"stubDomains": fmt.Sprintf(`{"corp.example": [%q], "svc.cluster.local": [%q]}`, c1.Addr(), c1.Addr())})
	waitFor(t, "the cluster domain error in the log", 10*time.Second, func() bool {
		return strings.Contains(d.Logs.String(), `svc.cluster.local\": under the cluster domain cluster.local`)
	})
	if got := firstA(d, "www.corp.example."); got != "10.0.0.2" {
		t.Errorf("after bad updates www.corp.example = %q, want c2's 10.0.0.2", got)
	}
	if r, err := d.query("udp", "nope.svc.cluster.local.", dns.TypeA); err != nil || r.Rcode != dns.RcodeNameError {
		t.Errorf("cluster name: %v %v, want NXDOMAIN from the zone", r, err)
	}
	if got := d.Metric(`nodedns_config_reloads_total{result="error"}`); got != 2 {
		t.Errorf(`config_reloads_total{result="error"} = %v, want 2`, got)
	}
}

// TestListenErrorExits: an address that cannot be bound stops the start
// with exit status 1, also with the API watches and the last known zone's
// saver already running (they are stopped, not waited for forever).
func TestListenErrorExits(t *testing.T) {
	env := sharedEnv(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	d := startDaemon(t, "--kubeconfig", env.DNSKubeconfig, "--upstream", "127.0.0.1:9",
		"--last-known-zone", filepath.Join(t.TempDir(), "zone.json"), "--listen", taken.Addr().String())
	select {
	case <-d.Done:
	case <-time.After(15 * time.Second):
		t.Fatalf("nodedns kept running without its listen address:\n%s", d.Logs.String())
	}
	if d.Cmd.ProcessState.ExitCode() != 1 {
		t.Errorf("exit status %d, want 1", d.Cmd.ProcessState.ExitCode())
	}
	if !strings.Contains(d.Logs.String(), "address already in use") {
		t.Errorf("the log does not say why:\n%s", d.Logs.String())
	}
}
