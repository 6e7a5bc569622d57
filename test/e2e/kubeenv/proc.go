package kubeenv

import (
	"os"
	"strings"

	"github.com/nodedns/nodedns/internal/detached"
)

// proc is one detached child (etcd or kube-apiserver).
type proc = detached.Proc

// startProc starts bin detached, without ETCD_* variables in its
// environment (etcd reads them as flags).
func startProc(name, bin string, args []string, logPath string) (*proc, error) {
	return detached.Start(name, bin, args, childEnv(), logPath)
}

func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "ETCD_") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

var logTail = detached.LogTail
