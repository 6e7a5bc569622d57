package deploy

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"

	"github.com/nodedns/nodedns/internal/testproc"
	"github.com/nodedns/nodedns/test/e2e/kubeenv"
)

// TestAgainstAPIServer gives deploy/ to a real kube-apiserver: first a
// server-side dry run of every manifest (schema, defaults, admission), then
// a real apply, and the real daemon run with a token of the manifests'
// ServiceAccount until it is ready, which proves the ClusterRole lets it
// list and watch everything it needs.
func TestAgainstAPIServer(t *testing.T) {
	m := loadManifests(t)
	kubectlBin := findKubectl(t)
	env := kubeenv.StartForTest(t)
	ctx := t.Context()

	// A cluster has both; so must this API server, or the dry run would
	// prove less than it seems to.
	if _, err := env.Admin.CoreV1().Namespaces().Get(ctx, "kube-system", metav1.GetOptions{}); apierrors.IsNotFound(err) {
		t.Log("namespace kube-system missing: creating it")
		_, err = env.Admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "kube-system"}}, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	} else if err != nil {
		t.Fatal(err)
	}
	pc, err := env.Admin.SchedulingV1().PriorityClasses().Get(ctx, m.ds.Spec.Template.Spec.PriorityClassName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("PriorityClass %q (every API server creates it): %v", m.ds.Spec.Template.Spec.PriorityClassName, err)
	}
	t.Logf("PriorityClass %s: value %d", pc.Name, pc.Value)

	kubectl := func(t *testing.T, args ...string) string {
		t.Helper()
		cmd := exec.Command(kubectlBin, append([]string{"--kubeconfig", env.AdminKubeconfig, "--cache-dir", t.TempDir()}, args...)...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("kubectl %s: %v\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
		}
		return stdout.String()
	}
	var want []string
	for _, o := range m.objects {
		want = append(want, o.kubectlName())
	}
	slices.Sort(want)
	applied := func(out string) []string {
		got := strings.Fields(out)
		slices.Sort(got)
		return got
	}

	t.Run("dry-run", func(t *testing.T) {
		// --validate=strict: the server rejects unknown and duplicate
		// fields instead of dropping them.
		out := kubectl(t, "apply", "--dry-run=server", "--validate=strict", "-f", repoPath("deploy"), "-o", "name")
		if got := applied(out); !slices.Equal(got, want) {
			t.Errorf("dry run applied %v, want %v", got, want)
		}
		// A dry run creates nothing.
		if _, err := env.Admin.AppsV1().DaemonSets(m.ds.Namespace).Get(ctx, m.ds.Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("after the dry run, DaemonSet get: %v, want NotFound", err)
		}
	})

	t.Run("clusterrole-is-enough", func(t *testing.T) {
		// kubeenv binds a ClusterRole of the same name to its own DNS test
		// user; remove both so what is live is exactly deploy/'s.
		rbac := env.Admin.RbacV1()
		for _, err := range []error{
			rbac.ClusterRoleBindings().Delete(ctx, kubeenv.DNSClusterRole, metav1.DeleteOptions{}),
			rbac.ClusterRoles().Delete(ctx, kubeenv.DNSClusterRole, metav1.DeleteOptions{}),
		} {
			if err != nil && !apierrors.IsNotFound(err) {
				t.Fatal(err)
			}
		}
		// A real install: everything in deploy/ (no controllers run here,
		// so the DaemonSet makes no Pods).
		if got := applied(kubectl(t, "apply", "--validate=strict", "-f", repoPath("deploy"), "-o", "name")); !slices.Equal(got, want) {
			t.Errorf("applied %v, want %v", got, want)
		}
		live, err := rbac.ClusterRoles().Get(ctx, m.role.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(live.Rules) != fmt.Sprint(m.role.Rules) {
			t.Fatalf("live ClusterRole rules %+v differ from deploy/'s %+v", live.Rules, m.role.Rules)
		}

		tok, err := env.Admin.CoreV1().ServiceAccounts(m.sa.Namespace).CreateToken(ctx, m.sa.Name, &authenticationv1.TokenRequest{
			Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		kubeconfig := writeTokenKubeconfig(t, env, tok.Status.Token)
		sa, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			t.Fatal(err)
		}
		saClient, err := kubernetes.NewForConfig(sa)
		if err != nil {
			t.Fatal(err)
		}
		who, err := saClient.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if want := "system:serviceaccount:" + m.sa.Namespace + ":" + m.sa.Name; who.Status.UserInfo.Username != want {
			t.Fatalf("token authenticates as %q, want %q", who.Status.UserInfo.Username, want)
		}

		// --pods verified watches every Pod, so all four resources are
		// listed and watched before /ready turns 200.
		health := fmt.Sprintf("127.0.0.1:%d", testproc.FreePort(t))
		metrics := fmt.Sprintf("127.0.0.1:%d", testproc.FreePort(t))
		d := startDaemon(t,
			"--kubeconfig", kubeconfig,
			"--pods", "verified",
			"--node-name", "node-a",
			"--setup-interface=false",
			"--listen", fmt.Sprintf("127.0.0.1:%d", testproc.FreePort(t)),
			"--health-listen", health,
			"--metrics-listen", metrics,
			"--upstream", "127.0.0.1:9",
			"--shutdown-grace=0s",
		)
		start := time.Now()
		d.waitReady("http://"+health+"/ready", 60*time.Second)
		t.Logf("ready in %v with the ServiceAccount's token", time.Since(start).Round(time.Millisecond))
		if strings.Contains(d.logs.String(), "forbidden") {
			t.Errorf("the daemon logged a forbidden request:\n%s", d.logs.String())
		}
		if rss, err := procStatus(d.cmd.Process.Pid, "VmRSS"); err == nil {
			t.Logf("idle RSS (empty cluster, API mode): %s", rss)
		}

		// And the token can do nothing else: no get, no writes, no Secrets.
		for what, err := range map[string]error{
			"get service": func() error {
				_, err := saClient.CoreV1().Services("default").Get(ctx, "kubernetes", metav1.GetOptions{})
				return err
			}(),
			"list secrets": func() error {
				_, err := saClient.CoreV1().Secrets("").List(ctx, metav1.ListOptions{})
				return err
			}(),
			"create configmap": func() error {
				_, err := saClient.CoreV1().ConfigMaps(m.sa.Namespace).Create(ctx,
					&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "nodedns-rbac-probe"}}, metav1.CreateOptions{})
				return err
			}(),
			"list nodes": func() error {
				_, err := saClient.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
				return err
			}(),
		} {
			if !apierrors.IsForbidden(err) {
				t.Errorf("%s with the ServiceAccount's token: %v, want Forbidden", what, err)
			}
		}

		code, body := get("http://" + metrics + "/metrics")
		if code != 200 {
			t.Fatalf("/metrics: %d %s", code, body)
		}
		readme, err := os.ReadFile(repoPath("README.md"))
		if err != nil {
			t.Fatal(err)
		}
		checkReadmeMetrics(t, string(readme), body)
	})
}

// findKubectl is $KUBECTL, kubectl on PATH, or /usr/bin/kubectl.
func findKubectl(t testing.TB) string {
	t.Helper()
	if k := os.Getenv("KUBECTL"); k != "" {
		return k
	}
	if k, err := exec.LookPath("kubectl"); err == nil {
		return k
	}
	if _, err := os.Stat("/usr/bin/kubectl"); err == nil {
		return "/usr/bin/kubectl"
	}
	t.Fatal("kubectl not found (set KUBECTL): the manifests are checked with kubectl apply --dry-run=server")
	return ""
}

// writeTokenKubeconfig writes a kubeconfig for env's API server that
// authenticates with token only.
func writeTokenKubeconfig(t testing.TB, env *kubeenv.Env, token string) string {
	t.Helper()
	if len(env.AdminConfig.TLSClientConfig.CAData) == 0 {
		t.Fatal("kubeenv admin config has no CA data")
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["e2e"] = &clientcmdapi.Cluster{Server: env.APIServerURL, CertificateAuthorityData: env.AdminConfig.TLSClientConfig.CAData}
	cfg.AuthInfos["nodedns"] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["e2e"] = &clientcmdapi.Context{Cluster: "e2e", AuthInfo: "nodedns"}
	cfg.CurrentContext = "e2e"
	path := filepath.Join(t.TempDir(), "nodedns.kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// procStatus returns field of /proc/PID/status, e.g. "56220 kB".
func procStatus(pid int, field string) (string, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "", err
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return strings.TrimSpace(v), nil
		}
	}
	return "", fmt.Errorf("%s not in /proc/%d/status", field, pid)
}

// checkReadmeMetrics: every metric the README's Troubleshooting section
// names is served on /metrics (scrape), or, for a labelled metric with no
// children yet (the interface repair counter without --setup-interface),
// at least defined in the daemon's code.
func checkReadmeMetrics(t testing.TB, readme, scrape string) {
	t.Helper()
	section := markdownSection(readme, "Troubleshooting")
	if section == "" {
		t.Error("README.md has no ## Troubleshooting section")
		return
	}
	names := regexp.MustCompile(`\b(?:nodedns|process|go)_[a-z0-9_]+\b`).FindAllString(section, -1)
	if len(names) == 0 {
		t.Error("README Troubleshooting names no metric")
		return
	}
	served := map[string]bool{}
	for _, f := range regexp.MustCompile(`(?m)^# (?:HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*)`).FindAllStringSubmatch(scrape, -1) {
		served[f[1]] = true
	}
	for _, name := range slices.Compact(slices.Sorted(slices.Values(names))) {
		base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_sum"), "_count")
		if served[name] || served[base] {
			continue
		}
		if suffix, ok := strings.CutPrefix(name, "nodedns_"); ok && definedInCode(t, suffix) {
			continue
		}
		t.Errorf("README Troubleshooting names metric %s, which /metrics does not serve and no code defines", name)
	}
}

// markdownSection returns the body of the "## title" section.
func markdownSection(doc, title string) string {
	_, rest, ok := strings.Cut(doc, "\n## "+title+"\n")
	if !ok {
		return ""
	}
	if i := strings.Index(rest, "\n## "); i >= 0 {
		rest = rest[:i]
	}
	return rest
}

// definedInCode reports whether a non-test Go file under cmd/ or pkg/
// holds the string literal "suffix" (a metric Name in a nodedns Namespace).
func definedInCode(t testing.TB, suffix string) bool {
	t.Helper()
	found := false
	for _, dir := range []string{"cmd", "pkg"} {
		err := filepath.WalkDir(repoPath(dir), func(p string, d os.DirEntry, err error) error {
			if err != nil || found || d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
				return err
			}
			data, err := os.ReadFile(p)
			if err == nil && bytes.Contains(data, []byte(`"`+suffix+`"`)) {
				found = true
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return found
}

func TestReadmeMetricsCheck(t *testing.T) {
	scrape := "# HELP nodedns_zone_synced x\n# TYPE nodedns_zone_synced gauge\nnodedns_zone_synced 1\n" +
		"# HELP nodedns_request_duration_seconds x\n# TYPE process_resident_memory_bytes gauge\n"
	for readme, wantFail := range map[string]bool{
		"# x\n\n## Troubleshooting\n\n`nodedns_zone_synced`, `nodedns_request_duration_seconds_bucket`, `process_resident_memory_bytes`\n\n## Next\n`nodedns_bogus_total`\n": false,
		"# x\n\n## Troubleshooting\n\n`nodedns_zone_synced` and `nodedns_bogus_total`\n":                                                                                     true,
		"# x\n\n## Troubleshooting\n\n`go_no_such_metric`\n":                                                                                                                 true,
		"# x\n\n## Troubleshooting\n\nno metric named\n":                                                                                                                     true,
		"# x\n\n## Other\n\n`nodedns_zone_synced`\n":                                                                                                                         true,
		"# x\n\n## Troubleshooting\n\n`nodedns_interface_reconcile_actions_total`\n":                                                                                         false, // defined in cmd/, no children without --setup-interface
	} {
		ft := &fakeT{TB: t}
		checkReadmeMetrics(ft, readme, scrape)
		if ft.failed != wantFail {
			t.Errorf("checkReadmeMetrics(%q) failed=%v, want %v", readme, ft.failed, wantFail)
		}
	}
}
