package zone

import (
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/dns"
)

var (
	fuzzOnce sync.Once
	fuzzSnap [3]*Snapshot
)

// FuzzLookup feeds arbitrary names and types to Lookup: it must never
// panic, and whatever it answers must unpack as a DNS message with the
// counts it claims.
func FuzzLookup(f *testing.F) {
	for _, s := range []string{
		"web.prod.svc.cluster.local", "_pg._tcp.db.prod.svc.cluster.local", "db-0.db.prod.svc.cluster.local",
		"fd00--1-6.db.prod.svc.cluster.local", "1-2-3-4.prod.pod.cluster.local", "fd00--1.prod.pod.cluster.local",
		"--1.prod.pod.cluster.local", "fd00--.prod.pod.cluster.local", "ext.prod.svc.cluster.local",
		"api.example.com.test.svc.cluster.local", "cluster.local", "ns.dns.cluster.local",
		"1.0.1.10.in-addr.arpa", "6.0.0.0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa",
		"_tcp.x.prod.svc.cluster.local", "a.b.c.d.e.f.svc.cluster.local",
	} {
		buf := make([]byte, 256)
		n, _ := dns.PackDomainName(dns.Fqdn(s), buf, 0, nil, false)
		for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeSRV, dns.TypePTR, dns.TypeANY, dns.TypeCNAME} {
			f.Add(lowerWire(buf[:n]), qt, uint8(0))
		}
	}
	f.Add([]byte{}, uint16(1), uint8(1))
	f.Add([]byte{0}, uint16(6), uint8(2))
	f.Add([]byte{3, 's', 'v', 'c'}, uint16(1), uint8(0))
	f.Add([]byte{0xC0, 0x0C}, uint16(1), uint8(0))
	f.Fuzz(func(t *testing.T, name []byte, qtype uint16, mode uint8) {
		fuzzOnce.Do(func() {
			for i, m := range []PodMode{PodsInsecure, PodsVerified, PodsDisabled} {
				_, store := newBuilder(t, Config{PodMode: m, EndpointPodNames: i == 1,
					Domains: []string{"cluster.local", "svc.cluster.local"}}, cluster())
				fuzzSnap[i] = store.Load()
			}
		})
		snap := fuzzSnap[int(mode)%3]
		r := snap.Lookup(name, qtype, make([]byte, 0, 8))
		if r.Kind == KindForward || r.Kind == KindNotSynced {
			if len(r.Records) != 0 {
				t.Fatalf("kind %d with records", r.Kind)
			}
			return
		}
		m := new(dns.Msg)
		if err := m.Unpack(message(name, qtype, r)); err != nil {
			t.Fatalf("unpack: %v (kind %d, records % x)", err, r.Kind, r.Records)
		}
		if len(m.Answer) != int(r.An) || len(m.Ns) != int(r.Ns) || len(m.Extra) != int(r.Ar) {
			t.Fatalf("counts %d/%d/%d, claimed %d/%d/%d", len(m.Answer), len(m.Ns), len(m.Extra), r.An, r.Ns, r.Ar)
		}
		for _, rr := range m.Answer {
			if !strings.EqualFold(rr.Header().Name, m.Question[0].Name) {
				t.Fatalf("answer owner %q, question %q", rr.Header().Name, m.Question[0].Name)
			}
		}
		if (r.Kind == KindChase) != (r.Chase != nil) {
			t.Fatalf("kind %d, chase %q", r.Kind, r.Chase)
		}
	})
}

// FuzzParseDashed checks the allocation-free dashed-IP parser against
// netip.ParseAddr.
func FuzzParseDashed(f *testing.F) {
	for _, s := range []string{"1-2-3-4", "fd00--1", "--1", "0--1", "fd00--", "fd00--0", "1-2-3-4-5-6-7-8",
		"fd00-0000-0000-0000-0000-0000-0001-0006", "1--2--3", "12345--1", "-1", "1-", "256-1-1-1", "01-1-1-1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if strings.ContainsAny(s, ".:%") {
			return
		}
		got, ok := parseDashed([]byte(s))
		want, err := netip.ParseAddr(strings.ReplaceAll(s, "-", "."))
		if err != nil {
			want, err = netip.ParseAddr(strings.ReplaceAll(s, "-", ":"))
		}
		if ok != (err == nil) || (ok && got != want) {
			t.Fatalf("parseDashed(%q) = %v, %v; netip says %v, %v", s, got, ok, want, err)
		}
		if ok && !got.IsUnspecified() && !got.Is4In6() {
			if back, ok := parseDashed([]byte(dashedIP(got))); !ok || back != got {
				t.Fatalf("dashedIP(%v) = %q does not parse back", got, dashedIP(got))
			}
		}
	})
}

func TestParseReverseRoundTrip(t *testing.T) {
	for _, s := range []string{"10.96.0.10", "0.0.0.0", "255.255.255.255", "fd00::10", "2001:db8::1:ffff", "::1"} {
		a := netip.MustParseAddr(s)
		r, _ := dns.ReverseAddr(s)
		name := wireOf(t, r)
		var offs labelOffsets
		n, ok := splitLabels(name, &offs)
		got, ok2 := parseReverse(name, &offs, n)
		if !ok || !ok2 || got != a {
			t.Errorf("%s: parseReverse(%s) = %v, %v", s, r, got, ok2)
		}
	}
	for _, r := range []string{"1.2.3.in-addr.arpa", "1.2.3.4.5.in-addr.arpa", "256.1.1.1.in-addr.arpa",
		"a.1.1.1.in-addr.arpa", "1.0.ip6.arpa", "0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.00.ip6.arpa",
		"g.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa"} {
		name := wireOf(t, r)
		var offs labelOffsets
		n, _ := splitLabels(name, &offs)
		if a, ok := parseReverse(name, &offs, n); ok {
			t.Errorf("%s parsed as %v", r, a)
		}
	}
}
