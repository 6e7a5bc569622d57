// Package deploy tests what an operator installs: the manifests in deploy/,
// the Dockerfile and the binary it builds. Against the real kube-apiserver
// of test/e2e/kubeenv: every manifest passes a server-side dry run, and the
// ClusterRole is enough for the real daemon (run with a token of its
// ServiceAccount).
package deploy

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// nodednsBin is the daemon, built once by TestMain with hack/build.sh: the
// same script and flags as the image.
var nodednsBin string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "nodedns-deploy-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	nodednsBin = filepath.Join(dir, "nodedns")
	build := exec.Command("sh", filepath.Join(repoRoot(), "hack", "build.sh"), nodednsBin)
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "hack/build.sh:", err)
		return 1
	}
	return m.Run()
}

// repoRoot is the repository root, found from this file's location so the
// tests work from any working directory.
func repoRoot() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		panic("runtime.Caller failed")
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// repoPath joins elem to the repository root.
func repoPath(elem ...string) string {
	return filepath.Join(append([]string{repoRoot()}, elem...)...)
}
