package upstream

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestFromResolvConf(t *testing.T) {
	ap := netip.MustParseAddrPort
	for _, tc := range []struct {
		name        string
		conf        string
		servers     []netip.AddrPort
		search      []string
		skipped     []string // Skipped.Server values
		errContains []string // empty: no error
	}{
		{
			name:    "plain",
			conf:    "nameserver 10.0.0.2\nnameserver 10.0.0.3\nsearch corp.example.com example.com\n",
			servers: []netip.AddrPort{ap("10.0.0.2:53"), ap("10.0.0.3:53")},
			search:  []string{"corp.example.com", "example.com"},
		},
		{
			name:    "systemd-resolved stub only",
			conf:    "# This is /run/systemd/resolve/stub-resolv.conf\nnameserver 127.0.0.53\noptions edns0 trust-ad\nsearch .\n",
			skipped: []string{"127.0.0.53"}, search: []string{},
			errContains: []string{"no usable nameserver", "127.0.0.53", "loopback"},
		},
		{
			name: "loopback and unspecified skipped, others kept",
			conf: "nameserver 127.0.0.1\nnameserver ::1\nnameserver ::ffff:127.0.0.1\nnameserver 0.0.0.0\n" +
				"nameserver 192.0.2.53\n",
			servers: []netip.AddrPort{ap("192.0.2.53:53")},
			skipped: []string{"127.0.0.1", "::1", "::ffff:127.0.0.1", "0.0.0.0"},
		},
		{
			name: "IPv6 with zone, comments, domain",
			conf: "; written by hand\n  nameserver fe80::1%eth0   # router\nnameserver 2001:db8::53;dns\n" +
				"domain Example.ORG.\n",
			servers: []netip.AddrPort{
				netip.AddrPortFrom(netip.MustParseAddr("fe80::1%eth0"), 53), ap("[2001:db8::53]:53")},
			search: []string{"example.org"},
		},
		{
			name:    "last search or domain line wins",
			conf:    "search a.example b.example\nnameserver 192.0.2.1\ndomain c.example\nsearch D.example. e.example\n",
			servers: []netip.AddrPort{ap("192.0.2.1:53")},
			search:  []string{"d.example", "e.example"},
		},
		{
			name:    "domain after search replaces it",
			conf:    "search a.example b.example\nnameserver 192.0.2.1\ndomain c.example\n",
			servers: []netip.AddrPort{ap("192.0.2.1:53")},
			search:  []string{"c.example"},
		},
		{
			name:    "bad and duplicate lines skipped",
			conf:    "nameserver\nnameserver dns.example.com\nnameserver 192.0.2.1\nnameserver 192.0.2.1\nsortlist 10.0.0.0/8\n",
			servers: []netip.AddrPort{ap("192.0.2.1:53")},
			skipped: []string{"", "dns.example.com", "192.0.2.1"},
		},
		{
			name:        "no nameserver at all",
			conf:        "search example.com\n",
			search:      []string{"example.com"},
			errContains: []string{"no nameserver lines"},
		},
		{
			name:        "empty",
			conf:        "",
			errContains: []string{"no nameserver"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "resolv.conf")
			if err := os.WriteFile(path, []byte(tc.conf), 0o644); err != nil {
				t.Fatal(err)
			}
			servers, search, err := FromResolvConf(path)
			rc, rerr := ReadResolvConf(path)
			if len(tc.errContains) > 0 {
				if err == nil || rerr == nil {
					t.Fatalf("no error; servers %v", servers)
				}
				for _, s := range tc.errContains {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not say %q", err, s)
					}
				}
				if !strings.Contains(err.Error(), path) {
					t.Errorf("error %q does not name the file", err)
				}
			} else {
				if err != nil || rerr != nil {
					t.Fatal(err, rerr)
				}
				if !slices.Equal(servers, tc.servers) {
					t.Errorf("servers %v, want %v", servers, tc.servers)
				}
				if !slices.Equal(search, tc.search) {
					t.Errorf("search %q, want %q", search, tc.search)
				}
			}
			if rc == nil {
				t.Fatal("ReadResolvConf returned no ResolvConf")
			}
			if !slices.Equal(rc.Search, tc.search) && len(rc.Search)+len(tc.search) > 0 {
				t.Errorf("ResolvConf.Search %q, want %q", rc.Search, tc.search)
			}
			var skipped []string
			for _, s := range rc.Skipped {
				if s.Reason == "" {
					t.Errorf("skipped %q without a reason", s.Server)
				}
				skipped = append(skipped, s.Server)
			}
			if !slices.Equal(skipped, tc.skipped) {
				t.Errorf("skipped %q, want %q", skipped, tc.skipped)
			}
		})
	}
}

func TestFromResolvConfMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope")
	if _, _, err := FromResolvConf(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("err = %v, want one naming %s", err, path)
	}
}
