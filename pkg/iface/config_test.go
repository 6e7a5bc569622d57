package iface

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/nodedns/nodedns/pkg/iface/ifacetest"
)

func TestConfigDefaultsAndValidation(t *testing.T) {
	a := netip.MustParseAddr("169.254.20.10")
	c, err := Config{Addrs: []netip.Addr{a, netip.MustParseAddr("::ffff:169.254.20.10")}}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != DefaultName || c.Table != DefaultTable || c.ReconcileInterval != DefaultReconcile || c.Logger == nil {
		t.Errorf("defaults not applied: %+v", c)
	}
	if !slices.Equal(c.Ports, []uint16{DefaultPort}) {
		t.Errorf("ports %v, want [53]", c.Ports)
	}
	if !slices.Equal(c.Addrs, []netip.Addr{a}) {
		t.Errorf("addrs %v: want the 4-in-6 duplicate folded into %v", c.Addrs, a)
	}

	bad := map[string]Config{
		"no address":    {},
		"zero address":  {Addrs: []netip.Addr{{}}},
		"loopback":      {Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}},
		"unspecified":   {Addrs: []netip.Addr{netip.IPv6Unspecified()}},
		"multicast":     {Addrs: []netip.Addr{netip.MustParseAddr("ff02::1")}},
		"zone":          {Addrs: []netip.Addr{netip.MustParseAddr("fe80::1%eth0")}},
		"long name":     {Name: "nodelocaldns-too-long", Addrs: []netip.Addr{a}},
		"slash in name": {Name: "a/b", Addrs: []netip.Addr{a}},
		"port 0":        {Addrs: []netip.Addr{a}, Ports: []uint16{0}},
		"negative tick": {Addrs: []netip.Addr{a}, ReconcileInterval: -1},
	}
	for name, cfg := range bad {
		if _, err := cfg.withDefaults(); err == nil {
			t.Errorf("%s: accepted", name)
		}
		if _, err := Setup(context.Background(), cfg); err == nil {
			t.Errorf("%s: Setup accepted it", name)
		}
	}
}

// TestUnknownLinkKindFallsBack runs the fallback on any kernel: a kind no
// kernel knows comes first, so Setup must move on to the next.
func TestUnknownLinkKindFallsBack(t *testing.T) {
	ns := ifacetest.New(t)
	saved := linkKinds
	linkKinds = append([]string{"nodedns-nokind"}, saved...)
	t.Cleanup(func() { linkKinds = saved })

	i, err := Setup(context.Background(), Config{Addrs: []netip.Addr{netip.MustParseAddr("169.254.20.10")}, NetNSPath: ns.Path()})
	if err != nil {
		t.Fatal(err)
	}
	defer i.Teardown()
	if k := i.Kind(); k != "dummy" && k != "bridge" {
		t.Errorf("Kind() = %q, want the first kind this kernel has", k)
	}
	if out := ns.IP("-d", "link", "show", DefaultName); !strings.Contains(out, " "+i.Kind()+" ") {
		t.Errorf("link is not of kind %s:\n%s", i.Kind(), out)
	}
}

// TestNoKnownLinkKind: when no kind works, Setup says which it tried.
func TestNoKnownLinkKind(t *testing.T) {
	ns := ifacetest.New(t)
	saved := linkKinds
	linkKinds = []string{"nodedns-nokind"}
	t.Cleanup(func() { linkKinds = saved })

	_, err := Setup(context.Background(), Config{Addrs: []netip.Addr{netip.MustParseAddr("169.254.20.10")}, NetNSPath: ns.Path()})
	if err == nil || !strings.Contains(err.Error(), "creating link nodelocaldns of type nodedns-nokind: ") {
		t.Fatalf("err = %v, want one naming the kind tried", err)
	}
}
