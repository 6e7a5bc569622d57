package deploy

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"
)

// manifests are the objects of deploy/, each kind exactly once.
type manifests struct {
	files   []string // as kubectl apply -f deploy/ reads them
	objects []objectRef

	sa      *corev1.ServiceAccount
	role    *rbacv1.ClusterRole
	binding *rbacv1.ClusterRoleBinding
	config  *corev1.ConfigMap
	ds      *appsv1.DaemonSet
	svc     *corev1.Service
}

// objectRef names one object as `kubectl apply -o name` prints it.
type objectRef struct {
	Kind, Name, Namespace, File string
}

// kubectlName is kubectl's "<resource>.<group>/<name>" form.
func (o objectRef) kubectlName() string {
	res := map[string]string{
		"ServiceAccount":     "serviceaccount",
		"ClusterRole":        "clusterrole.rbac.authorization.k8s.io",
		"ClusterRoleBinding": "clusterrolebinding.rbac.authorization.k8s.io",
		"ConfigMap":          "configmap",
		"DaemonSet":          "daemonset.apps",
		"Service":            "service",
	}[o.Kind]
	return res + "/" + o.Name
}

// loadManifests reads every file kubectl apply -f deploy/ would read and
// decodes each document strictly into its typed API object: an unknown or
// misspelt field fails here, before any API server sees it.
func loadManifests(t testing.TB) *manifests {
	t.Helper()
	dir := repoPath("deploy")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := &manifests{}
	for _, e := range entries {
		ext := filepath.Ext(e.Name())
		if e.IsDir() || (ext != ".yaml" && ext != ".yml" && ext != ".json") {
			continue
		}
		path := filepath.Join(dir, e.Name())
		m.files = append(m.files, path)
		if err := m.loadFile(path); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
	}
	for kind, ok := range map[string]bool{
		"ServiceAccount": m.sa != nil, "ClusterRole": m.role != nil, "ClusterRoleBinding": m.binding != nil,
		"ConfigMap": m.config != nil, "DaemonSet": m.ds != nil, "Service": m.svc != nil,
	} {
		if !ok {
			t.Errorf("deploy/: no %s", kind)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	return m
}

// strict decodes like the API server: field names case-sensitive, unknown
// and duplicate fields are errors. (encoding/json alone would accept
// readOnlyRootFileSystem for readOnlyRootFilesystem.)
var strict = serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()

func (m *manifests) loadFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	r := utilyaml.NewYAMLReader(bufio.NewReader(f))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if js, err := yaml.YAMLToJSON(doc); err != nil {
			return err
		} else if s := strings.TrimSpace(string(js)); s == "null" || s == "" {
			continue // an empty document, e.g. only comments
		}
		obj, gvk, err := strict.Decode(doc, nil, nil)
		if err != nil {
			return err
		}
		switch o := obj.(type) {
		case *corev1.ServiceAccount:
			err = setOnce(&m.sa, o)
		case *rbacv1.ClusterRole:
			err = setOnce(&m.role, o)
		case *rbacv1.ClusterRoleBinding:
			err = setOnce(&m.binding, o)
		case *corev1.ConfigMap:
			err = setOnce(&m.config, o)
		case *appsv1.DaemonSet:
			err = setOnce(&m.ds, o)
		case *corev1.Service:
			err = setOnce(&m.svc, o)
		default:
			return fmt.Errorf("unexpected object %v: add it to the tests", gvk)
		}
		meta, merr := apimeta.Accessor(obj)
		if merr != nil {
			return merr
		}
		if err != nil {
			return fmt.Errorf("%s %s: %w", gvk.Kind, meta.GetName(), err)
		}
		m.objects = append(m.objects, objectRef{gvk.Kind, meta.GetName(), meta.GetNamespace(), path})
	}
}

// setOnce sets *p to o, or fails if the kind came before.
func setOnce[T any](p **T, o *T) error {
	if *p != nil {
		return errors.New("a second object of this kind; the tests expect one")
	}
	*p = o
	return nil
}

// container is the DaemonSet's one container.
func (m *manifests) container(t testing.TB) *corev1.Container {
	t.Helper()
	cs := m.ds.Spec.Template.Spec.Containers
	if len(cs) != 1 {
		t.Fatalf("DaemonSet has %d containers, want 1", len(cs))
	}
	return &cs[0]
}

// args parses the container's args, each --name=value or --name, into
// name -> values in order.
func (m *manifests) args(t testing.TB) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, a := range m.container(t).Args {
		name, value, hasValue := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !strings.HasPrefix(a, "--") || name == "" {
			t.Fatalf("DaemonSet arg %q: want --name=value", a)
		}
		if !hasValue {
			value = "true"
		}
		out[name] = append(out[name], value)
	}
	return out
}

// oneArg is the single value of flag name, failing if it is not given once.
func (m *manifests) oneArg(t testing.TB, name string) string {
	t.Helper()
	v := m.args(t)[name]
	if len(v) != 1 {
		t.Fatalf("DaemonSet: --%s given %d times, want once", name, len(v))
	}
	return v[0]
}

// listenAddrs are the --listen addresses (repeatable, comma-separated).
func (m *manifests) listenAddrs(t testing.TB) []netip.AddrPort {
	t.Helper()
	var out []netip.AddrPort
	for _, v := range m.args(t)["listen"] {
		for s := range strings.SplitSeq(v, ",") {
			ap, err := netip.ParseAddrPort(strings.TrimSpace(s))
			if err != nil {
				t.Fatalf("DaemonSet --listen %q: %v", s, err)
			}
			out = append(out, ap)
		}
	}
	if len(out) == 0 {
		t.Fatal("DaemonSet: no --listen (the binary's default would do, but say it)")
	}
	return out
}

// shutdownGrace is --shutdown-grace, or the binary's default 5s.
func (m *manifests) shutdownGrace(t testing.TB) time.Duration {
	t.Helper()
	v := m.args(t)["shutdown-grace"]
	if len(v) == 0 {
		return 5 * time.Second
	}
	d, err := time.ParseDuration(v[len(v)-1])
	if err != nil {
		t.Fatalf("DaemonSet --shutdown-grace: %v", err)
	}
	return d
}

// env is the value of the container's environment variable name.
func (m *manifests) env(t testing.TB, name string) (corev1.EnvVar, bool) {
	t.Helper()
	i := slices.IndexFunc(m.container(t).Env, func(e corev1.EnvVar) bool { return e.Name == name })
	if i < 0 {
		return corev1.EnvVar{}, false
	}
	return m.container(t).Env[i], true
}
