package deploy

import (
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/nodedns/nodedns/internal/testproc"
)

// daemon is one running nodedns process.
type daemon struct {
	t    testing.TB
	cmd  *exec.Cmd
	logs *testproc.SyncBuffer
	done chan struct{}
	err  error // set before done closes
}

// startDaemon runs the binary with args; it stops it (SIGTERM) when the
// test ends and logs its output if the test failed.
func startDaemon(t testing.TB, args ...string) *daemon {
	t.Helper()
	d := &daemon{t: t, logs: &testproc.SyncBuffer{}, done: make(chan struct{})}
	// A handoff socket of the test's own (the flag given last wins), not
	// the host's /run/nodedns.
	args = append([]string{"--handoff-socket", filepath.Join(t.TempDir(), "handoff.sock")}, args...)
	d.cmd = exec.Command(nodednsBin, args...)
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
		d.stop()
		if t.Failed() {
			t.Logf("nodedns %v logs:\n%s", args, d.logs.String())
		}
	})
	return d
}

// stop sends SIGTERM and waits, with SIGKILL after 15 s.
func (d *daemon) stop() {
	if d.exited() {
		return
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(15 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.done
		d.t.Errorf("nodedns did not exit within 15s of SIGTERM")
	}
}

func (d *daemon) exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// get returns the status and body of GET url, or 0 and the error.
func get(url string) (int, string) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitReady polls GET url until 200, failing if the daemon exits or the
// deadline passes; the last answer is in the failure message.
func (d *daemon) waitReady(url string, timeout time.Duration) {
	d.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if d.exited() {
			d.t.Fatalf("nodedns exited before %s was 200: %v\n%s", url, d.err, d.logs.String())
		}
		code, body := get(url)
		if code == http.StatusOK {
			return
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("%s not 200 after %v: last %d %q", url, timeout, code, body)
		}
		time.Sleep(25 * time.Millisecond) // poll interval, not synchronisation
	}
}
