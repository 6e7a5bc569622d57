// Package hostile runs the nodedns binary under hostile conditions (issue
// #7): malformed and abusive packets, failing and forging upstreams, an API
// server that goes away and comes back with changes the watch missed,
// floods, and queries to addresses it must not answer on. Every test logs
// the figures it measured on lines starting with "FIGURE:".
//
// All traffic stays on loopback (127.0.0.x) or inside network namespaces
// the tests create.
package hostile

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/nodedns/nodedns/internal/testproc"
)

// nodednsBin is the daemon, built once by TestMain.
var nodednsBin string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "nodedns-hostile-bin-")
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

// figure logs one measured result for the lead to collect.
func figure(t testing.TB, format string, args ...any) {
	t.Helper()
	t.Logf("FIGURE: %s: "+format, append([]any{t.Name()}, args...)...)
}

// exampleZone is the seed zone file; its names answer without an API server.
const exampleZone = "../../examples/zone.yaml"

// Names of exampleZone used as "good" queries.
const (
	webName = "web.default.svc.cluster.local."
	webIP   = "10.96.0.50"
)

// daemon is one nodedns process on loopback ports.
type daemon struct {
	t       testing.TB
	cmd     *exec.Cmd
	dns     string // 127.0.0.1:PORT
	health  string
	metrics string
	logs    *testproc.SyncBuffer
	done    chan struct{}
	err     error // valid once done is closed
}

// startDaemon runs nodedns on free loopback ports with the flags every test
// needs plus args (a later flag wins). It does not wait for readiness. If
// the process exits before the test ends, the test fails: a crash.
func startDaemon(t testing.TB, args ...string) *daemon {
	t.Helper()
	d := &daemon{
		t:       t,
		dns:     fmt.Sprintf("127.0.0.1:%d", testproc.FreePort(t)),
		health:  fmt.Sprintf("127.0.0.1:%d", testproc.FreePort(t)),
		metrics: fmt.Sprintf("127.0.0.1:%d", testproc.FreePort(t)),
		logs:    &testproc.SyncBuffer{},
		done:    make(chan struct{}),
	}
	all := append([]string{
		"--listen", d.dns,
		"--health-listen", d.health,
		"--metrics-listen", d.metrics,
		"--setup-interface=false",
		"--shutdown-grace=0s",
		"--log-level=debug",
		"--handoff-socket", filepath.Join(t.TempDir(), "handoff.sock"),
	}, args...)
	d.cmd = exec.Command(nodednsBin, all...)
	d.cmd.Stdout, d.cmd.Stderr = d.logs, d.logs
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		d.err = d.cmd.Wait()
		close(d.done)
	}()
	t.Cleanup(func() {
		crashed := d.exited()
		d.stop()
		if crashed {
			t.Errorf("nodedns exited during the test: %v", d.err)
		}
		if t.Failed() {
			t.Logf("nodedns logs (tail):\n%s", tail(d.logs.String(), 8000))
		}
	})
	return d
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}

func (d *daemon) exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

func (d *daemon) pid() int { return d.cmd.Process.Pid }

// stop sends SIGTERM to our process and waits, SIGKILL after 10 s.
func (d *daemon) stop() {
	if d.exited() {
		return
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.done
		d.t.Errorf("nodedns did not exit within 10s of SIGTERM")
	}
}

// alive fails the test at once if the daemon has exited.
func (d *daemon) alive() {
	d.t.Helper()
	if d.exited() {
		d.t.Fatalf("nodedns exited: %v\n%s", d.err, tail(d.logs.String(), 8000))
	}
}

func (d *daemon) httpStatus(path string) int {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + d.health + path)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

func (d *daemon) waitReady(timeout time.Duration) {
	d.t.Helper()
	waitFor(d.t, "nodedns /ready", timeout, func() bool {
		d.alive()
		return d.httpStatus("/ready") == http.StatusOK
	})
}

// scrape returns every sample of /metrics by its full name with labels as
// printed (e.g. `nodedns_cache_entries`, `go_goroutines`,
// `nodedns_responses_total{source="stale"}`).
func (d *daemon) scrape() (map[string]float64, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + d.metrics + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out, sc.Err()
}

// metric returns one sample, or -1 when absent or unreachable.
func (d *daemon) metric(sample string) float64 {
	m, err := d.scrape()
	if err != nil {
		return -1
	}
	if v, ok := m[sample]; ok {
		return v
	}
	return -1
}

// metricSum adds every sample whose name (before any label) is name.
func (d *daemon) metricSum(name string) float64 {
	m, err := d.scrape()
	if err != nil {
		return -1
	}
	sum := 0.0
	for k, v := range m {
		if k == name || strings.HasPrefix(k, name+"{") {
			sum += v
		}
	}
	return sum
}

// rssKB is the daemon's resident set from /proc, in KiB.
func rssKB(t testing.TB, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond) // poll interval, not synchronisation
	}
}

// exchange sends m to addr over network and returns the reply and the time
// it took.
func exchange(network, addr string, m *dns.Msg, timeout time.Duration) (*dns.Msg, time.Duration, error) {
	c := dns.Client{Net: network, Timeout: timeout, UDPSize: 65535}
	start := time.Now()
	r, _, err := c.Exchange(m, addr)
	return r, time.Since(start), err
}

// ask sends one question with EDNS0 (1232, as a stub resolver would).
func (d *daemon) ask(network, name string, qtype uint16) (*dns.Msg, time.Duration, error) {
	m := new(dns.Msg).SetQuestion(name, qtype)
	m.SetEdns0(1232, false)
	return exchange(network, d.dns, m, 3*time.Second)
}

// firstA is the first A record of r, or "".
func firstA(r *dns.Msg) string {
	if r == nil {
		return ""
	}
	for _, rr := range r.Answer {
		if a, ok := rr.(*dns.A); ok {
			return a.A.String()
		}
	}
	return ""
}

// percentile returns the p-th percentile (0..100) of ds, which it sorts.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	i := int(float64(len(ds)-1) * p / 100)
	return ds[i]
}
