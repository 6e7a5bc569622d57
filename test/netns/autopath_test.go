package netns

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/nodedns/nodedns/internal/dnstest"
	"github.com/nodedns/nodedns/pkg/iface/ifacetest"
)

// autopathPod is the pod namespace's address, registered as a Pod of
// namespace default in the zone file.
const autopathPod = `---
apiVersion: v1
kind: Pod
metadata:
  name: client
  namespace: default
spec:
  nodeName: node1
  containers:
  - name: client
    image: busybox
status:
  podIP: 10.123.0.2
  podIPs:
  - ip: 10.123.0.2
  - ip: fd00:123::2
`

// lookupCost is what one getent lookup cost.
type lookupCost struct {
	out      string
	ok       bool
	client   int      // queries nodedns answered
	upstream []string // names the upstream was asked, "name qtype"
}

// TestAutopathGlibc runs the C library's resolver in the pod namespace,
// with the Kubernetes search list and ndots:5, against nodedns with and
// without --autopath, and counts the queries the client sends (nodedns's
// requests_total) and those the upstream receives.
func TestAutopathGlibc(t *testing.T) {
	dir := t.TempDir()
	base, err := os.ReadFile(zone)
	if err != nil {
		t.Fatal(err)
	}
	zoneFile := filepath.Join(dir, "zone.yaml")
	if err := os.WriteFile(zoneFile, append(append(base, '\n'), autopathPod...), 0o644); err != nil {
		t.Fatal(err)
	}
	// The node's own resolv.conf: its search domain is the last of the
	// pod's list, as kubelet makes it.
	nodeConf := filepath.Join(dir, "node-resolv.conf")
	if err := os.WriteFile(nodeConf, []byte("nameserver 10.123.0.1\nsearch node.example\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	type lookup struct {
		name string
		want string // an address in the output; "" = must fail
	}
	lookups := []lookup{
		{"api.example.com", "192.0.2.10"},
		{"web", webIP},
		{"data.prod", "10.96.0.70"},
		{"nowhere.invalid", ""},
	}
	costs := map[bool]map[string]lookupCost{}
	for _, autopath := range []bool{false, true} {
		costs[autopath] = map[string]lookupCost{}
		t.Run(fmt.Sprintf("autopath=%v", autopath), func(t *testing.T) {
			tp := newTopology(t)
			up := startUpstreamIn(t, tp.node, "127.0.0.1:5399", // startDaemon's --upstream
				"api.example.com. 60 IN A 192.0.2.10")
			args := []string{"--zone-file", zoneFile, "--resolv-conf", nodeConf}
			if autopath {
				args = append(args, "--autopath")
			}
			d := startDaemon(t, tp.node, args...)
			d.waitAnswer(tp.pod, localV4)
			podResolvConf(t, tp.pod, "nameserver "+localV4+"\n"+
				"search default.svc.cluster.local svc.cluster.local cluster.local node.example\n"+
				"options ndots:5\n")
			for _, l := range lookups {
				up.Reset()
				before := requests(t, tp.node)
				out, err := tp.pod.TryExec("getent", "ahosts", l.name)
				c := lookupCost{out: out, ok: err == nil, client: requests(t, tp.node) - before}
				for _, q := range up.Queries() {
					c.upstream = append(c.upstream, strings.ToLower(q.Name)+" "+typeName(q.Type))
				}
				costs[autopath][l.name] = c
				t.Logf("getent ahosts %s: client sent %d queries, upstream got %d %q",
					l.name, c.client, len(c.upstream), c.upstream)
				switch {
				case l.want == "" && c.ok:
					t.Errorf("%s resolved: %s", l.name, out)
				case l.want != "" && (!c.ok || !strings.Contains(out, l.want+" ")):
					t.Errorf("%s: %v\n%s", l.name, err, out)
				}
				for _, u := range c.upstream {
					if strings.Contains(u, "cluster.local.") {
						t.Errorf("%s: the upstream was asked the cluster name %s", l.name, u)
					}
				}
			}
		})
	}
	off, on := costs[false], costs[true]
	if t.Failed() || len(off) != len(lookups) || len(on) != len(lookups) {
		return
	}
	// ndots:5, 4 search domains, A and AAAA: the external name takes the
	// whole walk, 5 queries per qtype, without autopath; 1 with it.
	if api := off["api.example.com"]; api.client != 10 || len(api.upstream) != 4 {
		t.Errorf("autopath off, api.example.com: %d client and %d upstream queries, want 10 and 4", api.client, len(api.upstream))
	}
	if api := on["api.example.com"]; api.client != 2 || len(api.upstream) != 4 {
		t.Errorf("autopath on, api.example.com: %d client and %d upstream queries, want 2 and 4", api.client, len(api.upstream))
	}
	// A cluster name of the pod's namespace never needed autopath; one of
	// another namespace takes one round trip instead of two; a name that
	// exists nowhere ends the same after the same number of round trips.
	for name, want := range map[string][2]int{"web": {2, 2}, "data.prod": {4, 2}, "nowhere.invalid": {10, 10}} {
		if off[name].client != want[0] || on[name].client != want[1] {
			t.Errorf("%s: %d client queries without autopath, %d with; want %d and %d",
				name, off[name].client, on[name].client, want[0], want[1])
		}
	}
}

// typeName is A, AAAA or the number.
func typeName(t uint16) string {
	switch t {
	case 1:
		return "A"
	case 28:
		return "AAAA"
	}
	return strconv.Itoa(int(t))
}

// startUpstreamIn runs a loopback upstream inside ns at addr, answering
// rrs and NXDOMAIN for every other name (authoritative for the root).
func startUpstreamIn(t *testing.T, ns *ifacetest.NetNS, addr string, rrs ...string) *dnstest.Server {
	t.Helper()
	var s *dnstest.Server
	if err := inNetNS(ns, func() (err error) {
		s, err = dnstest.New(addr, dnstest.WithRecords(rrs...))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// podResolvConf gives ns the resolv.conf text (ip netns exec mounts
// /etc/netns/<ns>/resolv.conf over /etc/resolv.conf).
func podResolvConf(t *testing.T, ns *ifacetest.NetNS, text string) {
	t.Helper()
	dir := filepath.Join("/etc/netns", ns.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.WriteFile(filepath.Join(dir, "resolv.conf"), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// requests sums nodedns_requests_total, scraped from 127.0.0.1:9253 in ns
// over a connection made inside ns.
func requests(t *testing.T, ns *ifacetest.NetNS) int {
	return sumPrefix(scrape(t, ns), "nodedns_requests_total{")
}
