package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// corednsVersion is the peer the issue names; bench/compare.sh builds and
// caches the same binary in the same place.
const corednsVersion = "v1.15.0"

func cacheDir() string {
	if d := os.Getenv("NODEDNS_CACHE"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "nodedns-cache")
	}
	return filepath.Join(home, ".cache", "nodedns")
}

func usable(bin string) bool {
	return exec.Command(bin, "-version").Run() == nil
}

// coreDNS returns the cached CoreDNS binary, building it first (with go
// install, outside this module, under the cache's lock) when build is set.
func coreDNS(ctx context.Context, build bool) (string, error) {
	binDir := filepath.Join(cacheDir(), "bin")
	bin := filepath.Join(binDir, "coredns-"+corednsVersion)
	if usable(bin) {
		return bin, nil
	}
	if !build {
		return "", fmt.Errorf("CoreDNS %s not found at %s (and -no-build given)", corednsVersion, bin)
	}
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return "", err
	}
	lock, err := os.OpenFile(filepath.Join(cacheDir(), ".coredns.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", err
	}
	if usable(bin) {
		return bin, nil // built by a parallel run while we waited
	}
	tmp, err := os.MkdirTemp(binDir, ".coredns-build.")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	logf("building CoreDNS %s (once; 2-5 min on 2 idle cores, longer on a loaded machine)", corednsVersion)
	start := time.Now()
	cmd := exec.CommandContext(ctx, "go", "install", "github.com/coredns/coredns@"+corednsVersion)
	cmd.Dir = tmp // outside this module: never touches nodedns's go.mod
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=", "GOTOOLCHAIN=local", "CGO_ENABLED=0", "GOBIN="+tmp)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("building CoreDNS %s: %w", corednsVersion, err)
	}
	if err := os.Rename(filepath.Join(tmp, "coredns"), bin); err != nil {
		return "", err
	}
	logf("CoreDNS built in %v", time.Since(start).Round(time.Second))
	return bin, nil
}
