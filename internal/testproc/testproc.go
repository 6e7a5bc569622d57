// Package testproc holds what the end-to-end tests need to run the nodedns
// binary as a process: a build, free loopback ports, a log collector.
package testproc

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// BuildNodedns builds cmd/nodedns into dir and returns the binary's path;
// the go command's output goes to stderr.
func BuildNodedns(dir string) (string, error) {
	bin := filepath.Join(dir, "nodedns")
	build := exec.Command("go", "build", "-o", bin, "github.com/nodedns/nodedns/cmd/nodedns")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return "", fmt.Errorf("building nodedns: %w", err)
	}
	return bin, nil
}

// FreePort returns a loopback port that was free for both UDP and TCP a
// moment ago. The daemon takes fixed ports from flags, so there is a small
// window; ports come from the kernel's ephemeral range, which the tests do
// not otherwise exhaust.
func FreePort(tb testing.TB) int {
	tb.Helper()
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		port := pc.LocalAddr().(*net.UDPAddr).Port
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		pc.Close()
		if err == nil {
			l.Close()
			return port
		}
	}
	tb.Fatal("no port free for both UDP and TCP")
	return 0
}

// SyncBuffer collects a process's output; safe for concurrent use.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
