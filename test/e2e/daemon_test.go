package e2e

import (
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/nodedns/nodedns/internal/testproc"
)

// nodednsBin is the daemon built once by TestMain.
var nodednsBin string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "nodedns-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if nodednsBin, err = testproc.BuildNodedns(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	code := m.Run()
	stopSharedEnv()
	return code
}

// daemon is one running nodedns process.
type daemon struct {
	t       testing.TB
	cmd     *exec.Cmd
	dns     string // ADDR:PORT for DNS
	health  string // ADDR:PORT for /health, /ready
	metrics string // ADDR:PORT for /metrics
	logs    *testproc.SyncBuffer
	done    chan struct{}
	err     error
}

// startDaemon runs nodedns on free loopback ports with the given extra
// flags. It does not wait for readiness.
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
		// Its own handoff socket: daemons of other tests must not take
		// over each other's sockets, nor write under the host's /run.
		"--handoff-socket", filepath.Join(t.TempDir(), "handoff.sock"),
	}, args...)
	d.cmd = exec.Command(nodednsBin, all...)
	d.cmd.Stdout, d.cmd.Stderr = d.logs, d.logs
	d.cmd.Stdin = nil
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		d.err = d.cmd.Wait()
		close(d.done)
	}()
	t.Cleanup(func() {
		d.stop()
		if t.Failed() {
			t.Logf("nodedns logs:\n%s", d.logs.String())
		}
	})
	return d
}

// stop sends SIGTERM and waits; SIGKILL if it does not exit in 10 s.
func (d *daemon) stop() {
	select {
	case <-d.done:
		return
	default:
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

// httpStatus returns the status code and body of GET path on the health
// listener, or 0 when it does not answer.
func (d *daemon) httpStatus(path string) (int, string) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + d.health + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// metric returns the value of one sample of /metrics, e.g.
// `nodedns_zone_synced` or `nodedns_responses_total{source="zone"}`; -1 when
// absent.
func (d *daemon) metric(sample string) float64 {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + d.metrics + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, sample+" "); ok {
			var f float64
			if _, err := fmt.Sscan(v, &f); err == nil {
				return f
			}
		}
	}
	return -1
}

// waitFor polls cond until it holds or the deadline passes.
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

func (d *daemon) waitReady(timeout time.Duration) {
	d.t.Helper()
	waitFor(d.t, "nodedns /ready", timeout, func() bool {
		select {
		case <-d.done:
			d.t.Fatalf("nodedns exited early: %v\n%s", d.err, d.logs.String())
		default:
		}
		code, _ := d.httpStatus("/ready")
		return code == http.StatusOK
	})
}

// waitListening waits until the DNS port answers anything at all.
func (d *daemon) waitListening(timeout time.Duration) {
	d.t.Helper()
	waitFor(d.t, "nodedns to answer DNS", timeout, func() bool {
		select {
		case <-d.done:
			d.t.Fatalf("nodedns exited early: %v\n%s", d.err, d.logs.String())
		default:
		}
		_, err := d.query("udp", "dns-version.cluster.local.", dns.TypeTXT)
		return err == nil
	})
}

// query sends one question over net ("udp" or "tcp") with EDNS0 4096.
func (d *daemon) query(net, name string, qtype uint16) (*dns.Msg, error) {
	return d.queryBuf(net, name, qtype, 4096)
}

// queryBuf sends one question; bufsize 0 sends no OPT record.
func (d *daemon) queryBuf(net, name string, qtype uint16, bufsize uint16) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	if bufsize > 0 {
		m.SetEdns0(bufsize, false)
	}
	c := dns.Client{Net: net, Timeout: 3 * time.Second, UDPSize: 65535}
	r, _, err := c.Exchange(m, d.dns)
	return r, err
}

func (d *daemon) dnsAddr() netip.AddrPort { return netip.MustParseAddrPort(d.dns) }

// rrStrings renders records without TTLs, lowercased, for
// order-independent comparison.
func rrStrings(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		if rr.Header().Rrtype == dns.TypeOPT {
			continue
		}
		s := rr.String()
		f := strings.Fields(s)
		if len(f) > 1 {
			f = append(f[:1], f[2:]...) // drop TTL
		}
		out = append(out, strings.ToLower(strings.Join(f, " ")))
	}
	return out
}
