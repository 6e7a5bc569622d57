package testproc

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// RunWithNodedns is a TestMain's body: it builds nodedns into a temporary
// directory, sets *bin to it, runs the tests and removes the directory.
func RunWithNodedns(m *testing.M, bin *string) int {
	dir, err := os.MkdirTemp("", "nodedns-test-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if *bin, err = BuildNodedns(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// Daemon is one nodedns process on free loopback ports.
type Daemon struct {
	T       testing.TB
	Cmd     *exec.Cmd
	DNS     string // 127.0.0.1:PORT
	Health  string // 127.0.0.1:PORT for /health and /ready
	Metrics string // 127.0.0.1:PORT for /metrics
	Logs    *SyncBuffer
	Done    chan struct{} // closed when the process has exited
	Err     error         // its exit, valid once Done is closed
}

// StartDaemon runs bin on free loopback ports with the flags every test
// needs plus args (a later flag wins). It does not wait for readiness. At
// the test's end the process is stopped, and its log printed if the test
// failed.
func StartDaemon(t testing.TB, bin string, args ...string) *Daemon {
	t.Helper()
	d := &Daemon{
		T:       t,
		DNS:     fmt.Sprintf("127.0.0.1:%d", FreePort(t)),
		Health:  fmt.Sprintf("127.0.0.1:%d", FreePort(t)),
		Metrics: fmt.Sprintf("127.0.0.1:%d", FreePort(t)),
		Logs:    &SyncBuffer{},
		Done:    make(chan struct{}),
	}
	all := append([]string{
		"--listen", d.DNS,
		"--health-listen", d.Health,
		"--metrics-listen", d.Metrics,
		"--setup-interface=false",
		"--shutdown-grace=0s",
		"--log-level=debug",
		// Its own handoff socket: daemons of other tests must not take
		// over each other's sockets, nor write under the host's /run.
		"--handoff-socket", filepath.Join(t.TempDir(), "handoff.sock"),
	}, args...)
	d.Cmd = exec.Command(bin, all...)
	d.Cmd.Stdout, d.Cmd.Stderr = d.Logs, d.Logs
	d.Cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := d.Cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		d.Err = d.Cmd.Wait()
		close(d.Done)
	}()
	t.Cleanup(func() {
		d.Stop()
		if t.Failed() {
			t.Logf("nodedns logs (tail):\n%s", tail(d.Logs.String(), 8000))
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

// Exited reports whether the process has exited.
func (d *Daemon) Exited() bool {
	select {
	case <-d.Done:
		return true
	default:
		return false
	}
}

// Pid is the process's ID.
func (d *Daemon) Pid() int { return d.Cmd.Process.Pid }

// Stop sends SIGTERM and waits; SIGKILL, and a test error, after 10 s.
func (d *Daemon) Stop() {
	if d.Exited() {
		return
	}
	_ = d.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.Done:
	case <-time.After(10 * time.Second):
		_ = d.Cmd.Process.Kill()
		<-d.Done
		d.T.Errorf("nodedns did not exit within 10s of SIGTERM")
	}
}

// Alive fails the test at once if the process has exited.
func (d *Daemon) Alive() {
	d.T.Helper()
	if d.Exited() {
		d.T.Fatalf("nodedns exited: %v\n%s", d.Err, tail(d.Logs.String(), 8000))
	}
}

// HTTPStatus returns the status code and body of GET path on the health
// listener, or 0 and the error when it does not answer.
func (d *Daemon) HTTPStatus(path string) (int, string) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + d.Health + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// WaitReady waits for /ready to answer 200; the test fails if the process
// exits first or the timeout passes.
func (d *Daemon) WaitReady(timeout time.Duration) {
	d.T.Helper()
	WaitFor(d.T, "nodedns /ready", timeout, func() bool {
		d.Alive()
		code, _ := d.HTTPStatus("/ready")
		return code == http.StatusOK
	})
}

// Scrape returns every sample of /metrics by its full name with labels as
// printed (e.g. `go_goroutines`, `nodedns_responses_total{source="zone"}`).
func (d *Daemon) Scrape() (map[string]float64, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + d.Metrics + "/metrics")
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

// Metric returns one sample of /metrics, or -1 when absent or unreachable.
func (d *Daemon) Metric(sample string) float64 {
	m, err := d.Scrape()
	if err != nil {
		return -1
	}
	if v, ok := m[sample]; ok {
		return v
	}
	return -1
}

// WaitFor polls cond until it holds; the test fails when timeout passes.
func WaitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond) // poll interval, not synchronisation
	}
}
