package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"github.com/nodedns/nodedns/internal/detached"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// variant is one server configuration under test.
type variant struct {
	name string
	// coredns: CoreDNS's kubernetes plugin; otherwise nodedns.
	coredns bool
	// env: e.g. client-go's streaming list (WatchListClient) for CoreDNS,
	// which has no flag for it (nodedns has --watch-list, on by default).
	env  []string
	args []string
}

var variants = map[string]variant{
	"nodedns":           {name: "nodedns"},
	"nodedns-list":      {name: "nodedns-list", args: []string{"--watch-list=false"}},
	"nodedns-gogc50":    {name: "nodedns-gogc50", env: []string{"GOGC=50"}},
	"coredns":           {name: "coredns", coredns: true},
	"coredns-watchlist": {name: "coredns-watchlist", coredns: true, env: []string{"KUBE_FEATURE_WatchListClient=true"}},
}

// server is one running server under test.
type server struct {
	variant
	p          *detached.Proc
	dns        string // 127.0.0.1:PORT
	readyURL   string
	metricsURL string
	cmdline    string
	hc         *http.Client
}

// binaries are the programs the servers run.
type binaries struct {
	nodedns, coredns string
}

// startServer starts v against the API server of dnsKubeconfig.
func startServer(v variant, bins binaries, dnsKubeconfig, dir string) (*server, error) {
	ports := make([]int, 3)
	for i := range ports {
		p, err := freePort()
		if err != nil {
			return nil, err
		}
		ports[i] = p
	}
	s := &server{
		variant:    v,
		dns:        fmt.Sprintf("127.0.0.1:%d", ports[0]),
		readyURL:   fmt.Sprintf("http://127.0.0.1:%d/ready", ports[1]),
		metricsURL: fmt.Sprintf("http://127.0.0.1:%d/metrics", ports[2]),
		hc:         &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil}},
	}
	env := v.env // client-go reads its feature gates from KUBE_FEATURE_<name>
	var bin string
	var args []string
	if v.coredns {
		conf := filepath.Join(dir, v.name+".Corefile")
		// The stock kube-dns shape (cluster zone and reverse zones, pods
		// insecure), without forward/cache: only the cluster zone is measured.
		corefile := fmt.Sprintf(`.:%d {
    bind 127.0.0.1
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig %s e2e
        pods insecure
    }
    ready 127.0.0.1:%d
    prometheus 127.0.0.1:%d
}
`, ports[0], dnsKubeconfig, ports[1], ports[2])
		if err := os.WriteFile(conf, []byte(corefile), 0o644); err != nil {
			return nil, err
		}
		bin, args = bins.coredns, []string{"-conf", conf}
	} else {
		bin, args = bins.nodedns, []string{
			"--kubeconfig", dnsKubeconfig,
			"--listen", s.dns,
			"--health-listen", strings.TrimSuffix(strings.TrimPrefix(s.readyURL, "http://"), "/ready"),
			"--metrics-listen", strings.TrimSuffix(strings.TrimPrefix(s.metricsURL, "http://"), "/metrics"),
			"--setup-interface=false", "--setup-rules=false",
			"--resolv-conf", "/dev/null", // no upstream: only the cluster zone is measured
			"--handoff-socket", "", // several instances run side by side
			"--shutdown-grace", "0s",
		}
		args = append(args, v.args...)
	}
	s.cmdline = strings.TrimSpace(strings.Join(env, " ") + " " + bin + " " + strings.Join(args, " "))
	p, err := detached.Start(v.name, bin, args, append(os.Environ(), env...), filepath.Join(dir, v.name+".log"))
	if err != nil {
		return nil, err
	}
	s.p = p
	return s, nil
}

// waitReady polls the readiness endpoint until it answers 200 and then DNS
// until a cluster name is answered, and returns the time since the process
// started. Both steps, because CoreDNS's ready plugin can say 200 a moment
// before its DNS socket is bound.
func (s *server) waitReady(ctx context.Context, timeout time.Duration) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	httpReady := false
	var c *dnsConn
	defer func() {
		if c != nil {
			c.Close()
		}
	}()
	for {
		if s.p.Exited() {
			return 0, fmt.Errorf("%s exited (%v); log %s:\n%s", s.name, s.p.Err, s.p.LogPath, detached.LogTail(s.p.LogPath, 3000))
		}
		if !httpReady {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.readyURL, nil)
			if resp, err := s.hc.Do(req); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				httpReady = resp.StatusCode == http.StatusOK
			}
		}
		if httpReady {
			if c == nil {
				var err error
				if c, err = dialDNS(s.dns); err != nil {
					return 0, err
				}
			}
			if r, err := c.query("kubernetes.default.svc.cluster.local.", dns.TypeA, 100*time.Millisecond); err == nil && r.Rcode == dns.RcodeSuccess && len(r.Answer) > 0 {
				return time.Since(s.p.Started), nil
			}
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("%s not ready after %v; log %s:\n%s", s.name, timeout, s.p.LogPath, detached.LogTail(s.p.LogPath, 3000))
		case <-t.C:
		}
	}
}

// heapInUse scrapes go_memstats_heap_inuse_bytes (both servers export the
// Go collector on /metrics).
func (s *server) heapInUse(ctx context.Context) (uint64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.metricsURL, nil)
	if err != nil {
		return 0, err
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_memstats_heap_inuse_bytes "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return uint64(f), err
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, errors.New(s.name + ": no go_memstats_heap_inuse_bytes in /metrics")
}
