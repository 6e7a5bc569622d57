package deploy

import (
	"fmt"
	"net/netip"
	"os/exec"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
)

// drainBound is how long the daemon may take after --shutdown-grace to
// close its listeners (the stop context in cmd/nodedns/run.go).
const drainBound = 5 * time.Second

// TestClusterRoleLeastPrivilege: the role grants list and watch on the four
// resources the zone is built from, and nothing else: no other verb, no
// wildcard, no non-resource URL. (That it is enough is proven by running
// the daemon with it: TestAgainstAPIServer/clusterrole-is-enough.)
func TestClusterRoleLeastPrivilege(t *testing.T) {
	m := loadManifests(t)
	want := map[string]bool{ // "group/resource verb"
		"/services list": true, "/services watch": true,
		"/namespaces list": true, "/namespaces watch": true,
		"/pods list": true, "/pods watch": true,
		"discovery.k8s.io/endpointslices list": true, "discovery.k8s.io/endpointslices watch": true,
	}
	got := map[string]bool{}
	if m.role.AggregationRule != nil {
		t.Errorf("ClusterRole %s: aggregationRule would pull in other roles' rules", m.role.Name)
	}
	for i, r := range m.role.Rules {
		if len(r.NonResourceURLs) > 0 {
			t.Errorf("rule %d: nonResourceURLs %v", i, r.NonResourceURLs)
		}
		if len(r.ResourceNames) > 0 {
			t.Errorf("rule %d: resourceNames %v (list/watch of every object is needed)", i, r.ResourceNames)
		}
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					key := g + "/" + res + " " + v
					if !want[key] {
						t.Errorf("rule %d grants %q: only list/watch on services, namespaces, pods, endpointslices.discovery.k8s.io", i, key)
					}
					got[key] = true
				}
			}
		}
	}
	for key := range want {
		if !got[key] {
			t.Errorf("ClusterRole %s lacks %q", m.role.Name, key)
		}
	}

	// The binding ties exactly this role to exactly the DaemonSet's
	// ServiceAccount.
	b := m.binding
	if b.RoleRef != (rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: m.role.Name}) {
		t.Errorf("ClusterRoleBinding %s roleRef %+v, want ClusterRole %s", b.Name, b.RoleRef, m.role.Name)
	}
	wantSubject := rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Name: m.sa.Name, Namespace: m.sa.Namespace}
	if len(b.Subjects) != 1 || b.Subjects[0] != wantSubject {
		t.Errorf("ClusterRoleBinding %s subjects %+v, want only %+v", b.Name, b.Subjects, wantSubject)
	}
	if got := m.ds.Spec.Template.Spec.ServiceAccountName; got != m.sa.Name || m.ds.Namespace != m.sa.Namespace {
		t.Errorf("DaemonSet runs as ServiceAccount %s/%s, the binding is for %s/%s", m.ds.Namespace, got, m.sa.Namespace, m.sa.Name)
	}
	if m.ds.Spec.Template.Spec.AutomountServiceAccountToken != nil && !*m.ds.Spec.Template.Spec.AutomountServiceAccountToken {
		t.Error("DaemonSet: automountServiceAccountToken false, but the daemon uses the in-cluster config")
	}
}

// TestNamespaces: every namespaced object is in kube-system, where
// system-node-critical Pods are allowed by default.
func TestNamespaces(t *testing.T) {
	m := loadManifests(t)
	for _, o := range m.objects {
		namespaced := o.Kind != "ClusterRole" && o.Kind != "ClusterRoleBinding"
		if namespaced && o.Namespace != "kube-system" {
			t.Errorf("%s %s (%s): namespace %q, want kube-system", o.Kind, o.Name, o.File, o.Namespace)
		}
		if !namespaced && o.Namespace != "" {
			t.Errorf("%s %s: cluster-scoped, but namespace %q is set", o.Kind, o.Name, o.Namespace)
		}
	}
}

// TestDaemonSetPodSpec checks the Pod-level decisions: node network, the
// node's resolvers, every node, node-critical priority.
func TestDaemonSetPodSpec(t *testing.T) {
	m := loadManifests(t)
	spec := m.ds.Spec.Template.Spec
	if !spec.HostNetwork {
		t.Error("hostNetwork must be true: the link, addresses and rules are the node's")
	}
	if spec.DNSPolicy != corev1.DNSDefault {
		t.Errorf("dnsPolicy %q, want Default (the node's resolv.conf; ClusterFirst would loop to ourselves)", spec.DNSPolicy)
	}
	if spec.PriorityClassName != "system-node-critical" {
		t.Errorf("priorityClassName %q, want system-node-critical", spec.PriorityClassName)
	}
	if want := []corev1.Toleration{{Operator: corev1.TolerationOpExists}}; !slices.Equal(spec.Tolerations, want) {
		t.Errorf("tolerations %+v, want %+v (every taint)", spec.Tolerations, want)
	}
	if sel := m.ds.Spec.Selector.MatchLabels; len(sel) == 0 {
		t.Error("DaemonSet selector has no matchLabels")
	} else {
		for k, v := range sel {
			if m.ds.Spec.Template.Labels[k] != v {
				t.Errorf("selector %s=%s does not match the Pod template labels %v", k, v, m.ds.Spec.Template.Labels)
			}
		}
	}
	if len(spec.InitContainers) > 0 {
		t.Errorf("init containers %d: their securityContext is not checked here", len(spec.InitContainers))
	}

	// The root-with-two-capabilities argument in daemonset.yaml assumes no
	// file of the host is mounted. A hostPath added later (the upgrade
	// handoff socket, say) must be listed here and the comment updated.
	allowedHostPaths := map[string]bool{
		"/run/nodedns":     true, // --handoff-socket
		"/var/lib/nodedns": true, // --last-known-zone
	}
	for _, v := range spec.Volumes {
		if v.HostPath != nil && !allowedHostPaths[v.HostPath.Path] {
			t.Errorf("volume %s: hostPath %s: see the securityContext comment in daemonset.yaml, then allow it in this test", v.Name, v.HostPath.Path)
		}
		// Besides deploy/'s own, the cluster's kube-dns ConfigMap
		// (--kube-dns-config-dir), optional: most clusters have none.
		kubeDNS := v.ConfigMap != nil && v.ConfigMap.Name == "kube-dns" && v.ConfigMap.Optional != nil && *v.ConfigMap.Optional
		if v.ConfigMap != nil && v.ConfigMap.Name != m.config.Name && !kubeDNS {
			t.Errorf("volume %s: ConfigMap %q is neither deploy/'s %q nor the optional kube-dns", v.Name, v.ConfigMap.Name, m.config.Name)
		}
	}
}

// TestDaemonSetContainer checks the container: flags that exist, NODE_NAME
// from the downward API, probes on --health-listen, a termination grace
// above --shutdown-grace, capabilities, resources.
func TestDaemonSetContainer(t *testing.T) {
	m := loadManifests(t)
	c := m.container(t)

	// Every flag must exist in the binary: a renamed flag would make the
	// Pod exit at start on every node.
	known := binaryFlags(t)
	for name := range m.args(t) {
		if !known[name] {
			t.Errorf("DaemonSet arg --%s: the binary has no such flag (nodedns --help)", name)
		}
	}
	// kubelet expands $(VAR) only for variables the container defines; a
	// misspelt one stays literally in the argument.
	for _, a := range c.Args {
		for _, ref := range regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`).FindAllStringSubmatch(a, -1) {
			if _, ok := m.env(t, ref[1]); !ok {
				t.Errorf("arg %q references $(%s), which the container does not define", a, ref[1])
			}
		}
	}

	nodeName, ok := m.env(t, "NODE_NAME")
	if !ok || nodeName.ValueFrom == nil || nodeName.ValueFrom.FieldRef == nil || nodeName.ValueFrom.FieldRef.FieldPath != "spec.nodeName" {
		t.Errorf("NODE_NAME %+v, want valueFrom.fieldRef spec.nodeName", nodeName)
	}

	// Probes hit --health-listen, which must be one of the --listen
	// addresses: those are the ones the daemon puts on its link.
	health, err := netip.ParseAddrPort(m.oneArg(t, "health-listen"))
	if err != nil {
		t.Fatalf("--health-listen: %v", err)
	}
	if !slices.ContainsFunc(m.listenAddrs(t), func(ap netip.AddrPort) bool { return ap.Addr() == health.Addr() }) {
		t.Errorf("--health-listen %s: its IP is not a --listen address %v, so nothing puts it on the node", health, m.listenAddrs(t))
	}
	for _, p := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{{"liveness", c.LivenessProbe, "/health"}, {"readiness", c.ReadinessProbe, "/ready"}} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("%sProbe: want httpGet %s", p.name, p.path)
			continue
		}
		g := p.probe.HTTPGet
		if g.Path != p.path || g.Host != health.Addr().String() || g.Port.IntValue() != int(health.Port()) {
			t.Errorf("%sProbe httpGet %s:%s%s, want %s%s (--health-listen)", p.name, g.Host, g.Port.String(), g.Path, health, p.path)
		}
	}

	// SIGTERM -> not ready but answering for --shutdown-grace -> drain
	// (bounded) -> teardown. SIGKILL before that cuts the drain short.
	grace := m.shutdownGrace(t)
	tgps := m.ds.Spec.Template.Spec.TerminationGracePeriodSeconds
	if tgps == nil || time.Duration(*tgps)*time.Second <= grace+drainBound {
		t.Errorf("terminationGracePeriodSeconds %v, want more than --shutdown-grace %v + drain %v", deref(tgps), grace, drainBound)
	}

	// No ports: with hostNetwork each would be a hostPort, and the
	// scheduler never places two Pods with one hostPort on a node, which
	// rules out a surge upgrade.
	if len(c.Ports) > 0 {
		t.Errorf("container ports %+v: with hostNetwork they become hostPorts and block surge upgrades; use numeric targetPorts", c.Ports)
	}

	sc := c.SecurityContext
	if sc == nil {
		t.Fatal("container has no securityContext")
	}
	if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("capabilities.drop %v, want [ALL]", sc.Capabilities)
	} else if add := slices.Sorted(slices.Values(sc.Capabilities.Add)); !slices.Equal(add, []corev1.Capability{"NET_ADMIN", "NET_BIND_SERVICE"}) {
		t.Errorf("capabilities.add %v, want exactly NET_ADMIN and NET_BIND_SERVICE", add)
	}
	if sc.Privileged != nil && *sc.Privileged {
		t.Error("privileged")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("allowPrivilegeEscalation must be false")
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("readOnlyRootFilesystem must be true")
	}
	if sc.RunAsUser == nil {
		t.Error("runAsUser must be explicit (the choice is explained next to it)")
	} else if nonRoot := sc.RunAsNonRoot != nil && *sc.RunAsNonRoot; nonRoot != (*sc.RunAsUser != 0) {
		t.Errorf("runAsUser %d with runAsNonRoot %v: contradictory", *sc.RunAsUser, nonRoot)
	}

	req, lim := c.Resources.Requests, c.Resources.Limits
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if _, ok := req[r]; !ok {
			t.Errorf("no %s request", r)
		}
	}
	memLimit, ok := lim[corev1.ResourceMemory]
	if !ok {
		t.Fatal("no memory limit")
	}
	if memReq := req[corev1.ResourceMemory]; memLimit.Cmp(memReq) < 0 {
		t.Errorf("memory limit %v below request %v", memLimit.String(), memReq.String())
	}
	if e, ok := m.env(t, "GOMEMLIMIT"); ok {
		soft, err := parseGoMemLimit(e.Value)
		if err != nil {
			t.Errorf("GOMEMLIMIT %q: %v", e.Value, err)
		} else if soft >= memLimit.Value() {
			t.Errorf("GOMEMLIMIT %s is not below limits.memory %s: the GC would not act before the OOM kill", e.Value, memLimit.String())
		}
	}
}

// TestConfigMounts: --config names a key of deploy/'s ConfigMap where
// its volume is mounted, and --kube-dns-config-dir is where the kube-dns
// ConfigMap is mounted.
func TestConfigMounts(t *testing.T) {
	m := loadManifests(t)
	mounts := map[string]string{} // ConfigMap name -> mount path
	for _, v := range m.ds.Spec.Template.Spec.Volumes {
		if v.ConfigMap == nil {
			continue
		}
		for _, vm := range m.container(t).VolumeMounts {
			if vm.Name == v.Name {
				mounts[v.ConfigMap.Name] = vm.MountPath
			}
		}
	}
	dir, key := path.Split(m.oneArg(t, "config"))
	if path.Clean(dir) != mounts[m.config.Name] {
		t.Errorf("--config in %s, but ConfigMap %s is mounted at %q", dir, m.config.Name, mounts[m.config.Name])
	}
	if _, ok := m.config.Data[key]; !ok {
		t.Errorf("--config names %s, which ConfigMap %s has no key for", key, m.config.Name)
	}
	if got := m.oneArg(t, "kube-dns-config-dir"); got != mounts["kube-dns"] {
		t.Errorf("--kube-dns-config-dir %s, but ConfigMap kube-dns is mounted at %q", got, mounts["kube-dns"])
	}
}

// TestMetricsService: the headless Service selects the DaemonSet's Pods on
// the --metrics-listen port and carries the scrape annotations.
func TestMetricsService(t *testing.T) {
	m := loadManifests(t)
	s := m.svc
	if s.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Errorf("Service %s clusterIP %q, want None (headless: one endpoint per node)", s.Name, s.Spec.ClusterIP)
	}
	if len(s.Spec.Selector) == 0 {
		t.Errorf("Service %s has no selector", s.Name)
	}
	for k, v := range s.Spec.Selector {
		if m.ds.Spec.Template.Labels[k] != v {
			t.Errorf("Service selector %s=%s does not select the DaemonSet's Pods %v", k, v, m.ds.Spec.Template.Labels)
		}
	}
	metrics := m.oneArg(t, "metrics-listen")
	_, portStr, ok := strings.Cut(metrics, ":")
	port, err := strconv.Atoi(portStr)
	if !ok || err != nil {
		t.Fatalf("--metrics-listen %q: want [ADDR]:PORT", metrics)
	}
	if len(s.Spec.Ports) != 1 || s.Spec.Ports[0].TargetPort.IntValue() != port {
		t.Errorf("Service ports %+v, want one with numeric targetPort %d (--metrics-listen)", s.Spec.Ports, port)
	}
	if a := s.Annotations; a["prometheus.io/scrape"] != "true" || a["prometheus.io/port"] != portStr {
		t.Errorf("Service annotations %v, want prometheus.io/scrape \"true\" and prometheus.io/port %q", a, portStr)
	}
}

// binaryFlags runs nodedns --help and returns the flag names it lists.
func binaryFlags(t testing.TB) map[string]bool {
	t.Helper()
	out, err := exec.Command(nodednsBin, "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("nodedns --help: %v\n%s", err, out)
	}
	flags := map[string]bool{}
	for _, f := range regexp.MustCompile(`(?m)^\s+-([a-z0-9][a-z0-9-]*)`).FindAllStringSubmatch(string(out), -1) {
		flags[f[1]] = true
	}
	if !flags["listen"] || !flags["health-listen"] {
		t.Fatalf("nodedns --help lists no --listen/--health-listen; output:\n%s", out)
	}
	return flags
}

// parseGoMemLimit parses GOMEMLIMIT's syntax: a byte count with an
// optional B, KiB, MiB, GiB or TiB suffix (runtime/debug.SetMemoryLimit).
func parseGoMemLimit(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = n, u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("want a positive byte count with an optional KiB/MiB/GiB/TiB suffix")
	}
	return n * mult, nil
}

func TestParseGoMemLimit(t *testing.T) {
	for in, want := range map[string]int64{"160MiB": 160 << 20, "1GiB": 1 << 30, "1000": 1000, "10B": 10} {
		if got, err := parseGoMemLimit(in); err != nil || got != want {
			t.Errorf("parseGoMemLimit(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "160Mi", "-1", "MiB"} {
		if _, err := parseGoMemLimit(in); err == nil {
			t.Errorf("parseGoMemLimit(%q): no error", in)
		}
	}
}

func deref[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}
