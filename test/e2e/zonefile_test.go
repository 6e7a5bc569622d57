package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func exampleZone(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("../../examples/zone.yaml")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "zone.yaml")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func firstA(d *daemon, name string) string {
	r, err := d.query("udp", name, dns.TypeA)
	if err != nil || r.Rcode != dns.RcodeSuccess || len(r.Answer) == 0 {
		return ""
	}
	if a, ok := r.Answer[0].(*dns.A); ok {
		return a.A.String()
	}
	return ""
}

// TestZoneFile: standalone mode serves the example file (the seed
// documents' case), keeps the previous zone when the file turns bad (with a
// message naming file and line), and picks up a good change.
func TestZoneFile(t *testing.T) {
	path := exampleZone(t)
	up := upstreamServer(t)
	d := startDaemon(t, "--zone-file", path, "--upstream", up.Addr().String(), "--endpoint-pod-names")
	d.WaitReady(10 * time.Second)

	web := "web.default.svc.cluster.local."
	if got := firstA(d, web); got != "10.96.0.50" {
		t.Fatalf("%s = %q, want 10.96.0.50", web, got)
	}
	// Seed 1: a Deployment's Pod behind a headless Service, by Pod name.
	if got := firstA(d, "nginx-5d59d67564-bp5br.nginx.default.svc.cluster.local."); got != "10.244.2.209" {
		t.Errorf("seed 1 pod name = %q, want 10.244.2.209", got)
	}

	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// Break it: a bad clusterIP in the web Service.
	bad := strings.Replace(string(data), "clusterIP: 10.96.0.50\n", "clusterIP: 10.96.0.500\n", 1)
	if bad == string(data) {
		t.Fatal("example zone no longer has web's clusterIP 10.96.0.50")
	}
	if err := os.WriteFile(path, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	fileLine := regexp.MustCompile(regexp.QuoteMeta(path) + `:\d+:`)
	waitFor(t, "a log line naming file and line", 10*time.Second, func() bool {
		return fileLine.MatchString(d.Logs.String())
	})
	if got := firstA(d, web); got != "10.96.0.50" {
		t.Errorf("after a bad file, %s = %q, want the previous 10.96.0.50", web, got)
	}

	good := strings.Replace(string(data), "clusterIP: 10.96.0.50\n", "clusterIP: 10.96.0.51\n", 1)
	if err := os.WriteFile(path, []byte(good), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the changed clusterIP", 10*time.Second, func() bool { return firstA(d, web) == "10.96.0.51" })
}

// TestZoneFileBadAtStart: a broken file at start is a clear error naming
// file and line, and a non-zero exit.
func TestZoneFileBadAtStart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "zone.yaml")
	os.WriteFile(path, []byte("apiVersion: v1\nkind: Service\nmetadata:\n  name: x\nspec:\n  clusterIP: nope\n"), 0o644)
	d := startDaemon(t, "--zone-file", path, "--upstream", "127.0.0.1:9")
	select {
	case <-d.Done:
	case <-time.After(10 * time.Second):
		t.Fatal("nodedns kept running with a broken zone file")
	}
	if d.Err == nil {
		t.Error("exit status 0 with a broken zone file")
	}
	if !strings.Contains(d.Logs.String(), path+":") {
		t.Errorf("error does not name the file: %s", d.Logs.String())
	}
}

// TestNoUsableUpstream: a resolv.conf naming only a loopback stub (which
// would loop) leaves no upstream. nodedns still starts and serves the
// cluster zone, answers other names SERVFAIL, and says why in its log.
func TestNoUsableUpstream(t *testing.T) {
	resolvConf := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(resolvConf, []byte("nameserver 127.0.0.53\noptions edns0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, "--zone-file", exampleZone(t), "--resolv-conf", resolvConf)
	d.WaitReady(10 * time.Second)
	if got := firstA(d, "web.default.svc.cluster.local."); got != "10.96.0.50" {
		t.Errorf("cluster name without upstreams = %q, want 10.96.0.50", got)
	}
	r, err := d.query("udp", "api.example.com.", dns.TypeA)
	if err != nil || r.Rcode != dns.RcodeServerFailure {
		t.Errorf("outside name without upstreams: %v %v, want SERVFAIL", r, err)
	}
	for _, want := range []string{"127.0.0.53", "no usable upstream server"} {
		if !strings.Contains(d.Logs.String(), want) {
			t.Errorf("log does not mention %q", want)
		}
	}
}
