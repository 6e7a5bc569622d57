package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// clusterFixture is a namespace with one Service of every kind, and a
// nodedns watching the real API server with the least-privilege identity.
type clusterFixture struct {
	ns        string
	webIP     string
	d         *daemon
	upstream  interface{ Count(string, uint16) int }
	upQueries func() []string
}

func newClusterFixture(t *testing.T, extraFlags ...string) *clusterFixture {
	env := sharedEnv(t)
	ns := newNamespace(t, env)
	web := createService(t, env, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{
			{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80},
			{Name: "dns", Protocol: corev1.ProtocolUDP, Port: 53},
		}},
	})
	createSlice(t, env, slice(ns, "web-1", "web", []discoveryv1.EndpointPort{port("http", corev1.ProtocolTCP, 8080)},
		endpoint("10.244.1.5", true, "", "")))

	headless := func(name string, ports ...corev1.ServicePort) {
		createService(t, env, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec:       corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Ports: ports},
		})
	}
	headless("db", corev1.ServicePort{Name: "pg", Protocol: corev1.ProtocolTCP, Port: 5432})
	pg := []discoveryv1.EndpointPort{port("pg", corev1.ProtocolTCP, 5432)}
	createSlice(t, env, slice(ns, "db-a", "db", pg,
		endpoint("10.244.1.10", true, "db-0", "db-0"),
		endpoint("10.244.1.11", true, "", "db-deploy-7f9c-abcde"),
		endpoint("10.244.1.12", false, "", "")))
	// A second slice of the same service, repeating one address.
	createSlice(t, env, slice(ns, "db-b", "db", pg,
		endpoint("10.244.2.10", true, "", ""),
		endpoint("10.244.1.10", true, "db-0", "db-0")))

	headless("empty")
	createSlice(t, env, slice(ns, "empty-1", "empty", nil, endpoint("10.244.3.1", false, "", "")))

	headless("big", corev1.ServicePort{Name: "p", Protocol: corev1.ProtocolTCP, Port: 1})
	var many []discoveryv1.Endpoint
	for i := range 50 {
		many = append(many, endpoint(fmt.Sprintf("10.244.10.%d", 1+i), true, "", ""))
	}
	createSlice(t, env, slice(ns, "big-1", "big", nil, many...))
	headless("huge")
	many = nil
	for i := range 300 {
		many = append(many, endpoint(fmt.Sprintf("10.244.%d.%d", 11+i/200, 1+i%200), true, "", ""))
	}
	createSlice(t, env, slice(ns, "huge-1", "huge", nil, many...))

	createService(t, env, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ext"},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "api.example.com"},
	})

	up := upstreamServer(t)
	args := append([]string{"--kubeconfig", env.DNSKubeconfig, "--upstream", up.Addr().String()}, extraFlags...)
	d := startDaemon(t, args...)
	d.WaitReady(30 * time.Second)
	return &clusterFixture{ns: ns, webIP: web.Spec.ClusterIP, d: d, upstream: up, upQueries: func() []string {
		var out []string
		for _, q := range up.Queries() {
			out = append(out, q.Name)
		}
		return out
	}}
}

type rowCase struct {
	row     string
	name    string
	qtype   uint16
	rcode   int
	answer  []string // zone-file syntax without TTL, any order
	extra   []string // additional section, any order; nil: not checked
	soaAuth bool     // SOA expected in authority
}

func checkRow(t *testing.T, d *daemon, network string, c rowCase) {
	t.Helper()
	r, err := d.query(network, c.name, c.qtype)
	if err != nil {
		t.Errorf("%s %s %s/%s: %v", c.row, network, c.name, dns.TypeToString[c.qtype], err)
		return
	}
	what := fmt.Sprintf("%s %s %s %s", c.row, network, c.name, dns.TypeToString[c.qtype])
	if r.Rcode != c.rcode {
		t.Errorf("%s: rcode %s, want %s\n%v", what, dns.RcodeToString[r.Rcode], dns.RcodeToString[c.rcode], r)
		return
	}
	if !r.Authoritative && c.rcode != dns.RcodeServerFailure && !strings.HasSuffix(c.name, "example.com.") && c.row != "R9" {
		t.Errorf("%s: AA not set", what)
	}
	got, want := rrStrings(r.Answer), normalize(c.answer)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("%s: answer\n got %q\nwant %q", what, got, want)
	}
	if c.extra != nil {
		gotX := rrStrings(r.Extra)
		slices.Sort(gotX)
		if wantX := normalize(c.extra); !slices.Equal(gotX, wantX) {
			t.Errorf("%s: additional\n got %q\nwant %q", what, gotX, wantX)
		}
	}
	hasSOA := len(r.Ns) == 1 && r.Ns[0].Header().Rrtype == dns.TypeSOA
	if c.soaAuth != hasSOA {
		t.Errorf("%s: SOA in authority = %v, want %v (%v)", what, hasSOA, c.soaAuth, r.Ns)
	}
}

func normalize(rrs []string) []string {
	out := make([]string, 0, len(rrs))
	for _, s := range rrs {
		out = append(out, strings.ToLower(strings.Join(strings.Fields(s), " ")))
	}
	slices.Sort(out)
	return out
}

func reverse(ip string) string {
	r, err := dns.ReverseAddr(ip)
	if err != nil {
		panic(err)
	}
	return r
}

// TestSpecRows asks every row of SPEC.md through a real DNS client, over
// UDP and TCP, of nodedns watching a real API server.
func TestSpecRows(t *testing.T) {
	f := newClusterFixture(t, "--endpoint-pod-names")
	ns, z := f.ns, "cluster.local."
	svc := func(n string) string { return n + "." + ns + ".svc." + z }
	cases := []rowCase{
		{row: "R1", name: "dns-version." + z, qtype: dns.TypeTXT, answer: []string{"dns-version.cluster.local. IN TXT \"1.1.0\""}},
		{row: "R2", name: z, qtype: dns.TypeNS, answer: []string{"cluster.local. IN NS ns.dns.cluster.local."}},
		{row: "R3", name: svc("web"), qtype: dns.TypeA, answer: []string{svc("web") + " IN A " + f.webIP}},
		{row: "R3", name: svc("web"), qtype: dns.TypeAAAA, soaAuth: true},
		{row: "R4", name: svc("db"), qtype: dns.TypeA, answer: []string{
			svc("db") + " IN A 10.244.1.10", svc("db") + " IN A 10.244.1.11", svc("db") + " IN A 10.244.2.10"}},
		{row: "R4", name: svc("empty"), qtype: dns.TypeA, rcode: dns.RcodeNameError, soaAuth: true},
		{row: "R5", name: "db-0." + svc("db"), qtype: dns.TypeA, answer: []string{"db-0." + svc("db") + " IN A 10.244.1.10"}},
		{row: "R6", name: "10-244-2-10." + svc("db"), qtype: dns.TypeA, answer: []string{"10-244-2-10." + svc("db") + " IN A 10.244.2.10"}},
		{row: "R6", name: "10-244-1-12." + svc("db"), qtype: dns.TypeA, rcode: dns.RcodeNameError, soaAuth: true},
		{row: "R6b", name: "db-deploy-7f9c-abcde." + svc("db"), qtype: dns.TypeA, answer: []string{"db-deploy-7f9c-abcde." + svc("db") + " IN A 10.244.1.11"}},
		{row: "R7", name: "_http._tcp." + svc("web"), qtype: dns.TypeSRV,
			answer: []string{"_http._tcp." + svc("web") + " IN SRV 0 100 80 " + svc("web")},
			extra:  []string{svc("web") + " IN A " + f.webIP}},
		{row: "R7", name: "_dns._udp." + svc("web"), qtype: dns.TypeSRV,
			answer: []string{"_dns._udp." + svc("web") + " IN SRV 0 100 53 " + svc("web")},
			extra:  []string{svc("web") + " IN A " + f.webIP}},
		{row: "R7", name: "_pg._tcp." + svc("db"), qtype: dns.TypeSRV,
			answer: []string{
				"_pg._tcp." + svc("db") + " IN SRV 0 33 5432 db-0." + svc("db"),
				"_pg._tcp." + svc("db") + " IN SRV 0 33 5432 db-deploy-7f9c-abcde." + svc("db"),
				"_pg._tcp." + svc("db") + " IN SRV 0 33 5432 10-244-2-10." + svc("db")},
			extra: []string{
				"db-0." + svc("db") + " IN A 10.244.1.10",
				"db-deploy-7f9c-abcde." + svc("db") + " IN A 10.244.1.11",
				"10-244-2-10." + svc("db") + " IN A 10.244.2.10"}},
		{row: "R8", name: reverse(f.webIP), qtype: dns.TypePTR, answer: []string{reverse(f.webIP) + " IN PTR " + svc("web")}},
		{row: "R8", name: reverse("10.244.1.10"), qtype: dns.TypePTR, answer: []string{reverse("10.244.1.10") + " IN PTR db-0." + svc("db")}},
		{row: "R9", name: svc("ext"), qtype: dns.TypeA, answer: []string{
			svc("ext") + " IN CNAME api.example.com.", "api.example.com. IN A 192.0.2.10"}},
		{row: "R10", name: "10-1-2-3." + ns + ".pod." + z, qtype: dns.TypeA, answer: []string{"10-1-2-3." + ns + ".pod.cluster.local. IN A 10.1.2.3"}},
		{row: "R11", name: "svc." + z, qtype: dns.TypeA, soaAuth: true},
		{row: "R11", name: ns + ".svc." + z, qtype: dns.TypeA, soaAuth: true},
		{row: "R11", name: "_tcp." + svc("db"), qtype: dns.TypeSRV, soaAuth: true},
		{row: "R11", name: svc("web"), qtype: dns.TypeMX, soaAuth: true},
		{row: "R12", name: svc("nothere"), qtype: dns.TypeA, rcode: dns.RcodeNameError, soaAuth: true},
		{row: "R12", name: "api.example.com." + ns + ".svc." + z, qtype: dns.TypeA, rcode: dns.RcodeNameError, soaAuth: true},
		{row: "R12", name: "no.such.namespace.svc." + z, qtype: dns.TypeAAAA, rcode: dns.RcodeNameError, soaAuth: true},
		{row: "fwd", name: "api.example.com.", qtype: dns.TypeA, answer: []string{"api.example.com. IN A 192.0.2.10"}},
	}
	for _, network := range []string{"udp", "tcp"} {
		for _, c := range cases {
			checkRow(t, f.d, network, c)
		}
	}
	// R2: the SOA itself, and its minimum is the negative TTL.
	r, err := f.d.query("udp", z, dns.TypeSOA)
	if err != nil || len(r.Answer) != 1 {
		t.Fatalf("SOA: %v %v", r, err)
	}
	if soa, ok := r.Answer[0].(*dns.SOA); !ok || soa.Minttl != 5 {
		t.Errorf("SOA minimum: %v, want 5", r.Answer[0])
	}
	// Nothing under the cluster zone went upstream (R12), only the
	// ExternalName target and the forwarded name.
	for _, q := range f.upQueries() {
		if strings.HasSuffix(strings.ToLower(q), "cluster.local.") {
			t.Errorf("upstream got a cluster name: %s", q)
		}
	}
}

// TestCaseEchoed checks case-insensitive matching with the question's case
// echoed in the answer.
func TestCaseEchoed(t *testing.T) {
	f := newClusterFixture(t)
	name := "WeB." + strings.ToUpper(f.ns) + ".Svc.Cluster.LOCAL."
	r, err := f.d.query("udp", name, dns.TypeA)
	if err != nil || r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		t.Fatalf("%s: %v %v", name, r, err)
	}
	if got := r.Answer[0].Header().Name; got != name {
		t.Errorf("owner %q, want the question's case %q", got, name)
	}
}

// TestLargeAnswerTruncates: answers respect the client's EDNS0 size over
// UDP (TC when over it), capped at 1232 octets (DNS flag day 2020), and are
// whole over TCP.
func TestLargeAnswerTruncates(t *testing.T) {
	f := newClusterFixture(t)
	for _, c := range []struct {
		svc    string
		n      int
		edns   uint16
		wantTC bool
	}{
		{"big", 50, 0, true},      // ~870 octets > 512
		{"big", 50, 4096, false},  // fits 1232
		{"huge", 300, 4096, true}, // ~4.9 KB > our 1232 cap
	} {
		name := c.svc + "." + f.ns + ".svc.cluster.local."
		r, err := f.d.queryBuf("udp", name, dns.TypeA, c.edns)
		if err != nil {
			t.Fatal(err)
		}
		if r.Truncated != c.wantTC {
			t.Errorf("%s over UDP, EDNS %d: TC=%v, want %v", c.svc, c.edns, r.Truncated, c.wantTC)
		}
		if !r.Truncated && len(r.Answer) != c.n {
			t.Errorf("%s over UDP, EDNS %d: %d answers, want %d", c.svc, c.edns, len(r.Answer), c.n)
		}
		r, err = f.d.queryBuf("tcp", name, dns.TypeA, c.edns)
		if err != nil || r.Truncated || len(r.Answer) != c.n {
			t.Fatalf("%s over TCP: want %d answers; got %v, err %v", c.svc, c.n, r, err)
		}
	}
}

// TestEndpointSliceUpdateVisible measures the time from an EndpointSlice
// update in the API server to the new answer, 50 times.
func TestEndpointSliceUpdateVisible(t *testing.T) {
	f := newClusterFixture(t)
	env := sharedEnv(t)
	ctx := context.Background()
	name := "db." + f.ns + ".svc.cluster.local."
	slices_ := env.Admin.DiscoveryV1().EndpointSlices(f.ns)
	var took []time.Duration
	for i := range 50 {
		es, err := slices_.Get(ctx, "db-b", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ip := fmt.Sprintf("10.244.7.%d", i+1)
		es.Endpoints[0].Addresses = []string{ip}
		start := time.Now()
		if _, err := slices_.Update(ctx, es, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, name+" A to include "+ip, 10*time.Second, func() bool {
			r, err := f.d.query("udp", name, dns.TypeA)
			if err != nil {
				return false
			}
			for _, rr := range r.Answer {
				if a, ok := rr.(*dns.A); ok && a.A.String() == ip {
					return true
				}
			}
			return false
		})
		took = append(took, time.Since(start))
	}
	slices.Sort(took)
	t.Logf("EndpointSlice update to new answer over %d updates: median %v, worst %v",
		len(took), took[len(took)/2].Round(time.Millisecond), took[len(took)-1].Round(time.Millisecond))
}
