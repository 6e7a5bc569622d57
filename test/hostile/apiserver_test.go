package hostile

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/nodedns/nodedns/test/e2e/kubeenv"
)

// Phases of TestFlappingAPIServer, for the prober's tally.
const (
	phaseUp      = iota // before the outage
	phaseDown           // nodedns's apiserver stopped
	phaseChanged        // changes made behind its back, history compacted
	phaseRelist         // its apiserver back: 410 Gone, relist
	phaseAfter          // every change visible
	numPhases
)

var phaseNames = [numPhases]string{"up", "down", "changed behind the watch", "relist", "after"}

// tally counts the prober's answers for names that exist throughout.
type tally struct {
	ok, nxdomain, servfail, wrong, lost int
}

func (t tally) bad() int { return t.nxdomain + t.servfail + t.wrong + t.lost }

// prober asks names that exist throughout the test, round robin over UDP,
// until stopped, tallying the answers by phase.
type prober struct {
	d      *daemon
	names  []string          // FQDNs
	want   map[string]string // name -> its A record
	phase  atomic.Int32
	mu     sync.Mutex
	counts [numPhases]tally
	first  []string // the first few bad answers, for the failure message
	stop   chan struct{}
	done   chan struct{}
}

func (p *prober) run() {
	defer close(p.done)
	tick := time.NewTicker(2 * time.Millisecond) // pacing: ~500 queries/s at most
	defer tick.Stop()
	c := dns.Client{Net: "udp", Timeout: time.Second}
	for i := 0; ; i++ {
		select {
		case <-p.stop:
			return
		case <-tick.C:
		}
		name := p.names[i%len(p.names)]
		m := new(dns.Msg).SetQuestion(name, dns.TypeA)
		ph := p.phase.Load()
		r, _, err := c.Exchange(m, p.d.DNS)
		p.mu.Lock()
		t := &p.counts[ph]
		bad := ""
		switch {
		case err != nil:
			t.lost++
			bad = err.Error()
		case r.Rcode == dns.RcodeNameError:
			t.nxdomain++
			bad = "NXDOMAIN"
		case r.Rcode == dns.RcodeServerFailure:
			t.servfail++
			bad = "SERVFAIL"
		case firstA(r) != p.want[name]:
			t.wrong++
			bad = fmt.Sprintf("%s %v", dns.RcodeToString[r.Rcode], r.Answer)
		default:
			t.ok++
		}
		if bad != "" && len(p.first) < 10 {
			p.first = append(p.first, fmt.Sprintf("%s %s: %s (phase %s)", time.Now().Format("15:04:05.000"), name, bad, phaseNames[ph]))
		}
		p.mu.Unlock()
	}
}

// ownAPIServer starts an API server and etcd of the test's own, which it
// may kill and restart, with namespace ns created.
func ownAPIServer(t *testing.T, ns string) *kubeenv.Env {
	t.Helper()
	if testing.Short() {
		t.Skip("restarts an API server")
	}
	env := kubeenv.StartForTest(t)
	if _, err := env.Admin.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return env
}

func clusterIPService(ns, name string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}},
	}
}

func headlessService(ns, name string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone},
	}
}

func sliceFor(ns, name, svc string, ips ...string) *discoveryv1.EndpointSlice {
	es := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{
			discoveryv1.LabelServiceName: svc,
			discoveryv1.LabelManagedBy:   "nodedns-hostile",
		}},
		AddressType: discoveryv1.AddressTypeIPv4,
	}
	for _, ip := range ips {
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}})
	}
	return es
}

// aRecords returns the sorted A records of name, and the rcode.
func (d *daemon) aRecords(name string) ([]string, int) {
	r, _, err := d.ask("udp", name, dns.TypeA)
	if err != nil {
		return nil, -1
	}
	var ips []string
	for _, rr := range r.Answer {
		if a, ok := rr.(*dns.A); ok {
			ips = append(ips, a.A.String())
		}
	}
	slices.Sort(ips)
	return ips, r.Rcode
}

// TestFlappingAPIServer: nodedns's API server is killed. While it is down,
// objects are changed, created and deleted through a second API server on
// the same etcd, and etcd's history is compacted past everything nodedns
// has seen, so no watch can resume: the informers must relist once their
// API server is back. Names that exist throughout are asked all along:
// none may get NXDOMAIN or SERVFAIL (no empty or partial zone is ever
// published); every change made behind the watch's back must appear.
func TestFlappingAPIServer(t *testing.T) {
	if testing.Short() {
		t.Skip("restarts an API server")
	}
	env := kubeenv.StartForTest(t)
	ctx := t.Context()
	admin := env.Admin
	const ns, nsNew = "flap", "flap-new"
	mustNS := func(c kubernetes.Interface, name string) {
		t.Helper()
		if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	mustSvc := func(c kubernetes.Interface, svc *corev1.Service) string {
		t.Helper()
		got, err := c.CoreV1().Services(svc.Namespace).Create(ctx, svc, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return got.Spec.ClusterIP
	}
	mustSlice := func(c kubernetes.Interface, es *discoveryv1.EndpointSlice) {
		t.Helper()
		if _, err := c.DiscoveryV1().EndpointSlices(es.Namespace).Create(ctx, es, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	mustNS(admin, ns)
	fqdn := func(svc, ns string) string { return svc + "." + ns + ".svc.cluster.local." }
	want := map[string]string{}
	var stable []string
	for i := range 20 {
		name := fmt.Sprintf("s%02d", i)
		want[fqdn(name, ns)] = mustSvc(admin, clusterIPService(ns, name))
		stable = append(stable, fqdn(name, ns))
	}
	mustSvc(admin, headlessService(ns, "db"))
	mustSlice(admin, sliceFor(ns, "db-1", "db", "10.244.9.1"))
	want[fqdn("db", ns)] = "10.244.9.1"
	stable = append(stable, fqdn("db", ns), "kubernetes.default.svc.cluster.local.")
	want["kubernetes.default.svc.cluster.local."] = "10.96.0.1"
	mustSvc(admin, headlessService(ns, "moved"))
	mustSlice(admin, sliceFor(ns, "moved-1", "moved", "10.244.8.1"))
	mustSvc(admin, clusterIPService(ns, "doomed"))

	up := upstreamServer(t, "127.0.0.2:0")
	// The least-privilege identity (list/watch only), as deployed.
	d := startDaemon(t, "--kubeconfig", env.DNSKubeconfig, "--upstream", up.Addr().String())
	d.WaitReady(30 * time.Second)
	for _, name := range stable {
		if ips, rc := d.aRecords(name); rc != dns.RcodeSuccess || len(ips) != 1 || ips[0] != want[name] {
			t.Fatalf("%s before the outage: %v rcode %d, want %s", name, ips, rc, want[name])
		}
	}
	servicesBefore := d.Metric(`nodedns_zone_objects{kind="services"}`)

	p := &prober{d: d, names: stable, want: want, stop: make(chan struct{}), done: make(chan struct{})}
	go p.run()
	stopProber := sync.OnceFunc(func() { close(p.stop); <-p.done })
	defer stopProber()
	// The zone's object count, sampled: it must never drop while the
	// stable objects exist.
	minServices := servicesBefore
	var minMu sync.Mutex
	sampleDone := make(chan struct{})
	sampleStop := make(chan struct{})
	go func() {
		defer close(sampleDone)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-sampleStop:
				return
			case <-tick.C:
			}
			if v := d.Metric(`nodedns_zone_objects{kind="services"}`); v >= 0 {
				minMu.Lock()
				minServices = min(minServices, v)
				minMu.Unlock()
			}
		}
	}()
	stopSampler := sync.OnceFunc(func() { close(sampleStop); <-sampleDone })
	defer stopSampler()
	waitFor(t, "the prober's first answers", 10*time.Second, func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.counts[phaseUp].ok >= 20
	})
	errsBefore := d.metricSum("nodedns_watch_errors_total")

	// Down: killed, as a crash would, so the watches break without the
	// graceful close of a SIGTERM; the informers keep retrying.
	p.phase.Store(phaseDown)
	downAt := time.Now()
	if err := env.KillAPIServer(); err != nil {
		t.Fatal(err)
	}

	// Changes the watch cannot see, through a second apiserver on the same etcd.
	second, err := env.StartSecondAPIServer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { second.Stop() })
	p.phase.Store(phaseChanged)
	c2 := second.Admin
	es, err := c2.DiscoveryV1().EndpointSlices(ns).Get(ctx, "moved-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	es.Endpoints[0].Addresses = []string{"10.244.8.2"}
	if _, err := c2.DiscoveryV1().EndpointSlices(ns).Update(ctx, es, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c2.CoreV1().Services(ns).Delete(ctx, "doomed", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	bornIP := mustSvc(c2, clusterIPService(ns, "born"))
	mustNS(c2, nsNew)
	freshIP := mustSvc(c2, clusterIPService(nsNew, "fresh"))
	rev, err := env.EtcdRevision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := env.CompactEtcd(ctx, rev); err != nil {
		t.Fatal(err)
	}
	if err := second.Stop(); err != nil {
		t.Fatal(err)
	}
	// Nothing of it can have reached nodedns yet.
	if ips, _ := d.aRecords(fqdn("moved", ns)); !slices.Equal(ips, []string{"10.244.8.1"}) {
		t.Errorf("moved while nodedns's apiserver is down: %v, want the last zone's 10.244.8.1", ips)
	}
	downFor := time.Since(downAt)

	// Back: the watches resume from a compacted revision, get 410 Gone
	// and must relist.
	p.phase.Store(phaseRelist)
	restartAt := time.Now()
	if err := env.StartAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	backAt := time.Now()
	type change struct {
		what string
		ok   func() bool
	}
	changes := []change{
		{"moved's endpoint changed to 10.244.8.2", func() bool {
			ips, rc := d.aRecords(fqdn("moved", ns))
			return rc == dns.RcodeSuccess && slices.Equal(ips, []string{"10.244.8.2"})
		}},
		{"doomed deleted", func() bool { _, rc := d.aRecords(fqdn("doomed", ns)); return rc == dns.RcodeNameError }},
		{"born created", func() bool {
			ips, rc := d.aRecords(fqdn("born", ns))
			return rc == dns.RcodeSuccess && slices.Equal(ips, []string{bornIP})
		}},
		{"namespace flap-new and fresh created", func() bool {
			ips, rc := d.aRecords(fqdn("fresh", nsNew))
			return rc == dns.RcodeSuccess && slices.Equal(ips, []string{freshIP})
		}},
	}
	seen := make([]time.Duration, len(changes))
	waitFor(t, "every change made behind the watch's back", 90*time.Second, func() bool {
		all := true
		for i, c := range changes {
			if seen[i] == 0 && c.ok() {
				seen[i] = time.Since(backAt)
			}
			all = all && seen[i] != 0
		}
		return all
	})
	recovered := time.Since(backAt)
	// Keep asking a little longer: a late partial publish would show here.
	p.phase.Store(phaseAfter)
	waitFor(t, "answers after the relist", 10*time.Second, func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.counts[phaseAfter].ok+p.counts[phaseAfter].bad() >= 200
	})
	stopProber()
	stopSampler()
	d.Alive()

	// The relist. The deletion the watch missed (doomed) can only have come
	// from one, as events before the compaction are gone; client-go also
	// logs (at debug, through nodedns's logger) each list+watch it starts
	// (3 at start-up) and each watch that ended 410 Gone. client-go v0.34
	// relists after a broken watch with resourceVersion=<last seen>, which
	// the restarted apiserver serves from its watch cache, so the 410 is
	// not expected to show; the relist is.
	errsAfter := d.metricSum("nodedns_watch_errors_total")
	gone, lists := 0, 0
	for line := range strings.SplitSeq(d.Logs.String(), "\n") {
		l := strings.ToLower(line)
		if strings.Contains(l, "watch closed") && (strings.Contains(l, "too old resource version") ||
			strings.Contains(l, "expired") || strings.Contains(l, "gone")) {
			gone++
		}
		if strings.Contains(l, "listing and watching") {
			lists++
		}
	}
	if lists <= 3 {
		t.Errorf("%d list+watch starts logged, the 3 of start-up only: did the informers relist?", lists)
	}
	if errsAfter <= errsBefore {
		t.Errorf("nodedns_watch_errors_total %v -> %v: the outage was not counted", errsBefore, errsAfter)
	}
	// While the server is down nodedns retries at most every 4 s
	// (pkg/kube/retry.go); client-go's own backoff would reach 30 s, doubled
	// by jitter. The bound leaves room for a slow relist on a loaded machine.
	if recovered > 20*time.Second {
		t.Errorf("the changes took %v after the API server was ready again to appear; want within 20 s", recovered.Round(time.Millisecond))
	}
	total := tally{}
	for ph, c := range p.counts {
		figure(t, "phase %q: %d answers for names that exist throughout: %d right, %d NXDOMAIN, %d SERVFAIL, %d wrong, %d lost",
			phaseNames[ph], c.ok+c.bad(), c.ok, c.nxdomain, c.servfail, c.wrong, c.lost)
		total.ok += c.ok
		total.nxdomain += c.nxdomain
		total.servfail += c.servfail
		total.wrong += c.wrong
		total.lost += c.lost
	}
	if total.bad() > 0 {
		t.Errorf("%d bad answers for names that exist throughout (%d NXDOMAIN, %d SERVFAIL, %d wrong, %d lost); first: %s",
			total.bad(), total.nxdomain, total.servfail, total.wrong, total.lost, strings.Join(p.first, "; "))
	}
	minMu.Lock()
	if minServices < servicesBefore-1 { // doomed is deleted; born and fresh come
		t.Errorf("nodedns_zone_objects{kind=services} dropped to %v (from %v): a partial zone was published", minServices, servicesBefore)
	}
	figure(t, "apiserver killed for %v (changes made and etcd compacted meanwhile); every change visible %v after it was ready again (%s; %v after its start); %d watches ended 410 Gone, %d list+watch starts; nodedns_watch_errors_total %v -> %v; zone services min %v (before %v)",
		downFor.Round(time.Millisecond), recovered.Round(time.Millisecond), fmtSeen(changes, seen), (recovered + backAt.Sub(restartAt)).Round(time.Millisecond),
		gone, lists, errsBefore, errsAfter, minServices, servicesBefore)
	minMu.Unlock()
}

func fmtSeen[T any](changes []T, seen []time.Duration) string {
	var parts []string
	for i := range changes {
		parts = append(parts, seen[i].Round(time.Millisecond).String())
	}
	return strings.Join(parts, ", ")
}
