package main

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nodedns/nodedns/pkg/zone"
)

func env(kv map[string]string) func(string) string {
	return func(k string) string { return kv[k] }
}

func TestFlagDefaults(t *testing.T) {
	cfg, err := parseFlags(nil, env(map[string]string{"NODE_NAME": "node-a"}))
	if err != nil {
		t.Fatal(err)
	}
	if want := []netip.AddrPort{netip.MustParseAddrPort("169.254.20.10:53")}; !slices.Equal(cfg.Listen, want) {
		t.Errorf("Listen = %v, want %v", cfg.Listen, want)
	}
	if !slices.Equal(cfg.ClusterDomains, []string{"cluster.local"}) {
		t.Errorf("ClusterDomains = %v", cfg.ClusterDomains)
	}
	if cfg.NodeName != "node-a" || !cfg.SetupInterface || cfg.PodMode != zone.PodsInsecure ||
		cfg.MetricsListen != ":9253" || cfg.HealthListen != "169.254.20.10:8080" || cfg.TTL != 5 {
		t.Errorf("defaults: %+v", cfg)
	}
}

func TestFlagLists(t *testing.T) {
	cfg, err := parseFlags([]string{
		"--listen", "127.0.0.1:5353,[::1]:5353", "--listen", "169.254.20.10:53",
		"--cluster-domain", "Cluster.Local.", "--cluster-domain", "corp.example",
		"--upstream", "192.0.2.1", "--upstream", "192.0.2.2:5300,[2001:db8::1]:53,2001:db8::2",
		"--pods", "verified", "--endpoint-pod-names", "--setup-interface=false",
	}, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Listen) != 3 || cfg.Listen[1] != netip.MustParseAddrPort("[::1]:5353") {
		t.Errorf("Listen = %v", cfg.Listen)
	}
	if !slices.Equal(cfg.ClusterDomains, []string{"cluster.local", "corp.example"}) {
		t.Errorf("ClusterDomains = %v", cfg.ClusterDomains)
	}
	want := []netip.AddrPort{
		netip.MustParseAddrPort("192.0.2.1:53"), netip.MustParseAddrPort("192.0.2.2:5300"),
		netip.MustParseAddrPort("[2001:db8::1]:53"), netip.MustParseAddrPort("[2001:db8::2]:53"),
	}
	if !slices.Equal(cfg.Upstreams, want) {
		t.Errorf("Upstreams = %v, want %v", cfg.Upstreams, want)
	}
	if cfg.PodMode != zone.PodsVerified || !cfg.EndpointPodNames || cfg.SetupInterface {
		t.Errorf("%+v", cfg)
	}
}

func TestFlagsFromEnvironment(t *testing.T) {
	cfg, err := parseFlags([]string{"--ttl", "7"}, env(map[string]string{
		"NODEDNS_LISTEN":         "127.0.0.1:53,127.0.0.2:53",
		"NODEDNS_TTL":            "9", // the command line wins
		"NODEDNS_SHUTDOWN_GRACE": "3s",
		"NODEDNS_PODS":           "disabled",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Listen) != 2 || cfg.TTL != 7 || cfg.ShutdownGrace != 3*time.Second || cfg.PodMode != zone.PodsDisabled {
		t.Errorf("%+v", cfg)
	}
}

func TestFlagErrorsNameTheFlag(t *testing.T) {
	for _, c := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--listen", "169.254.20.10"}, nil, "--listen"},
		{[]string{"--upstream", "dns.example"}, nil, "--upstream"},
		{[]string{"--pods", "sometimes"}, nil, "--pods"},
		{[]string{"--ttl", "0"}, nil, "--ttl"},
		{[]string{"--cluster-domain", "a..b"}, nil, "--cluster-domain"},
		{[]string{"--log-format", "xml"}, nil, "--log-format"},
		{[]string{"--tcp-idle-timeout", "0s"}, nil, "--tcp-idle-timeout"},
		{[]string{"--tcp-max-conns", "-1"}, nil, "--tcp-max-conns"},
		{[]string{"--last-known-zone", "/tmp/z.json", "--zone-file", "zone.yaml"}, nil, "--last-known-zone"},
		{[]string{"--last-known-zone-max-age", "-1h"}, nil, "--last-known-zone-max-age"},
		{nil, map[string]string{"NODEDNS_TTL": "soon"}, "NODEDNS_TTL"},
		{[]string{"stray"}, nil, "stray"},
	} {
		_, err := parseFlags(c.args, env(c.env))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v %v: error %v, want one naming %s", c.args, c.env, err, c.want)
		}
	}
}

func TestNSAddrsSkipUnspecified(t *testing.T) {
	got := nsAddrs([]netip.AddrPort{
		netip.MustParseAddrPort("0.0.0.0:53"), netip.MustParseAddrPort("169.254.20.10:53"),
		netip.MustParseAddrPort("169.254.20.10:5353"),
	})
	if !slices.Equal(got, []netip.Addr{netip.MustParseAddr("169.254.20.10")}) {
		t.Errorf("nsAddrs = %v", got)
	}
}
