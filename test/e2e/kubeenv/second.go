package kubeenv

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// SecondAPIServer is another kube-apiserver on the Env's etcd, at a URL of
// its own. With the Env's own apiserver stopped, changes made through it
// are changes a client watching the Env's URL cannot see until it
// reconnects: the way to make a watch miss events.
type SecondAPIServer struct {
	URL   string
	Admin kubernetes.Interface
	proc  *proc
}

// StartSecondAPIServer starts a kube-apiserver with the Env's flags,
// certificates and etcd on another port, and waits until it is ready.
// Stop it before the test ends (a test Cleanup is fine); Env.Stop does not.
func (e *Env) StartSecondAPIServer(ctx context.Context) (*SecondAPIServer, error) {
	e.mu.Lock()
	stopped := e.stopped
	e.mu.Unlock()
	if stopped {
		return nil, errors.New("kubeenv: StartSecondAPIServer after Stop")
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		ports, err := freePorts(1)
		if err != nil {
			return nil, err
		}
		s, err := e.startSecond(ctx, ports[0])
		if err == nil {
			return s, nil
		}
		lastErr = err
		if !errors.Is(err, errAddrInUse) {
			break
		}
	}
	return nil, fmt.Errorf("kubeenv: second kube-apiserver: %w\n--- tail of %s ---\n%s", lastErr,
		e.secondLog(), logTail(e.secondLog(), logTailBytes))
}

func (e *Env) secondLog() string { return filepath.Join(e.Dir, "kube-apiserver-2.log") }

func (e *Env) startSecond(ctx context.Context, port int) (*SecondAPIServer, error) {
	args := e.apiserverArgs()
	for i, a := range args {
		switch {
		case strings.HasPrefix(a, "--secure-port="):
			args[i] = "--secure-port=" + strconv.Itoa(port)
		case strings.HasPrefix(a, "--cert-dir="):
			args[i] = "--cert-dir=" + filepath.Join(e.Dir, "apiserver-2-certs")
		}
	}
	url := "https://127.0.0.1:" + strconv.Itoa(port)
	cfg := rest.CopyConfig(e.AdminConfig)
	cfg.Host = url
	admin, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	pr, err := startProc("kube-apiserver-2", e.apiserverBin, args, e.secondLog())
	if err != nil {
		return nil, err
	}
	s := &SecondAPIServer{URL: url, Admin: admin, proc: pr}
	if err := waitReadyVia(ctx, pr, admin); err != nil {
		_ = pr.Stop(syscall.SIGKILL, 0)
		return nil, err
	}
	return s, nil
}

// waitReadyVia is waitAPIServer through the client c: /readyz ok and
// ServiceCIDR kubernetes Ready (the Service IP allocator works).
func waitReadyVia(ctx context.Context, pr *proc, c kubernetes.Interface) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	last := "not polled yet"
	return poll(ctx, pr, func() bool {
		rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
		defer rcancel()
		body, err := c.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(rctx)
		if err != nil || string(body) != "ok" {
			last = fmt.Sprintf("readyz: %v %s", err, body)
			return false
		}
		cidr, err := c.NetworkingV1().ServiceCIDRs().Get(rctx, "kubernetes", metav1.GetOptions{})
		if err != nil {
			last = "servicecidr kubernetes: " + err.Error()
			return false
		}
		for _, cond := range cidr.Status.Conditions {
			if cond.Type == "Ready" && cond.Status == metav1.ConditionTrue {
				return true
			}
		}
		last = "servicecidr kubernetes not Ready"
		return false
	}, func() string { return "second apiserver not ready: " + last })
}

// Stop stops the second apiserver (SIGTERM to its PID, SIGKILL after 15 s)
// and waits for it to exit. Idempotent.
func (s *SecondAPIServer) Stop() error { return s.proc.Stop(syscall.SIGTERM, 15*time.Second) }

// KillAPIServer kills the Env's kube-apiserver with SIGKILL, as a crash
// would: open watches break without the graceful close that StopAPIServer's
// SIGTERM gives them. StartAPIServer starts it again.
func (e *Env) KillAPIServer() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.apiserver == nil {
		return nil
	}
	err := e.apiserver.Stop(syscall.SIGKILL, 0)
	if err == nil {
		e.apiserver = nil
	}
	return err
}

// EtcdRevision returns etcd's current revision, read from the header of a
// range request through etcd's JSON gateway.
func (e *Env) EtcdRevision(ctx context.Context) (int64, error) {
	var resp struct {
		Header struct {
			Revision string `json:"revision"` // int64 as a JSON string
		} `json:"header"`
	}
	// Any key will do: the header carries the store's revision.
	key := base64.StdEncoding.EncodeToString([]byte("/registry/namespaces/default"))
	if err := e.etcdPost(ctx, "/v3/kv/range", map[string]any{"key": key, "count_only": true}, &resp); err != nil {
		return 0, err
	}
	rev, err := strconv.ParseInt(resp.Header.Revision, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("kubeenv: etcd revision %q: %w", resp.Header.Revision, err)
	}
	return rev, nil
}

// CompactEtcd compacts etcd's history up to rev, physically, so a watch
// or list from an older resource version gets 410 Gone.
func (e *Env) CompactEtcd(ctx context.Context, rev int64) error {
	return e.etcdPost(ctx, "/v3/kv/compaction", map[string]any{"revision": strconv.FormatInt(rev, 10), "physical": true}, nil)
}

func (e *Env) etcdPost(ctx context.Context, path string, body any, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.EtcdURL+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	hc := &http.Client{Transport: &http.Transport{Proxy: nil}}
	defer hc.CloseIdleConnections()
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("kubeenv: etcd %s: %w", path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("kubeenv: etcd %s: %s: %s", path, resp.Status, data)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("kubeenv: etcd %s: %w: %s", path, err, data)
		}
	}
	return nil
}
