// Package detached starts the servers that tests and benchmarks run beside
// nodedns (etcd, kube-apiserver, CoreDNS, nodedns itself) as detached
// children, and stops them by their PID only.
package detached

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// Proc is one detached child: its own session, stdin /dev/null, output
// appended to a log file.
type Proc struct {
	Name    string
	LogPath string
	Cmd     *exec.Cmd
	Started time.Time
	Done    chan struct{} // closed once the child has been reaped
	Err     error         // its exit, valid after Done is closed
}

type spawnReq struct {
	cmd   *exec.Cmd
	reply chan error
}

var spawnCh = make(chan spawnReq)

// Children are forked from one goroutine locked to an OS thread that never
// exits: Pdeathsig fires when the forking *thread* dies, so this kills them
// when our process dies (crash, test timeout, Ctrl-C), and never earlier.
func init() {
	go func() {
		runtime.LockOSThread()
		for req := range spawnCh {
			req.reply <- req.cmd.Start()
		}
	}()
}

// Start starts bin with args; env is the child's whole environment (nil:
// ours).
func Start(name, bin string, args, env []string, logPath string) (*Proc, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child holds its own copy of the descriptor
	fmt.Fprintf(logf, "=== %s start %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(append([]string{bin}, args...), " "))

	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf // stdin: os/exec connects /dev/null
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL}
	p := &Proc{Name: name, LogPath: logPath, Cmd: cmd, Done: make(chan struct{})}
	reply := make(chan error, 1)
	p.Started = time.Now()
	spawnCh <- spawnReq{cmd: cmd, reply: reply}
	if err := <-reply; err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		p.Err = cmd.Wait()
		close(p.Done)
	}()
	return p, nil
}

// Pid is the child's process ID.
func (p *Proc) Pid() int { return p.Cmd.Process.Pid }

// Exited reports whether the child has been reaped.
func (p *Proc) Exited() bool {
	select {
	case <-p.Done:
		return true
	default:
		return false
	}
}

// Stop signals the child by its PID only and waits for it to be reaped,
// escalating to SIGKILL after grace.
func (p *Proc) Stop(sig syscall.Signal, grace time.Duration) error {
	if p.Exited() {
		return nil
	}
	if err := syscall.Kill(p.Pid(), sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal %s (pid %d): %w", p.Name, p.Pid(), err)
	}
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.Done:
		return nil
	case <-t.C:
	}
	if err := syscall.Kill(p.Pid(), syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill %s (pid %d): %w", p.Name, p.Pid(), err)
	}
	t.Reset(30 * time.Second)
	select {
	case <-p.Done:
		return nil
	case <-t.C:
		return fmt.Errorf("%s (pid %d) did not exit after SIGKILL", p.Name, p.Pid())
	}
}

// LogTail returns the last whole lines of path within maxBytes, for error
// messages.
func LogTail(path string, maxBytes int64) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	off := max(st.Size()-maxBytes, 0)
	b, err := io.ReadAll(io.NewSectionReader(f, off, st.Size()-off))
	if err != nil {
		return fmt.Sprintf("(read log: %v)", err)
	}
	if off > 0 {
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:] // drop the partial first line
		}
	}
	return string(b)
}
