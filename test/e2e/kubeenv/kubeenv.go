// Package kubeenv runs a real etcd and kube-apiserver on loopback for e2e
// tests. Build the binaries once with hack/testenv.sh build.
//
// No controller-manager runs: write EndpointSlices by hand, use a fresh
// namespace per test and delete objects explicitly (see shared/TESTENV.md).
package kubeenv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

const (
	// KubeVersion and EtcdVersion are what hack/testenv.sh builds.
	KubeVersion = "v1.34.4"
	EtcdVersion = "v3.6.16"

	// DNSUser is the least-privilege identity of DNSKubeconfig, bound to
	// ClusterRole DNSClusterRole (list/watch on what the daemon reads).
	DNSUser        = "nodedns"
	DNSClusterRole = "nodedns"

	// ServiceCIDR is the apiserver's --service-cluster-ip-range.
	ServiceCIDR = "10.96.0.0/16"

	// readyTimeout bounds each wait; polling usually ends in a few seconds.
	readyTimeout = 60 * time.Second
	pollInterval = 50 * time.Millisecond
	logTailBytes = 4096
)

// ErrBinariesMissing is returned (wrapped) by Start when kube-apiserver or
// etcd is not built.
var ErrBinariesMissing = errors.New("kube-apiserver/etcd binaries missing: run hack/testenv.sh build")

// Env is a running etcd + kube-apiserver pair. Methods are safe for
// concurrent use.
type Env struct {
	// Admin is a system:masters client with a high client-side rate limit.
	Admin       kubernetes.Interface
	AdminConfig *rest.Config
	// AdminKubeconfig and DNSKubeconfig are kubeconfig files with the CA
	// and credentials embedded; DNSKubeconfig uses DNSUser's token.
	AdminKubeconfig string
	DNSKubeconfig   string
	DNSConfig       *rest.Config
	APIServerURL    string // https://127.0.0.1:PORT, fixed for the Env's life
	EtcdURL         string
	Dir             string

	apiserverBin string
	apiPort      int
	etcdPort     int
	pki          *pki

	mu        sync.Mutex
	etcd      *proc
	apiserver *proc
	stopped   bool
}

// Binaries returns the kube-apiserver and etcd paths: $KUBE_APISERVER_BIN
// and $ETCD_BIN if set, else the versioned files in
// ${NODEDNS_CACHE:-$HOME/.cache/nodedns}/bin. The error wraps
// ErrBinariesMissing.
func Binaries() (apiserver, etcd string, err error) {
	binDir := ""
	cache := os.Getenv("NODEDNS_CACHE")
	if cache == "" {
		if home, herr := os.UserHomeDir(); herr == nil {
			cache = filepath.Join(home, ".cache", "nodedns")
		}
	}
	if cache != "" {
		binDir = filepath.Join(cache, "bin")
	}
	apiserver = os.Getenv("KUBE_APISERVER_BIN")
	if apiserver == "" {
		apiserver = filepath.Join(binDir, "kube-apiserver-"+KubeVersion)
	}
	etcd = os.Getenv("ETCD_BIN")
	if etcd == "" {
		etcd = filepath.Join(binDir, "etcd-"+EtcdVersion)
	}
	var missing []string
	for _, b := range []string{apiserver, etcd} {
		if st, serr := os.Stat(b); serr != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			missing = append(missing, b)
		}
	}
	if len(missing) > 0 {
		return apiserver, etcd, fmt.Errorf("%w (not found: %s)", ErrBinariesMissing, strings.Join(missing, ", "))
	}
	return apiserver, etcd, nil
}

// Start runs etcd and kube-apiserver with all state, certs and logs in dir,
// waits until the API is usable and DNSUser's RBAC is in force. On error
// nothing is left running.
func Start(ctx context.Context, dir string) (_ *Env, err error) {
	apiserverBin, etcdBin, err := Binaries()
	if err != nil {
		return nil, err
	}
	if dir, err = filepath.Abs(dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	p, err := writePKI(filepath.Join(dir, "pki"))
	if err != nil {
		return nil, fmt.Errorf("kubeenv: certificates: %w", err)
	}
	e := &Env{Dir: dir, apiserverBin: apiserverBin, pki: p}
	defer func() {
		if err != nil {
			err = fmt.Errorf("kubeenv: %w\n%s", err, e.LogTails())
			_ = e.Stop()
		}
	}()

	if err := e.startEtcd(ctx, etcdBin); err != nil {
		return nil, err
	}
	// A port picked now may be taken before the apiserver binds it; retry.
	for attempt := 0; ; attempt++ {
		ports, perr := freePorts(1)
		if perr != nil {
			return nil, perr
		}
		e.apiPort = ports[0]
		e.APIServerURL = "https://127.0.0.1:" + strconv.Itoa(e.apiPort)
		if err = e.configureClients(); err != nil {
			return nil, err
		}
		e.mu.Lock()
		err = e.startAPIServerLocked(ctx)
		e.mu.Unlock()
		if err == nil || !errors.Is(err, errAddrInUse) || attempt == 2 {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	if err := e.setupRBAC(ctx); err != nil {
		return nil, err
	}
	return e, nil
}

var errAddrInUse = errors.New("address already in use")

func (e *Env) startEtcd(ctx context.Context, bin string) error {
	dataDir := filepath.Join(e.Dir, "etcd-data")
	logPath := filepath.Join(e.Dir, "etcd.log")
	for attempt := 0; ; attempt++ {
		ports, err := freePorts(2)
		if err != nil {
			return err
		}
		client := "http://127.0.0.1:" + strconv.Itoa(ports[0])
		peer := "http://127.0.0.1:" + strconv.Itoa(ports[1])
		args := []string{
			"--name=e2e",
			"--data-dir=" + dataDir,
			"--listen-client-urls=" + client,
			"--advertise-client-urls=" + client,
			"--listen-peer-urls=" + peer,
			"--initial-advertise-peer-urls=" + peer,
			"--initial-cluster=e2e=" + peer,
			"--unsafe-no-fsync", // throwaway data: speed over durability
			"--log-level=warn",
		}
		pr, err := startProc("etcd", bin, args, logPath)
		if err != nil {
			return err
		}
		e.mu.Lock()
		e.etcd, e.etcdPort, e.EtcdURL = pr, ports[0], client
		e.mu.Unlock()
		err = e.waitEtcd(ctx, pr)
		if err == nil {
			return nil
		}
		_ = pr.Stop(syscall.SIGKILL, 0)
		if !errors.Is(err, errAddrInUse) || attempt == 2 {
			return err
		}
		_ = os.RemoveAll(dataDir)
	}
}

func (e *Env) waitEtcd(ctx context.Context, pr *proc) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	hc := &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 2 * time.Second}
	defer hc.CloseIdleConnections()
	last := "not polled yet"
	return poll(ctx, pr, func() bool {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.EtcdURL+"/health", nil)
		if err != nil {
			last = err.Error()
			return false
		}
		resp, err := hc.Do(req)
		if err != nil {
			last = err.Error()
			return false
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		var h struct{ Health string }
		if resp.StatusCode == http.StatusOK && json.Unmarshal(body, &h) == nil && h.Health == "true" {
			return true
		}
		last = fmt.Sprintf("%s: %s", resp.Status, body)
		return false
	}, func() string { return "etcd not healthy: " + last })
}

// poll calls ok until it returns true, the child exits, or ctx ends.
func poll(ctx context.Context, pr *proc, ok func() bool, why func() string) error {
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for {
		if pr.Exited() {
			err := fmt.Errorf("%s exited early (%v); log %s", pr.Name, pr.Err, pr.LogPath)
			if strings.Contains(logTail(pr.LogPath, logTailBytes), "address already in use") {
				err = fmt.Errorf("%w: %w", errAddrInUse, err)
			}
			return err
		}
		if ok() {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w (%s)", pr.Name, ctx.Err(), why())
		case <-t.C:
		}
	}
}

func (e *Env) apiserverArgs() []string {
	p := e.pki
	return []string{
		"--etcd-servers=" + e.EtcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		// With a loopback advertise address the default reconciler errors
		// every 10 s, so default/kubernetes gets no endpoints.
		"--endpoint-reconciler-type=none",
		"--secure-port=" + strconv.Itoa(e.apiPort),
		"--tls-cert-file=" + p.serverCert,
		"--tls-private-key-file=" + p.serverKey,
		"--client-ca-file=" + p.caCert,
		"--token-auth-file=" + p.tokens,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + p.saPub,
		"--service-account-signing-key-file=" + p.saKey,
		"--service-cluster-ip-range=" + ServiceCIDR,
		"--authorization-mode=RBAC",
		"--profiling=false",
		// Without it a SIGTERM waits for open watches (informers) to end
		// on their own; with it they are closed, so StopAPIServer is quick.
		"--shutdown-watch-termination-grace-period=2s",
		"--cert-dir=" + filepath.Join(e.Dir, "apiserver-certs"),
	}
}

// startAPIServerLocked starts kube-apiserver on e.apiPort and waits ready.
func (e *Env) startAPIServerLocked(ctx context.Context) error {
	pr, err := startProc("kube-apiserver", e.apiserverBin, e.apiserverArgs(), filepath.Join(e.Dir, "kube-apiserver.log"))
	if err != nil {
		return err
	}
	e.apiserver = pr
	if err := e.waitAPIServer(ctx, pr); err != nil {
		_ = pr.Stop(syscall.SIGKILL, 0)
		return err
	}
	return nil
}

// waitAPIServer polls until /readyz is ok, namespace default exists and
// ServiceCIDR kubernetes is Ready (Services fail to create before that).
func (e *Env) waitAPIServer(ctx context.Context, pr *proc) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	last := "not polled yet"
	return poll(ctx, pr, func() bool {
		rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
		defer rcancel()
		body, err := e.Admin.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(rctx)
		if err != nil || string(body) != "ok" {
			last = fmt.Sprintf("readyz: %v %s", err, body)
			return false
		}
		if _, err := e.Admin.CoreV1().Namespaces().Get(rctx, metav1.NamespaceDefault, metav1.GetOptions{}); err != nil {
			last = "namespace default: " + err.Error()
			return false
		}
		cidr, err := e.Admin.NetworkingV1().ServiceCIDRs().Get(rctx, "kubernetes", metav1.GetOptions{})
		if err != nil {
			last = "servicecidr kubernetes: " + err.Error()
			return false
		}
		for _, c := range cidr.Status.Conditions {
			if c.Type == "Ready" && c.Status == metav1.ConditionTrue {
				return true
			}
		}
		last = fmt.Sprintf("servicecidr kubernetes not Ready: %+v", cidr.Status.Conditions)
		return false
	}, func() string { return "apiserver not ready: " + last })
}

// configureClients writes both kubeconfigs and builds the clients for
// e.APIServerURL.
func (e *Env) configureClients() error {
	p := e.pki
	ca, err := os.ReadFile(p.caCert)
	if err != nil {
		return err
	}
	cert, err := os.ReadFile(p.adminCert)
	if err != nil {
		return err
	}
	key, err := os.ReadFile(p.adminKey)
	if err != nil {
		return err
	}
	e.AdminKubeconfig = filepath.Join(e.Dir, "admin.kubeconfig")
	e.DNSKubeconfig = filepath.Join(e.Dir, "dns.kubeconfig")
	if err := writeKubeconfig(e.AdminKubeconfig, e.APIServerURL, ca, &clientcmdapi.AuthInfo{ClientCertificateData: cert, ClientKeyData: key}); err != nil {
		return err
	}
	if err := writeKubeconfig(e.DNSKubeconfig, e.APIServerURL, ca, &clientcmdapi.AuthInfo{Token: p.dnsToken}); err != nil {
		return err
	}
	if e.AdminConfig, err = clientcmd.BuildConfigFromFlags("", e.AdminKubeconfig); err != nil {
		return err
	}
	// Tests create many objects; client-go's default 5 QPS would crawl.
	e.AdminConfig.QPS, e.AdminConfig.Burst = 200, 400
	if e.Admin, err = kubernetes.NewForConfig(e.AdminConfig); err != nil {
		return err
	}
	e.DNSConfig, err = clientcmd.BuildConfigFromFlags("", e.DNSKubeconfig)
	return err
}

func writeKubeconfig(path, server string, ca []byte, auth *clientcmdapi.AuthInfo) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["e2e"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: ca}
	cfg.AuthInfos["e2e"] = auth
	cfg.Contexts["e2e"] = &clientcmdapi.Context{Cluster: "e2e", AuthInfo: "e2e"}
	cfg.CurrentContext = "e2e"
	return clientcmd.WriteToFile(*cfg, path)
}

// DNSRules are the only permissions DNSUser gets.
var DNSRules = []rbacv1.PolicyRule{
	{APIGroups: []string{""}, Resources: []string{"services", "namespaces", "pods"}, Verbs: []string{"list", "watch"}},
	{APIGroups: []string{discoveryv1.GroupName}, Resources: []string{"endpointslices"}, Verbs: []string{"list", "watch"}},
}

func (e *Env) setupRBAC(ctx context.Context) error {
	role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: DNSClusterRole}, Rules: DNSRules}
	if _, err := e.Admin.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create clusterrole: %w", err)
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: DNSClusterRole},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: DNSClusterRole},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: DNSUser}},
	}
	if _, err := e.Admin.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create clusterrolebinding: %w", err)
	}

	// The authorizer learns of new bindings through its informer: wait until
	// DNSUser can really list, so tests never race it.
	dns, err := kubernetes.NewForConfig(e.DNSConfig)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	e.mu.Lock()
	pr := e.apiserver
	e.mu.Unlock()
	last := "not polled yet"
	opts := metav1.ListOptions{Limit: 1}
	return poll(ctx, pr, func() bool {
		for _, list := range []func() error{
			func() error { _, err := dns.CoreV1().Services("").List(ctx, opts); return err },
			func() error { _, err := dns.DiscoveryV1().EndpointSlices("").List(ctx, opts); return err },
			func() error { _, err := dns.CoreV1().Namespaces().List(ctx, opts); return err },
			func() error { _, err := dns.CoreV1().Pods("").List(ctx, opts); return err },
		} {
			if err := list(); err != nil {
				last = err.Error()
				return false
			}
		}
		return true
	}, func() string { return "RBAC for " + DNSUser + " not in force: " + last })
}

// StopAPIServer stops only kube-apiserver (SIGTERM to its PID, SIGKILL
// after 15 s) and waits for it to exit. etcd keeps running.
func (e *Env) StopAPIServer() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.apiserver == nil {
		return nil
	}
	err := e.apiserver.Stop(syscall.SIGTERM, 15*time.Second)
	if err == nil {
		e.apiserver = nil
	}
	return err
}

// StartAPIServer starts kube-apiserver again on the same URL, etcd and
// certificates, and waits until it is ready.
func (e *Env) StartAPIServer(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stopped {
		return errors.New("kubeenv: StartAPIServer after Stop")
	}
	if e.apiserver != nil && !e.apiserver.Exited() {
		return errors.New("kubeenv: kube-apiserver already running")
	}
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		// The port is ours, but the old socket may linger for a moment.
		if err = e.startAPIServerLocked(ctx); err == nil || !errors.Is(err, errAddrInUse) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("kubeenv: restart kube-apiserver: %w\n%s", err, e.logTailsLocked())
	}
	return nil
}

// Stop kills kube-apiserver, then etcd, by PID and waits for both to exit.
// The data is throwaway, so there is no graceful shutdown. Idempotent.
func (e *Env) Stop() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.stopped = true
	var errs []error
	for _, pr := range []*proc{e.apiserver, e.etcd} {
		if pr != nil {
			errs = append(errs, pr.Stop(syscall.SIGKILL, 0))
		}
	}
	return errors.Join(errs...)
}

// LogTails returns the end of the kube-apiserver and etcd logs, for
// failure messages.
func (e *Env) LogTails() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.logTailsLocked()
}

func (e *Env) logTailsLocked() string {
	var b strings.Builder
	for _, name := range []string{"kube-apiserver.log", "etcd.log"} {
		path := filepath.Join(e.Dir, name)
		fmt.Fprintf(&b, "--- tail of %s ---\n%s\n", path, logTail(path, logTailBytes))
	}
	return b.String()
}

// freePorts returns n distinct loopback TCP ports free at the time of the call.
func freePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
