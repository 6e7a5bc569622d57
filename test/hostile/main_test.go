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
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/nodedns/nodedns/internal/testproc"
)

// nodednsBin is the daemon, built once by TestMain.
var nodednsBin string

func TestMain(m *testing.M) {
	os.Exit(testproc.RunWithNodedns(m, &nodednsBin))
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
type daemon struct{ *testproc.Daemon }

// startDaemon runs nodedns with the flags every test needs plus args (a
// later flag wins). It does not wait for readiness. If the process exits
// before the test ends, the test fails: a crash.
func startDaemon(t testing.TB, args ...string) *daemon {
	t.Helper()
	d := &daemon{testproc.StartDaemon(t, nodednsBin, args...)}
	t.Cleanup(func() { // runs before StartDaemon's, which stops it
		if d.Exited() {
			t.Errorf("nodedns exited during the test: %v", d.Err)
		}
	})
	return d
}

var waitFor = testproc.WaitFor

// metricSum adds every sample whose name (before any label) is name.
func (d *daemon) metricSum(name string) float64 {
	m, err := d.Scrape()
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
// openFDs is how many descriptors process pid has open. Safe to call
// from any goroutine: an error is reported, not fatal.
func openFDs(t testing.TB, pid int) int {
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Errorf("open descriptors of %d: %v", pid, err)
	}
	return len(entries)
}

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
	return exchange(network, d.DNS, m, 3*time.Second)
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
