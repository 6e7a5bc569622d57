package zonefile

import (
	"errors"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/nodedns/nodedns/pkg/zone"
)

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

func port(name, proto string, n int32) zone.Port {
	return zone.Port{Name: name, Protocol: proto, Port: n}
}

func mustParse(t *testing.T, src string) (zone.Objects, []string) {
	t.Helper()
	objs, notes, err := Parse("zone.yaml", []byte(src))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return objs, notes
}

func findService(objs zone.Objects, ns, name string) *zone.Service {
	for _, s := range objs.Services {
		if s.Namespace == ns && s.Name == name {
			return s
		}
	}
	return nil
}

// slicesOf returns the slices of a service, in file order.
func slicesOf(objs zone.Objects, ns, svc string) []*zone.EndpointSlice {
	var out []*zone.EndpointSlice
	for _, es := range objs.EndpointSlices {
		if es.Namespace == ns && es.ServiceName == svc {
			out = append(out, es)
		}
	}
	return out
}

func TestParseDocumentsAndLists(t *testing.T) {
	src := `# leading comment, empty first document
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  clusterIP: 10.96.0.50
  ports: [{name: http, port: 80}]
--- # a comment on the marker line
# only comments in this one
---
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Namespace
  metadata: {name: prod}
- apiVersion: v1
  kind: Service
  metadata: {name: data, namespace: prod}
  spec: {clusterIP: 10.96.0.70}
---
apiVersion: v1
kind: ServiceList   # as the API returns it: items without kind
items:
- metadata: {name: dns, namespace: kube-system}
  spec: {clusterIP: None}
...
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSliceList
items:
- metadata:
    name: dns-x
    namespace: kube-system
    labels: {kubernetes.io/service-name: dns}
  addressType: IPv6
  endpoints: [{addresses: ["fd00::53"]}]
`
	objs, notes := mustParse(t, src)
	if len(notes) != 0 {
		t.Errorf("notes: %q", notes)
	}
	want := zone.Objects{
		Namespaces: []string{"default", "kube-system", "prod"},
		Services: []*zone.Service{
			{Namespace: "default", Name: "web", ClusterIPs: addrs("10.96.0.50"), Ports: []zone.Port{{Name: "http", Protocol: "TCP", Port: 80}}},
			{Namespace: "prod", Name: "data", ClusterIPs: addrs("10.96.0.70")},
			{Namespace: "kube-system", Name: "dns", Headless: true},
		},
		EndpointSlices: []*zone.EndpointSlice{{
			Namespace: "kube-system", Name: "dns-x", ServiceName: "dns", AddressType: "IPv6",
			Endpoints: []zone.Endpoint{{Addresses: addrs("fd00::53"), Ready: true}},
		}},
	}
	if !reflect.DeepEqual(objs, want) {
		t.Errorf("got  %s\nwant %s", dump(objs), dump(want))
	}

	// CRLF line endings and a BOM change nothing.
	crlf := "\xef\xbb\xbf" + strings.ReplaceAll(src, "\n", "\r\n")
	if objs2, _ := mustParse(t, crlf); !reflect.DeepEqual(objs2, want) {
		t.Errorf("CRLF: got %s", dump(objs2))
	}

	// Empty input is an empty zone.
	if objs, _ := mustParse(t, "\n# nothing\n---\n"); !reflect.DeepEqual(objs, zone.Objects{}) {
		t.Errorf("empty: %s", dump(objs))
	}
}

func dump(o zone.Objects) string {
	var b strings.Builder
	b.WriteString("ns=" + strings.Join(o.Namespaces, ",") + "\n")
	for _, s := range o.Services {
		b.WriteString("  svc " + strings.TrimSpace(strings.ReplaceAll(sprint(s), "\n", " ")) + "\n")
	}
	for _, s := range o.EndpointSlices {
		b.WriteString("  es " + sprint(s) + "\n")
	}
	for _, p := range o.Pods {
		b.WriteString("  pod " + sprint(p) + "\n")
	}
	return b.String()
}

func TestParseIgnoredKinds(t *testing.T) {
	src := `apiVersion: apps/v1
kind: Deployment
metadata: {name: nginx}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: cfg}
data: {a: b}
---
apiVersion: serving.knative.dev/v1
kind: Service
metadata: {name: hello}
spec: {template: {}}
---
apiVersion: v1
kind: List
items:
- apiVersion: apps/v1
  kind: StatefulSet
  metadata: {name: db}
- apiVersion: example.com/v1
  kind: Widget
  metadata: {name: w}
---
apiVersion: example.com/v1
kind: AccessList
items: not-a-list
`
	objs, notes := mustParse(t, src)
	if len(objs.Services) != 0 || len(objs.Pods) != 0 {
		t.Errorf("objects from ignored kinds: %s", dump(objs))
	}
	want := []string{
		`zone.yaml:5: ignored ConfigMap (apiVersion "v1"): not a kind nodedns reads`,
		`zone.yaml:10: ignored Service (apiVersion "serving.knative.dev/v1"): not a kind nodedns reads`,
		`zone.yaml:21: ignored Widget (apiVersion "example.com/v1"): not a kind nodedns reads`,
		`zone.yaml:25: ignored AccessList (apiVersion "example.com/v1"): not a kind nodedns reads`,
	}
	if !reflect.DeepEqual(notes, want) {
		t.Errorf("notes:\n%s\nwant:\n%s", strings.Join(notes, "\n"), strings.Join(want, "\n"))
	}
}

func TestParseEndpointsFromPods(t *testing.T) {
	src := `apiVersion: v1
kind: Service
metadata: {name: default-subdomain}
spec:
  selector: {name: busybox}
  clusterIP: None
  ports: [{name: foo, port: 1234, targetPort: 1234}]
---
apiVersion: v1
kind: Pod
metadata: {name: busybox1, labels: {name: busybox}}
spec: {hostname: busybox-1, subdomain: default-subdomain}
status: {podIP: 10.44.0.6}
---
apiVersion: v1
kind: Pod
metadata: {name: busybox2, labels: {name: busybox, extra: label}}
spec: {hostname: busybox-2, subdomain: other}   # subdomain names another service: no hostname
status: {podIP: 10.44.0.7}
---
apiVersion: v1
kind: Pod
metadata: {name: not-ready, labels: {name: busybox}}
status:
  podIP: 10.44.0.8
  conditions: [{type: Ready, status: "False"}]
---
apiVersion: v1
kind: Pod
metadata: {name: leaving, labels: {name: busybox}, deletionTimestamp: "2024-01-01T00:00:00Z"}
status: {podIP: 10.44.0.9}
---
apiVersion: v1
kind: Pod
metadata: {name: done, labels: {name: busybox}}
status: {phase: Succeeded, podIP: 10.44.0.10}
---
apiVersion: v1
kind: Pod
metadata: {name: no-ip, labels: {name: busybox}}
---
apiVersion: v1
kind: Pod
metadata: {name: elsewhere, namespace: other, labels: {name: busybox}}
status: {podIP: 10.44.0.11}
---
apiVersion: v1
kind: Pod
metadata: {name: dual, labels: {name: busybox}}
status: {podIPs: [{ip: 10.44.0.12}, {ip: "fd00::12"}]}
`
	objs, _ := mustParse(t, src)
	got := slicesOf(objs, "default", "default-subdomain")
	if len(got) != 2 {
		t.Fatalf("want an IPv4 and an IPv6 slice, got %s", dump(objs))
	}
	ports := []zone.Port{{Name: "foo", Protocol: "TCP", Port: 1234}}
	want4 := &zone.EndpointSlice{
		Namespace: "default", Name: "default-subdomain-zonefile-ipv4", ServiceName: "default-subdomain", AddressType: "IPv4",
		Ports: ports,
		Endpoints: []zone.Endpoint{
			{Addresses: addrs("10.44.0.6"), Hostname: "busybox-1", Ready: true, PodName: "busybox1"},
			{Addresses: addrs("10.44.0.7"), Ready: true, PodName: "busybox2"},
			{Addresses: addrs("10.44.0.8"), Ready: false, PodName: "not-ready"},
			{Addresses: addrs("10.44.0.9"), Ready: false, Terminating: true, PodName: "leaving"},
			{Addresses: addrs("10.44.0.12"), Ready: true, PodName: "dual"},
		},
	}
	want6 := &zone.EndpointSlice{
		Namespace: "default", Name: "default-subdomain-zonefile-ipv6", ServiceName: "default-subdomain", AddressType: "IPv6",
		Ports:     ports,
		Endpoints: []zone.Endpoint{{Addresses: addrs("fd00::12"), Ready: true, PodName: "dual"}},
	}
	if !reflect.DeepEqual(got[0], want4) {
		t.Errorf("IPv4 slice:\n got %s\nwant %s", sprint(got[0]), sprint(want4))
	}
	if !reflect.DeepEqual(got[1], want6) {
		t.Errorf("IPv6 slice:\n got %s\nwant %s", sprint(got[1]), sprint(want6))
	}
	if len(objs.Pods) != 8 {
		t.Errorf("%d pods, want 8", len(objs.Pods))
	}
	if !slices.Equal(objs.Namespaces, []string{"default", "other"}) {
		t.Errorf("namespaces %q", objs.Namespaces)
	}
}

func TestParseEndpointsFromPodsRules(t *testing.T) {
	src := `apiVersion: v1
kind: Service
metadata: {name: pnr}
spec:
  selector: {app: a}
  clusterIP: None
  publishNotReadyAddresses: true
  ports:
  - {name: web, port: 80, targetPort: http}     # named: resolved per pod
  - {name: metrics, port: 9090, protocol: TCP}  # no targetPort: same as port
---
apiVersion: v1
kind: Pod
metadata: {name: a1, labels: {app: a}}
spec:
  containers:
  - name: c
    ports: [{name: http, containerPort: 8080}]
status:
  podIP: 10.0.0.1
  conditions: [{type: Ready, status: "False"}]
---
apiVersion: v1
kind: Pod
metadata: {name: a2, labels: {app: a}}
spec: {containers: [{name: c}]}   # no port named http
status: {podIP: 10.0.0.2}
---
# v4-only ClusterIP service: only IPv4 endpoints
apiVersion: v1
kind: Service
metadata: {name: v4}
spec: {selector: {app: a}, clusterIP: 10.96.0.9}
---
# explicit slice: no emulation
apiVersion: v1
kind: Service
metadata: {name: explicit}
spec: {selector: {app: a}, clusterIP: None}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: explicit-1, labels: {kubernetes.io/service-name: explicit}}
addressType: IPv4
endpoints: [{addresses: [10.9.9.9]}]
---
apiVersion: v1
kind: Service
metadata: {name: ext}
spec: {type: ExternalName, externalName: Example.COM., selector: {app: a}}
---
apiVersion: v1
kind: Pod
metadata: {name: a3, labels: {app: a}}
status: {podIPs: [{ip: "fd00::3"}]}
`
	objs, _ := mustParse(t, src)
	pnr := slicesOf(objs, "default", "pnr")
	if len(pnr) != 3 {
		t.Fatalf("pnr: want 3 slices (two port sets in IPv4, one IPv6), got %s", dump(objs))
	}
	if e := pnr[0].Endpoints; len(e) != 1 || e[0].PodName != "a1" || !e[0].Ready {
		t.Errorf("publishNotReady: a1 should be ready: %s", sprint(pnr[0]))
	}
	if p := pnr[0].Ports; !reflect.DeepEqual(p, []zone.Port{port("web", "TCP", 8080), port("metrics", "TCP", 9090)}) {
		t.Errorf("a1 ports %+v", p)
	}
	if p := pnr[1].Ports; pnr[1].Endpoints[0].PodName != "a2" || !reflect.DeepEqual(p, []zone.Port{port("metrics", "TCP", 9090)}) {
		t.Errorf("a2 slice %s", sprint(pnr[1]))
	}
	if pnr[1].Name != "pnr-zonefile-ipv4-1" || pnr[2].AddressType != "IPv6" {
		t.Errorf("slice names/families: %s / %s", pnr[1].Name, pnr[2].AddressType)
	}
	if v4 := slicesOf(objs, "default", "v4"); len(v4) != 1 || v4[0].AddressType != "IPv4" || len(v4[0].Endpoints) != 2 {
		t.Errorf("v4 service slices: %s", dump(objs))
	}
	if ex := slicesOf(objs, "default", "explicit"); len(ex) != 1 || ex[0].Name != "explicit-1" {
		t.Errorf("explicit slice replaced: %s", dump(objs))
	}
	if n := len(slicesOf(objs, "default", "ext")); n != 0 {
		t.Errorf("ExternalName service got %d slices", n)
	}
	if s := findService(objs, "default", "ext"); s.ExternalName != "example.com" {
		t.Errorf("externalName %q", s.ExternalName)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		line int
		msg  string
	}{
		{"yaml syntax in second document", `apiVersion: v1
kind: Namespace
metadata: {name: a}
---
apiVersion: v1
kind: Service
metadata:
  name: web
   namespace: x
`, 9, "yaml: "},
		{"tab indentation", "apiVersion: v1\nkind: Service\nmetadata:\n\tname: web\n", 4, "yaml: "},
		{"type error at the field", `apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  ports:
  - name: http
    port: 80
  - name: https
    port: https
`, 10, "Service: spec.ports[1].port: got string, want int32"},
		{"type error in a List item", `apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Namespace
  metadata: {name: a}
- apiVersion: v1
  kind: Pod
  metadata:
    name: p
  status:
    podIPs:
      - ip: [1, 2]
`, 13, "Pod: status.podIPs[0].ip: got array, want string"},
		{"bad cluster IP", `apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  clusterIPs:
  - 10.96.0.50
  - 10.96.0.500
`, 7, `Service default/web: spec.clusterIPs[1]: "10.96.0.500" is not an IP address`},
		{"bad pod hostname", `---
---
apiVersion: v1
kind: Pod
metadata: {name: p, namespace: ns}
spec:
  subdomain: svc
  hostname: Not_A_Label
`, 8, "Pod ns/p: spec.hostname: "},
		{"missing kind", "\n\napiVersion: v1\nmetadata: {name: x}\n", 3, "missing kind"},
		{"missing name", "apiVersion: v1\nkind: Service\nspec: {}\n", 1, "metadata.name: missing"},
		{"not a mapping", "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n- a\n- b\n", 5, "not a Kubernetes object"},
		{"endpointslice v1beta1", "apiVersion: discovery.k8s.io/v1beta1\nkind: EndpointSlice\nmetadata: {name: x}\n", 1, `unsupported apiVersion "discovery.k8s.io/v1beta1"`},
		{"wrong address family", `apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: x}
addressType: IPv4
endpoints:
- addresses: ["fd00::1"]
`, 6, `endpoints[0].addresses[0]: "fd00::1" is not an IPv4 address`},
		{"duplicate", "kind: Service\napiVersion: v1\nmetadata: {name: a}\n---\nkind: Service\napiVersion: v1\nmetadata: {name: a, namespace: default}\n", 5, "duplicate Service default/a (first at line 1)"},
		{"kind of the wrong type", "apiVersion: v1\nkind: [Service]\n", 2, "object: kind: got array, want string"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := Parse("zone.yaml", []byte(tt.src))
			if err == nil {
				t.Fatal("no error")
			}
			var ze *Error
			if !errors.As(err, &ze) {
				t.Fatalf("error %T %v is not an *Error", err, err)
			}
			if ze.File != "zone.yaml" || ze.Line != tt.line || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("got %q (line %d); want line %d and %q", err, ze.Line, tt.line, tt.msg)
			}
			if want := "zone.yaml:"; !strings.HasPrefix(err.Error(), want) {
				t.Errorf("error %q does not start with %q", err, want)
			}
		})
	}
}

func TestLoadExample(t *testing.T) {
	objs, err := Load("../../examples/zone.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, notes, _ := Parse("zone.yaml", mustRead(t, "../../examples/zone.yaml"))
	if len(notes) != 0 {
		t.Errorf("the example has notes: %q", notes)
	}
	if !slices.Equal(objs.Namespaces, []string{"default", "kube-system", "prod", "test"}) {
		t.Errorf("namespaces %q", objs.Namespaces)
	}

	nginx := findService(objs, "default", "nginx")
	if nginx == nil || !nginx.Headless || !reflect.DeepEqual(nginx.Ports, []zone.Port{port("http", "TCP", 80)}) {
		t.Errorf("nginx service %+v", nginx)
	}
	es := slicesOf(objs, "default", "nginx")
	if len(es) != 1 {
		t.Fatalf("nginx: %d slices", len(es))
	}
	wantEP := []zone.Endpoint{
		{Addresses: addrs("10.244.1.68"), Ready: true, PodName: "nginx-5d59d67564-2cwdz"},
		{Addresses: addrs("10.244.2.209"), Ready: true, PodName: "nginx-5d59d67564-bp5br"},
	}
	if !reflect.DeepEqual(es[0].Endpoints, wantEP) || !reflect.DeepEqual(es[0].Ports, []zone.Port{port("http", "TCP", 80)}) {
		t.Errorf("nginx slice %s", sprint(es[0]))
	}

	bb := slicesOf(objs, "default", "default-subdomain")
	if len(bb) != 1 || len(bb[0].Endpoints) != 2 {
		t.Fatalf("default-subdomain slices: %s", dump(objs))
	}
	for i, want := range []struct{ host, ip, pod string }{{"busybox-1", "10.44.0.6", "busybox1"}, {"busybox-2", "10.44.0.7", "busybox2"}} {
		ep := bb[0].Endpoints[i]
		if ep.Hostname != want.host || ep.Addresses[0] != netip.MustParseAddr(want.ip) || ep.PodName != want.pod || !ep.Ready {
			t.Errorf("busybox endpoint %d: %+v", i, ep)
		}
	}

	checks := []struct {
		ns, name string
		want     zone.Service
	}{
		{"default", "web", zone.Service{ClusterIPs: addrs("10.96.0.50"), Ports: []zone.Port{port("http", "TCP", 80), port("https", "TCP", 443)}}},
		{"default", "kubernetes", zone.Service{ClusterIPs: addrs("10.96.0.1"), Ports: []zone.Port{port("https", "TCP", 443)}}},
		{"kube-system", "kube-dns", zone.Service{ClusterIPs: addrs("10.96.0.10"), Ports: []zone.Port{port("dns", "UDP", 53), port("dns-tcp", "TCP", 53)}}},
		{"prod", "data", zone.Service{ClusterIPs: addrs("10.96.0.70"), Ports: []zone.Port{port("postgres", "TCP", 5432)}}},
		{"prod", "db", zone.Service{ExternalName: "db.example.com"}},
		{"default", "dual", zone.Service{ClusterIPs: addrs("10.96.0.60", "fd00:10:96::60"), Ports: []zone.Port{port("http", "TCP", 80)}}},
		{"default", "cache", zone.Service{Headless: true, Ports: []zone.Port{port("redis", "TCP", 6379)}}},
	}
	for _, c := range checks {
		c.want.Namespace, c.want.Name = c.ns, c.name
		if got := findService(objs, c.ns, c.name); got == nil || !reflect.DeepEqual(*got, c.want) {
			t.Errorf("service %s/%s: got %+v want %+v", c.ns, c.name, got, c.want)
		}
	}
	cache := slicesOf(objs, "default", "cache")
	if len(cache) != 1 || len(cache[0].Endpoints) != 2 ||
		cache[0].Endpoints[0].Hostname != "cache-0" || !cache[0].Endpoints[0].Ready ||
		cache[0].Endpoints[1].Hostname != "cache-1" || cache[0].Endpoints[1].Ready {
		t.Errorf("cache slices: %s", dump(objs))
	}
	if len(objs.Pods) != 4 {
		t.Errorf("%d pods, want 4", len(objs.Pods))
	}
}
