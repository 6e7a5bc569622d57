package config

import (
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

var cluster = []string{"cluster.local"}

func aps(ss ...string) []netip.AddrPort {
	var out []netip.AddrPort
	for _, s := range ss {
		out = append(out, netip.MustParseAddrPort(s))
	}
	return out
}

func TestParseKubeDNS(t *testing.T) {
	k, err := ParseKubeDNS("/etc/kube-dns", map[string][]byte{
		KeyStubDomains: []byte(`{
  "acme.local": ["1.2.3.4"],
  "Corp.Example.": ["10.0.0.1:5353", "[2001:db8::1]:53", "2001:db8::2"],
  "10.in-addr.arpa": ["10.0.0.53"]
}`),
		KeyUpstreamNameservers: []byte(`["8.8.8.8", "8.8.4.4:53"]`),
		"federations":          []byte(`myfed=example.com`), // ignored, as kube-dns's other keys
	}, cluster)
	if err != nil {
		t.Fatal(err)
	}
	want := &KubeDNS{
		StubDomains: map[string][]netip.AddrPort{
			"acme.local":      aps("1.2.3.4:53"),
			"corp.example":    aps("10.0.0.1:5353", "[2001:db8::1]:53", "[2001:db8::2]:53"),
			"10.in-addr.arpa": aps("10.0.0.53:53"),
		},
		UpstreamNameservers: aps("8.8.8.8:53", "8.8.4.4:53"),
	}
	if !reflect.DeepEqual(k, want) {
		t.Errorf("got %+v\nwant %+v", k, want)
	}
	if !k.Equal(want) || k.Equal(nil) || !(*KubeDNS)(nil).Equal(&KubeDNS{}) {
		t.Error("Equal")
	}
}

func TestParseKubeDNSAbsentOrEmpty(t *testing.T) {
	for name, files := range map[string]map[string][]byte{
		"no keys":    nil,
		"empty":      {KeyStubDomains: nil, KeyUpstreamNameservers: []byte("\n")},
		"empty JSON": {KeyStubDomains: []byte("{}"), KeyUpstreamNameservers: []byte("[]")},
		"other keys": {"federations": []byte("x")},
		"JSON null":  {KeyStubDomains: []byte("null"), KeyUpstreamNameservers: []byte("null")},
	} {
		k, err := ParseKubeDNS("d", files, cluster)
		if err != nil || len(k.StubDomains) != 0 || len(k.UpstreamNameservers) != 0 {
			t.Errorf("%s: %+v, %v; want the empty configuration", name, k, err)
		}
	}
}

func TestParseKubeDNSErrors(t *testing.T) {
	for _, c := range []struct {
		name  string
		files map[string][]byte
		want  []string
	}{
		{"syntax", map[string][]byte{KeyStubDomains: []byte("{\n  \"a.b\": [\"1.2.3.4\"],\n}")},
			[]string{"d/stubDomains:3: invalid JSON"}},
		{"not an object", map[string][]byte{KeyStubDomains: []byte(`["1.2.3.4"]`)},
			[]string{"d/stubDomains: want a JSON object"}},
		{"not a list", map[string][]byte{KeyStubDomains: []byte(`{"a.b": "1.2.3.4"}`)},
			[]string{`d/stubDomains:1: "a.b": want a list of nameservers`}},
		{"empty list", map[string][]byte{KeyStubDomains: []byte(`{"a.b": []}`)},
			[]string{`"a.b": no nameservers`}},
		{"bad domain", map[string][]byte{KeyStubDomains: []byte(`{"-a.b": ["1.2.3.4"]}`)},
			[]string{`"-a.b": not a domain name`}},
		{"host name", map[string][]byte{KeyStubDomains: []byte(`{"a.b": ["ns.a.b"]}`)},
			[]string{`"a.b": nameserver "ns.a.b": want an IP address`}},
		{"bad port", map[string][]byte{KeyStubDomains: []byte(`{"a.b": ["1.2.3.4:99999"]}`)},
			[]string{`nameserver "1.2.3.4:99999"`}},
		{"cluster domain", map[string][]byte{KeyStubDomains: []byte(`{"cluster.local": ["1.2.3.4"]}`)},
			[]string{`"cluster.local": under the cluster domain cluster.local`}},
		{"under the cluster domain", map[string][]byte{KeyStubDomains: []byte(`{"svc.Cluster.Local.": ["1.2.3.4"]}`)},
			[]string{`"svc.Cluster.Local.": under the cluster domain cluster.local`}},
		{"same domain twice", map[string][]byte{KeyStubDomains: []byte(`{"a.b": ["1.2.3.4"], "A.B.": ["1.2.3.5"]}`)},
			[]string{"given twice"}},
		{"upstreams syntax", map[string][]byte{KeyUpstreamNameservers: []byte(`["8.8.8.8"`)},
			[]string{"d/upstreamNameservers:1: invalid JSON"}},
		{"upstreams type", map[string][]byte{KeyUpstreamNameservers: []byte(`{"a": 1}`)},
			[]string{"d/upstreamNameservers: want a JSON list"}},
		{"too many upstreams", map[string][]byte{KeyUpstreamNameservers: []byte(`["1.1.1.1","1.1.1.2","1.1.1.3","1.1.1.4"]`)},
			[]string{"d/upstreamNameservers: 4 nameservers: kube-dns allows at most 3"}},
		{"bad upstream", map[string][]byte{KeyUpstreamNameservers: []byte("[\n\"8.8.8.8\",\n\"dns.google\"]")},
			[]string{`d/upstreamNameservers:3: "dns.google": want an IP address`}},
		{"both bad", map[string][]byte{KeyStubDomains: []byte(`{`), KeyUpstreamNameservers: []byte(`[`)},
			[]string{"stubDomains", "upstreamNameservers"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseKubeDNS("d", c.files, cluster)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestParseServer(t *testing.T) {
	for in, want := range map[string]string{
		"1.2.3.4": "1.2.3.4:53", "1.2.3.4:5353": "1.2.3.4:5353", "2001:db8::1": "[2001:db8::1]:53",
		"[2001:db8::1]": "[2001:db8::1]:53", "[2001:db8::1]:5353": "[2001:db8::1]:5353", "::ffff:1.2.3.4": "1.2.3.4:53",
	} {
		got, err := ParseServer(in)
		if err != nil || got.String() != want {
			t.Errorf("ParseServer(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
	for _, in := range []string{"", "dns.google", "1.2.3.4:0", "1.2.3.4:x", "[fe80::1%eth0]:53", "1.2.3.4:53:53"} {
		if _, err := ParseServer(in); err == nil {
			t.Errorf("ParseServer(%q): no error", in)
		}
	}
}

// configMapVolume lays out dir as kubelet does for a ConfigMap volume:
// files in a timestamped directory, ..data pointing at it, and each key a
// symlink through ..data. update swaps ..data atomically (a rename of a
// new symlink over it), as kubelet's atomic writer does.
type configMapVolume struct {
	t   testing.TB
	dir string
	n   int
}

func newConfigMapVolume(t testing.TB, data map[string]string) *configMapVolume {
	v := &configMapVolume{t: t, dir: t.TempDir()}
	v.update(data)
	return v
}

func (v *configMapVolume) update(data map[string]string) {
	v.t.Helper()
	v.n++
	ts := filepath.Join(v.dir, "..2026_01_01_00_00_0"+string(rune('0'+v.n)))
	if err := os.Mkdir(ts, 0o755); err != nil {
		v.t.Fatal(err)
	}
	for k, val := range data {
		if err := os.WriteFile(filepath.Join(ts, k), []byte(val), 0o644); err != nil {
			v.t.Fatal(err)
		}
		link := filepath.Join(v.dir, k)
		if _, err := os.Lstat(link); err != nil {
			if err := os.Symlink(filepath.Join("..data", k), link); err != nil {
				v.t.Fatal(err)
			}
		}
	}
	tmp := filepath.Join(v.dir, "..data_tmp")
	if err := os.Symlink(filepath.Base(ts), tmp); err != nil {
		v.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(v.dir, "..data")); err != nil {
		v.t.Fatal(err)
	}
}

func TestReadKubeDNSDir(t *testing.T) {
	v := newConfigMapVolume(t, map[string]string{KeyStubDomains: `{"a.b": ["1.2.3.4"]}`})
	files, err := ReadKubeDNSDir(v.dir)
	if err != nil || string(files[KeyStubDomains]) != `{"a.b": ["1.2.3.4"]}` || files[KeyUpstreamNameservers] != nil {
		t.Fatalf("%q, %v", files, err)
	}
	v.update(map[string]string{KeyStubDomains: `{"c.d": ["1.2.3.5"]}`, KeyUpstreamNameservers: `["8.8.8.8"]`})
	files, err = ReadKubeDNSDir(v.dir)
	if err != nil || string(files[KeyStubDomains]) != `{"c.d": ["1.2.3.5"]}` || string(files[KeyUpstreamNameservers]) != `["8.8.8.8"]` {
		t.Fatalf("after the swap: %q, %v", files, err)
	}

	// A plain directory, and none at all (the optional ConfigMap).
	plain := t.TempDir()
	os.WriteFile(filepath.Join(plain, KeyUpstreamNameservers), []byte(`["8.8.8.8"]`), 0o644)
	if files, err := ReadKubeDNSDir(plain); err != nil || len(files) != 1 {
		t.Errorf("plain directory: %q, %v", files, err)
	}
	if files, err := ReadKubeDNSDir(filepath.Join(plain, "missing")); err != nil || len(files) != 0 {
		t.Errorf("missing directory: %q, %v", files, err)
	}
}

func TestVersion(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	var v Version
	if _, _, err := v.Changed(path); err == nil {
		t.Error("missing file: no error")
	}
	os.WriteFile(path, []byte("a"), 0o644)
	if data, changed, err := v.Changed(path); err != nil || !changed || string(data) != "a" {
		t.Errorf("first read: %q %v %v", data, changed, err)
	}
	if _, changed, _ := v.Changed(path); changed {
		t.Error("unchanged file reported as changed")
	}
	// Same content, new inode (an editor's rename, a ConfigMap swap): read,
	// but no change.
	tmp := path + ".tmp"
	os.WriteFile(tmp, []byte("a"), 0o644)
	os.Rename(tmp, path)
	if _, changed, _ := v.Changed(path); changed {
		t.Error("identical rewrite reported as changed")
	}
	os.WriteFile(tmp, []byte("bb"), 0o644)
	os.Rename(tmp, path)
	if data, changed, _ := v.Changed(path); !changed || string(data) != "bb" {
		t.Errorf("changed content: %q %v", data, changed)
	}
}

// FuzzKubeDNS: any ConfigMap content parses or fails with an error naming
// the file, and what parses has no stub domain under the cluster domain.
func FuzzKubeDNS(f *testing.F) {
	f.Add([]byte(`{"acme.local": ["1.2.3.4"]}`), []byte(`["8.8.8.8"]`))
	f.Add([]byte(`{"cluster.local": ["1.2.3.4"]}`), []byte(`[]`))
	f.Add([]byte(`{"a.b": ["[::1]:53", "1.2.3.4:5353"]}`), []byte(`null`))
	f.Fuzz(func(t *testing.T, stubs, upstreams []byte) {
		k, err := ParseKubeDNS("d", map[string][]byte{KeyStubDomains: stubs, KeyUpstreamNameservers: upstreams}, cluster)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "d/") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		for d, servers := range k.StubDomains {
			if d == "cluster.local" || strings.HasSuffix(d, ".cluster.local") || len(servers) == 0 {
				t.Fatalf("accepted stub domain %q %v", d, servers)
			}
		}
		if len(k.UpstreamNameservers) > MaxUpstreamNameservers {
			t.Fatalf("%d upstreams", len(k.UpstreamNameservers))
		}
	})
}
