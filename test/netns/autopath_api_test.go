package netns

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/nodedns/nodedns/pkg/iface/ifacetest"
	"github.com/nodedns/nodedns/test/e2e/kubeenv"
)

const (
	apNode     = "node-ap"     // the node nodedns runs on
	apNS       = "apclient"    // the client Pod's namespace
	apOther    = "apother"     // another namespace with a Service web
	apWebIP    = "10.96.10.10" // web.apclient
	apOtherIP  = "10.96.10.20" // web.apother
	apPodIPv4  = "10.123.0.2"  // the pod namespace's addresses (newTopology)
	apPodIPv6  = "fd00:123::2"
	apUpstream = "127.0.0.1:5399" // startDaemon's --upstream, in the node namespace
)

// apCost is what one lookup cost.
type apCost struct {
	out      string
	ok       bool
	client   int            // queries nodedns answered (requests_total)
	upstream []string       // what the upstream was asked, "name qtype"
	metrics  map[string]int // deltas of the autopath and search-suffix series
}

// TestAutopathAPIServer runs autopath end to end against a real
// kube-apiserver: the Pod that plays the client is registered through the
// API (created, then its status set as kubelet would), nodedns watches this
// node's Pods only, and both the C library's resolver (getent) and Go's own
// resolver look names up inside the pod namespace, with the Kubernetes
// search list and ndots:5, with --autopath and without.
func TestAutopathAPIServer(t *testing.T) {
	ifacetest.RequireRoot(t)
	env := kubeenv.StartForTest(t)
	goLookup := buildGoLookup(t)
	registerAutopathObjects(t, env)

	dir := t.TempDir()
	// The node's own resolv.conf: its search domain ends the pod's list, as
	// kubelet makes it.
	nodeConf := filepath.Join(dir, "node-resolv.conf")
	if err := os.WriteFile(nodeConf, []byte("nameserver 10.123.0.1\nsearch node.example\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	apiAddr := strings.TrimPrefix(env.APIServerURL, "https://")

	type lookup struct {
		client string // getent or go
		name   string
		want   []string // addresses, all of them; nil: must not exist
	}
	lookups := []lookup{
		{"getent", "api.example.com", []string{"192.0.2.10", "2001:db8::10"}},
		{"go", "api.example.net", []string{"192.0.2.20", "2001:db8::20"}},
		{"getent", "web", []string{apWebIP}},
		{"go", "web", []string{apWebIP}},
		{"getent", "web." + apOther, []string{apOtherIP}},
		{"go", "web." + apOther, []string{apOtherIP}},
		{"getent", "nowhere.invalid", nil},
		{"go", "nowhere.invalid", nil},
	}
	costs := map[bool]map[string]apCost{}
	for _, autopath := range []bool{false, true} {
		costs[autopath] = map[string]apCost{}
		t.Run(fmt.Sprintf("autopath=%v", autopath), func(t *testing.T) {
			tp := newTopology(t)
			forwardInto(t, tp.node, apiAddr) // the API server, at the same address inside the node namespace
			up := startUpstreamIn(t, tp.node, apUpstream,
				"api.example.com. 60 IN A 192.0.2.10", "api.example.com. 60 IN AAAA 2001:db8::10",
				"api.example.net. 60 IN A 192.0.2.20", "api.example.net. 60 IN AAAA 2001:db8::20")
			args := []string{"--zone-file=", "--kubeconfig", env.DNSKubeconfig, "--node-name", apNode,
				"--resolv-conf", nodeConf, "--query-log"}
			if autopath {
				args = append(args, "--autopath")
			}
			d := startDaemon(t, tp.node, args...)
			podResolvConf(t, tp.pod, "nameserver "+localV4+"\n"+
				"search "+apNS+".svc.cluster.local svc.cluster.local cluster.local node.example\n"+
				"options ndots:5\n")
			d.waitDig(tp.pod, "web."+apNS+".svc.cluster.local", apWebIP)
			if autopath {
				// Autopath acts once the Pod's status reached nodedns: a
				// short name of another namespace then resolves in one
				// query (the CNAME, then the address).
				d.waitDig(tp.pod, "web."+apOther+"."+apNS+".svc.cluster.local", "web."+apOther+".svc.cluster.local.\n"+apOtherIP)
				// Only this node's Pods are watched: the one on another
				// node, with the same IP, is not known (were it, the IP
				// would be ambiguous and autopath would not act).
				if n := scrape(t, tp.node)[`nodedns_zone_objects{kind="pods"}`]; n != 1 {
					t.Errorf("zone_objects{pods} = %v, want 1 (this node's)", n)
				}
			}
			for _, l := range lookups {
				up.Reset()
				before := scrape(t, tp.node)
				var out string
				var err error
				if l.client == "getent" {
					out, err = tp.pod.TryExec("getent", "ahosts", l.name)
				} else {
					cmd := tp.pod.Command(t.Context(), goLookup, l.name)
					cmd.Env = append(os.Environ(), "GODEBUG=netdns=go")
					var b []byte
					b, err = cmd.CombinedOutput()
					out = string(b)
				}
				after := scrape(t, tp.node)
				c := apCost{out: out, ok: err == nil, client: sumPrefix(after, "nodedns_requests_total{") - sumPrefix(before, "nodedns_requests_total{"),
					metrics: map[string]int{}}
				for k, v := range after {
					if strings.HasPrefix(k, "nodedns_autopath_total{") || strings.HasPrefix(k, "nodedns_search_suffix_answers_total{") {
						if dv := int(v - before[k]); dv != 0 {
							c.metrics[k] = dv
						}
					}
				}
				for _, q := range up.Queries() {
					c.upstream = append(c.upstream, strings.ToLower(q.Name)+" "+typeName(q.Type))
				}
				costs[autopath][l.client+" "+l.name] = c
				t.Logf("%s %s: client sent %d queries, upstream got %d %q; %v", l.client, l.name, c.client, len(c.upstream), c.upstream, c.metrics)
				checkAddrs(t, l.client+" "+l.name, out, err, l.want)
				for _, u := range c.upstream {
					if strings.Contains(u, "cluster.local.") {
						t.Errorf("%s %s: the upstream was asked the cluster name %s", l.client, l.name, u)
					}
				}
				if l.want != nil && strings.HasPrefix(l.name, "api.") {
					// One upstream query per qtype for the real name, on or
					// off: the search-suffixed cluster names never leave.
					for _, qt := range []string{"A", "AAAA"} {
						if n := countOf(c.upstream, l.name+". "+qt); n != 1 {
							t.Errorf("%s %s: upstream asked %s %s %d times, want 1", l.client, l.name, l.name, qt, n)
						}
					}
				}
			}
			if autopath {
				// The query log names the Pod and says where answers came from.
				logs := d.logs.String()
				want := "client=" + apPodIPv4 + ":"
				if !strings.Contains(logs, "msg=query "+want) || !strings.Contains(logs, "name=api.example.com."+apNS+".svc.cluster.local.") {
					t.Errorf("no query log line from %s for the autopathed name", apPodIPv4)
				}
			}
		})
	}
	off, on := costs[false], costs[true]
	if t.Failed() || len(off) != len(lookups) || len(on) != len(lookups) {
		return
	}
	for _, client := range []string{"getent", "go"} {
		ext := map[string]string{"getent": "api.example.com", "go": "api.example.net"}[client]
		// ndots:5, 4 search domains, A and AAAA: the external name takes
		// the whole walk without autopath, 5 queries per qtype; one with it.
		if c := off[client+" "+ext]; c.client != 10 {
			t.Errorf("%s %s without autopath: %d client queries, want 10", client, ext, c.client)
		}
		if c := on[client+" "+ext]; c.client != 2 {
			t.Errorf("%s %s with autopath: %d client queries, want 2", client, ext, c.client)
		}
		// Without autopath the walk's cluster steps are answered by the
		// zone and counted by suffix, the node search domain's forwarded.
		for kind, n := range map[string]int{"namespace": 2, "svc": 2, "zone": 2, "node_search": 2} {
			if got := off[client+" "+ext].metrics[`nodedns_search_suffix_answers_total{kind="`+kind+`"}`]; got != n {
				t.Errorf("%s %s without autopath: search_suffix_answers_total{%s} grew by %d, want %d", client, ext, kind, got, n)
			}
		}
		if got := on[client+" "+ext].metrics[`nodedns_autopath_total{result="answered"}`]; got != 2 {
			t.Errorf("%s %s with autopath: autopath_total{answered} grew by %d, want 2", client, ext, got)
		}
		// A name of the Pod's namespace never needed autopath; one of
		// another namespace takes one round trip instead of two; a name
		// that exists nowhere ends the same after as many round trips.
		for name, want := range map[string][2]int{"web": {2, 2}, "web." + apOther: {4, 2}, "nowhere.invalid": {10, 10}} {
			k := client + " " + name
			if off[k].client != want[0] || on[k].client != want[1] {
				t.Errorf("%s: %d client queries without autopath, %d with; want %d and %d", k, off[k].client, on[k].client, want[0], want[1])
			}
		}
	}
	t.Logf("external name, one lookup: client queries / upstream queries, autopath off -> on: getent %d/%d -> %d/%d, Go %d/%d -> %d/%d",
		off["getent api.example.com"].client, len(off["getent api.example.com"].upstream),
		on["getent api.example.com"].client, len(on["getent api.example.com"].upstream),
		off["go api.example.net"].client, len(off["go api.example.net"].upstream),
		on["go api.example.net"].client, len(on["go api.example.net"].upstream))
}

// registerAutopathObjects writes what the test's cluster holds: the client
// Pod on apNode with the pod namespace's addresses, a Pod of another
// namespace on another node with the same IPv4 (which nodedns must not
// see), and Services web in both namespaces.
func registerAutopathObjects(t *testing.T, env *kubeenv.Env) {
	t.Helper()
	ctx := t.Context()
	core := env.Admin.CoreV1()
	for _, ns := range []string{apNS, apOther} {
		if _, err := core.Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		// Admission wants the namespace's default ServiceAccount first
		// (no controller-manager makes it here).
		if _, err := core.ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	runPod(t, env, apNS, "client", apNode, apPodIPv4, apPodIPv6)
	runPod(t, env, apOther, "elsewhere", "node-other", apPodIPv4)
	for ns, ip := range map[string]string{apNS: apWebIP, apOther: apOtherIP} {
		if _, err := core.Services(ns).Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "web"},
			Spec: corev1.ServiceSpec{ClusterIP: ip, Ports: []corev1.ServicePort{
				{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}}},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}

// runPod creates a Pod bound to node and sets its status as kubelet would
// once it runs: phase Running, podIP and podIPs.
func runPod(t *testing.T, env *kubeenv.Env, ns, name, node string, ips ...string) {
	t.Helper()
	pods := env.Admin.CoreV1().Pods(ns)
	pod, err := pods.Create(t.Context(), &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pod.Status.Phase = corev1.PodRunning
	pod.Status.PodIP = ips[0]
	pod.Status.PodIPs = nil
	for _, ip := range ips {
		pod.Status.PodIPs = append(pod.Status.PodIPs, corev1.PodIP{IP: ip})
	}
	if _, err := pods.UpdateStatus(t.Context(), pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// buildGoLookup builds testdata/golookup without cgo: its lookups can only
// go through Go's own resolver.
func buildGoLookup(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "golookup")
	cmd := exec.Command("go", "build", "-o", bin, "./testdata/golookup")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building golookup: %v\n%s", err, out)
	}
	return bin
}

// forwardInto makes addr (a loopback TCP address of the test's network
// namespace) reachable at the same address inside ns: a listener made in
// ns, whose connections are relayed from here. Sockets keep the namespace
// they were made in, so only the listen call needs to run in ns.
func forwardInto(t *testing.T, ns *ifacetest.NetNS, addr string) {
	t.Helper()
	var l net.Listener
	if err := inNetNS(ns, func() (err error) {
		l, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		t.Fatalf("listening on %s in %s: %v", addr, ns.Name, err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
	)
	track := func(c net.Conn) {
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
	}
	wg.Go(func() {
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			out, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				in.Close()
				continue
			}
			track(in)
			track(out)
			wg.Go(func() { io.Copy(out, in); out.Close() })
			wg.Go(func() { io.Copy(in, out); in.Close() })
		}
	})
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
}

// waitDig polls until dig from pod, asking nodedns for name's A record,
// prints want (+short: one record a line).
func (d *daemon) waitDig(pod *ifacetest.NetNS, name, want string) {
	d.t.Helper()
	ifacetest.Eventually(d.t, 30*time.Second, func() string {
		if d.exited() {
			d.t.Fatalf("nodedns exited early: %v\n%s", d.err, d.logs)
		}
		out, err := pod.TryExec("dig", "+short", "+tries=1", "+time=1", "@"+localV4, name, "A")
		if out = strings.TrimSpace(out); err != nil || out != want {
			return fmt.Sprintf("dig %s: %q %v, want %q", name, out, err, want)
		}
		return ""
	})
}

// scrape returns every sample nodedns serves on 127.0.0.1:9253 in ns, by
// series ("name{labels}").
func scrape(t *testing.T, ns *ifacetest.NetNS) map[string]float64 {
	t.Helper()
	var body []byte
	err := inNetNS(ns, func() error {
		c, err := net.DialTimeout("tcp", "127.0.0.1:9253", 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"); err != nil {
			return err
		}
		body, err = io.ReadAll(c)
		return err
	})
	if err != nil {
		t.Fatalf("scraping metrics: %v", err)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(string(body)))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "nodedns_") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// sumPrefix adds up the series that start with prefix.
func sumPrefix(samples map[string]float64, prefix string) int {
	total := 0.0
	for k, v := range samples {
		if strings.HasPrefix(k, prefix) {
			total += v
		}
	}
	return int(total)
}

func countOf(list []string, v string) int {
	n := 0
	for _, e := range list {
		if e == v {
			n++
		}
	}
	return n
}

// checkAddrs checks a lookup's output (getent ahosts or golookup) holds
// exactly the addresses want, or that it failed when want is nil.
func checkAddrs(t *testing.T, what, out string, err error, want []string) {
	t.Helper()
	if want == nil {
		if err == nil {
			t.Errorf("%s resolved:\n%s", what, out)
		}
		return
	}
	if err != nil {
		t.Errorf("%s: %v\n%s", what, err, out)
		return
	}
	var got []string
	for line := range strings.SplitSeq(strings.TrimSpace(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 && !slices.Contains(got, f[0]) {
			got = append(got, f[0])
		}
	}
	slices.Sort(got)
	w := slices.Sorted(slices.Values(want))
	if !slices.Equal(got, w) {
		t.Errorf("%s: addresses %q, want %q\n%s", what, got, w, out)
	}
}
