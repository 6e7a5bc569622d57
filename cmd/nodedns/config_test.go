package main

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/nodedns/nodedns/pkg/config"
)

// withFile returns a readFile that serves data for path.
func withFile(path, data string) func(string) ([]byte, error) {
	return func(p string) ([]byte, error) {
		if p != path {
			return nil, os.ErrNotExist
		}
		return []byte(data), nil
	}
}

func parseWith(t testing.TB, file string, args []string, envs map[string]string) (*Config, error) {
	t.Helper()
	return parseConfig(append([]string{"--config", "/etc/nodedns/config.yaml"}, args...), env(envs),
		withFile("/etc/nodedns/config.yaml", file))
}

// TestConfigFilePrecedence: command line > environment > file > default.
func TestConfigFilePrecedence(t *testing.T) {
	cfg, err := parseWith(t, `
upstream: [192.0.2.1, "192.0.2.2:5353"]
max-ttl: 10s
ttl: 7
log-level: debug
pods: verified
`, []string{"--log-level", "warn"}, map[string]string{"NODEDNS_TTL": "9", "NODEDNS_LOG_LEVEL": "error"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []netip.AddrPort{netip.MustParseAddrPort("192.0.2.1:53"), netip.MustParseAddrPort("192.0.2.2:5353")}; !slices.Equal(cfg.Upstreams, want) {
		t.Errorf("Upstreams = %v, want %v (file)", cfg.Upstreams, want)
	}
	if cfg.MaxTTL != 10*time.Second {
		t.Errorf("MaxTTL = %v, want 10s (file over default)", cfg.MaxTTL)
	}
	if cfg.TTL != 9 {
		t.Errorf("TTL = %d, want 9 (environment over file)", cfg.TTL)
	}
	if cfg.LogLevel != "warn" {
		t.Errorf("LogLevel = %q, want warn (command line over environment and file)", cfg.LogLevel)
	}
	if cfg.ResolvConf != "/etc/resolv.conf" || cfg.CacheSize != 10000 {
		t.Errorf("defaults lost: %+v", cfg)
	}
	if cfg.values["max-ttl"] != "10s" || cfg.values["config"] != "/etc/nodedns/config.yaml" {
		t.Errorf("values: %v", cfg.values)
	}
}

func TestConfigFileFromEnvironment(t *testing.T) {
	cfg, err := parseConfig(nil, env(map[string]string{"NODEDNS_CONFIG": "c.yaml"}), withFile("c.yaml", "max-ttl: 3s\n"))
	if err != nil || cfg.MaxTTL != 3*time.Second {
		t.Fatalf("%v, %v", cfg, err)
	}
}

func TestConfigFileLists(t *testing.T) {
	cfg, err := parseWith(t, `
listen: [127.0.0.1:5353, "[::1]:5353"]
cluster-domain: cluster.local,corp.local
upstream: []
stub-domain:
  Corp.Example.: [10.0.0.1, "10.0.0.2:5353"]
  lab.example: 10.0.0.3
`, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Listen) != 2 || cfg.Listen[0] != netip.MustParseAddrPort("127.0.0.1:5353") {
		t.Errorf("Listen = %v: a list replaces the default", cfg.Listen)
	}
	if !slices.Equal(cfg.ClusterDomains, []string{"cluster.local", "corp.local"}) {
		t.Errorf("ClusterDomains = %v", cfg.ClusterDomains)
	}
	if len(cfg.Upstreams) != 0 {
		t.Errorf("Upstreams = %v", cfg.Upstreams)
	}
	want := map[string][]netip.AddrPort{
		"corp.example": {netip.MustParseAddrPort("10.0.0.1:53"), netip.MustParseAddrPort("10.0.0.2:5353")},
		"lab.example":  {netip.MustParseAddrPort("10.0.0.3:53")},
	}
	if len(cfg.StubDomains) != 2 || !slices.Equal(cfg.StubDomains["corp.example"], want["corp.example"]) ||
		!slices.Equal(cfg.StubDomains["lab.example"], want["lab.example"]) {
		t.Errorf("StubDomains = %v, want %v", cfg.StubDomains, want)
	}

	// The same as a list, and on the command line.
	cfg, err = parseWith(t, "stub-domain: [corp.example=10.0.0.1]\n", nil, nil)
	if err != nil || len(cfg.StubDomains) != 1 {
		t.Errorf("list form: %v %v", cfg.StubDomains, err)
	}
	cfg, err = parseFlags([]string{"--stub-domain", "a.example=10.0.0.1,10.0.0.2", "--stub-domain", "b.example=10.0.0.3"}, env(
		map[string]string{"NODEDNS_STUB_DOMAIN": "ignored.example=10.0.0.9"}))
	if err != nil || len(cfg.StubDomains) != 2 || len(cfg.StubDomains["a.example"]) != 2 {
		t.Errorf("flags: %v %v", cfg.StubDomains, err)
	}
	cfg, err = parseFlags(nil, env(map[string]string{"NODEDNS_STUB_DOMAIN": "a.example=10.0.0.1 b.example=10.0.0.2"}))
	if err != nil || len(cfg.StubDomains) != 2 {
		t.Errorf("environment: %v %v", cfg.StubDomains, err)
	}
}

// TestConfigFileErrorsNameKeyAndLine: every bad key is reported with the
// file, its line and its name, as a *config.Error (exit status 1).
func TestConfigFileErrorsNameKeyAndLine(t *testing.T) {
	const path = "/etc/nodedns/config.yaml"
	for _, c := range []struct {
		name, file string
		want       []string
	}{
		{"unknown key", "max-ttl: 3s\nupstreams: [192.0.2.1]\n", []string{path + ":2: upstreams: unknown key"}},
		{"bad duration", "\nmax-ttl: forever\n", []string{path + ":2: max-ttl: \"forever\""}},
		{"bad bool", "prefetch: yes please\n", []string{path + ":1: prefetch:"}},
		{"list for a scalar", "max-ttl: [3s]\n", []string{path + ":1: max-ttl: takes one value, not a list"}},
		{"config key", "config: other.yaml\n", []string{path + ":1: config: the config file cannot name another"}},
		{"bad upstream", "upstream: [192.0.2.1, dns.example]\n", []string{path + ":1: upstream: \"dns.example\""}},
		{"bad listen", "ttl: 5\nlisten: 169.254.20.10\n", []string{path + ":2: listen: \"169.254.20.10\": want ADDR:PORT"}},
		{"empty listen", "listen: []\n", []string{path + ":1: listen: at least one address"}},
		{"bad pods", "pods: sometimes\n", []string{path + ":1: pods:"}},
		{"bad log level", "log-level: loud\n", []string{path + ":1: log-level: \"loud\""}},
		{"stub under the zone", "stub-domain:\n  svc.cluster.local: [10.0.0.1]\n", []string{path + ":1: stub-domain:", "under the cluster domain cluster.local"}},
		{"stub without servers", "stub-domain: [corp.example]\n", []string{path + ":1: stub-domain:", "want DOMAIN=SERVER"}},
		{"yaml", "upstream: [\n", []string{path + ": yaml:"}},
		{"two bad keys", "ttl: 0\nbogus: 1\n", []string{path + ":1: ttl:", path + ":2: bogus: unknown key"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := parseWith(t, c.file, nil, nil)
			if err == nil {
				t.Fatal("no error")
			}
			var fe *config.Error
			if !errors.As(err, &fe) {
				t.Errorf("%v: not a *config.Error", err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
		})
	}
}

func TestConfigFileMissing(t *testing.T) {
	_, err := parseFlags([]string{"--config", filepath.Join(t.TempDir(), "nope.yaml")}, env(nil))
	var fe *config.Error
	if !errors.As(err, &fe) || !strings.Contains(err.Error(), "nope.yaml") {
		t.Errorf("missing file: %v", err)
	}
}

// TestConfigFileValueFromEnvironmentNamesIt: a bad value from the
// environment says so.
func TestValueErrorsNameTheEnvironment(t *testing.T) {
	_, err := parseFlags(nil, env(map[string]string{"NODEDNS_LISTEN": "nowhere"}))
	if err == nil || !strings.HasPrefix(err.Error(), "NODEDNS_LISTEN: --listen") {
		t.Errorf("error %v, want one starting with NODEDNS_LISTEN: --listen", err)
	}
}

func TestChangedKeys(t *testing.T) {
	a := map[string]string{"upstream": "192.0.2.1:53", "max-ttl": "30s", "ttl": "5"}
	b := map[string]string{"upstream": "192.0.2.2:53", "max-ttl": "10s", "ttl": "5"}
	if got := changedKeys(a, b); !slices.Equal(got, []string{"max-ttl", "upstream"}) {
		t.Errorf("changedKeys = %v", got)
	}
}

// FuzzConfigFile: with valid arguments, any config file either loads or
// fails with an error naming the file (a *config.Error), never a panic;
// and loading it again gives the same values (reloads compare them).
func FuzzConfigFile(f *testing.F) {
	for _, s := range []string{
		"", "upstream: [192.0.2.1]\nmax-ttl: 30s\nlog-level: debug\n",
		"stub-domain:\n  corp.example: [10.0.0.1, 10.0.0.2:5353]\n",
		"listen: []\n", "ttl: 0\nbogus: 1\n", "config: x\n", "max-ttl: [1s]\n",
		"cluster-domain: [a, b]\nstub-domain: [b=1.2.3.4]\n", "pods: sometimes\n", "prefetch: yes\n",
		"upstream: &a [1.2.3.4]\nlisten: *a\n", "kube-dns-config-dir: /etc/kube-dns\n",
	} {
		f.Add(s)
	}
	const path = "/c.yaml"
	args := []string{"--config", path, "--listen", "127.0.0.1:5353"}
	f.Fuzz(func(t *testing.T, data string) {
		cfg, err := parseConfig(args, env(nil), withFile(path, data))
		if err != nil {
			var fe *config.Error
			if !errors.As(err, &fe) || !strings.HasPrefix(err.Error(), path) {
				t.Fatalf("error not naming the file: %v", err)
			}
			return
		}
		again, err := cfg.reparse(withFile(path, data))
		if err != nil {
			t.Fatalf("second load failed: %v", err)
		}
		if got := changedKeys(cfg.values, again.values); len(got) != 0 {
			t.Fatalf("second load differs in %v", got)
		}
	})
}

// TestDeployedConfigFileLoads: deploy/configmap.yaml's config.yaml is a
// valid config file.
func TestDeployedConfigFileLoads(t *testing.T) {
	raw, err := os.ReadFile("../../deploy/configmap.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cm struct {
		Data map[string]string `json:"data"`
	}
	if err := yaml.Unmarshal(raw, &cm); err != nil {
		t.Fatal(err)
	}
	file, ok := cm.Data["config.yaml"]
	if !ok {
		t.Fatal("deploy/configmap.yaml has no config.yaml")
	}
	if _, err := parseWith(t, file, nil, nil); err != nil {
		t.Errorf("deploy/configmap.yaml config.yaml: %v", err)
	}
}
