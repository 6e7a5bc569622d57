package zone

import (
	"encoding/binary"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// Test helpers: objects in, query (name, type) out, compared with records in
// zone-file syntax, order-independently.

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

func ips(s ...string) []netip.Addr {
	out := make([]netip.Addr, len(s))
	for i, v := range s {
		out[i] = ip(v)
	}
	return out
}

// ep is a ready endpoint.
func ep(host string, addrs ...string) Endpoint {
	return Endpoint{Addresses: ips(addrs...), Hostname: host, Ready: true}
}

// newBuilder returns a builder with objs loaded, synced and flushed.
func newBuilder(t testing.TB, cfg Config, objs Objects) (*Builder, *Store) {
	t.Helper()
	if len(cfg.Domains) == 0 {
		cfg.Domains = []string{"cluster.local"}
	}
	store := &Store{}
	b, err := NewBuilder(cfg, store)
	if err != nil {
		t.Fatalf("NewBuilder: %v", err)
	}
	b.ReplaceAll(objs)
	b.SetSynced()
	b.Flush()
	return b, store
}

// wireOf packs a presentation name (case kept) into wire format.
func wireOf(t testing.TB, name string) []byte {
	t.Helper()
	buf := make([]byte, 256)
	n, err := dns.PackDomainName(dns.Fqdn(name), buf, 0, nil, false)
	if err != nil {
		t.Fatalf("pack %q: %v", name, err)
	}
	return buf[:n]
}

func lowerWire(b []byte) []byte {
	out := slices.Clone(b)
	for i, c := range out {
		if c >= 'A' && c <= 'Z' {
			out[i] = c + 'a' - 'A'
		}
	}
	return out
}

// message builds the response the resolver would send: header, the
// question as asked, then r.Records.
func message(qname []byte, qtype uint16, r Result) []byte {
	b := make([]byte, 12, 12+len(qname)+4+len(r.Records))
	binary.BigEndian.PutUint16(b[0:], 0x1234)
	binary.BigEndian.PutUint16(b[2:], 0x8400|uint16(r.Rcode)) // QR, AA
	binary.BigEndian.PutUint16(b[4:], 1)
	binary.BigEndian.PutUint16(b[6:], r.An)
	binary.BigEndian.PutUint16(b[8:], r.Ns)
	binary.BigEndian.PutUint16(b[10:], r.Ar)
	b = append(b, qname...)
	b = binary.BigEndian.AppendUint16(b, qtype)
	b = binary.BigEndian.AppendUint16(b, 1)
	return append(b, r.Records...)
}

// lookup queries snap for name (any case) and unpacks the answer.
func lookup(t testing.TB, snap *Snapshot, name string, qtype uint16) (Result, *dns.Msg) {
	t.Helper()
	q := wireOf(t, name)
	r := snap.Lookup(lowerWire(q), qtype, nil)
	m := new(dns.Msg)
	if err := m.Unpack(message(q, qtype, r)); err != nil {
		t.Fatalf("%s %s: unpack: %v (kind %d)", name, dns.TypeToString[qtype], err, r.Kind)
	}
	return r, m
}

// norm renders records in canonical zone-file syntax; the SOA serial,
// which changes with every publish, is zeroed.
func norm(t testing.TB, rrs []dns.RR) []string {
	t.Helper()
	out := make([]string, 0, len(rrs))
	for _, rr := range rrs {
		if soa, ok := rr.(*dns.SOA); ok {
			soa = dns.Copy(soa).(*dns.SOA)
			soa.Serial = 0
			rr = soa
		}
		out = append(out, rr.String())
	}
	slices.Sort(out)
	return out
}

func parseRRs(t testing.TB, zs []string) []dns.RR {
	t.Helper()
	var out []dns.RR
	for _, z := range zs {
		rr, err := dns.NewRR(z)
		if err != nil || rr == nil {
			t.Fatalf("bad expected record %q: %v", z, err)
		}
		out = append(out, rr)
	}
	return out
}

func sameRRs(t testing.TB, what string, got []dns.RR, want []string) {
	t.Helper()
	g, w := norm(t, got), norm(t, parseRRs(t, want))
	if !slices.Equal(g, w) {
		t.Errorf("%s:\n got  %s\n want %s", what, strings.Join(g, "\n      "), strings.Join(w, "\n      "))
	}
}

// soa is the authority record of negative answers in cluster.local with
// default TTLs: TTL min(SOA TTL, minimum) (RFC 2308 §3); soaApex is the
// answer to SOA at the apex.
const (
	soa     = "cluster.local. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 0 7200 1800 86400 5"
	soaApex = "cluster.local. 30 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 0 7200 1800 86400 5"
)

type testCase struct {
	name   string
	qtype  uint16
	kind   Kind
	rcode  int
	answer []string
	ns     []string
	extra  []string
	chase  string // for KindChase
}

func (tc testCase) check(t *testing.T, snap *Snapshot) {
	t.Helper()
	r, m := lookup(t, snap, tc.name, tc.qtype)
	label := tc.name + " " + dns.TypeToString[tc.qtype]
	if r.Kind != tc.kind {
		t.Errorf("%s: kind %d, want %d", label, r.Kind, tc.kind)
	}
	if m.Rcode != tc.rcode {
		t.Errorf("%s: rcode %s, want %s", label, dns.RcodeToString[m.Rcode], dns.RcodeToString[tc.rcode])
	}
	ns := tc.ns
	if ns == nil && (tc.kind == KindNoData || tc.kind == KindNXDomain || tc.kind == KindSearchSuffix) {
		ns = []string{soa}
	}
	sameRRs(t, label+" answer", m.Answer, tc.answer)
	sameRRs(t, label+" authority", m.Ns, ns)
	sameRRs(t, label+" additional", m.Extra, tc.extra)
	if tc.kind == KindChase {
		if want := lowerWire(wireOf(t, tc.chase)); string(r.Chase) != string(want) {
			t.Errorf("%s: chase %q, want %q", label, r.Chase, want)
		}
	} else if r.Chase != nil {
		t.Errorf("%s: unexpected chase %q", label, r.Chase)
	}
}

func runCases(t *testing.T, snap *Snapshot, cases []testCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name+"/"+dns.TypeToString[tc.qtype], func(t *testing.T) { tc.check(t, snap) })
	}
}

// nx, nodata and suffix build the common negative cases.
func nx(name string, qtype uint16) testCase {
	return testCase{name: name, qtype: qtype, kind: KindNXDomain, rcode: dns.RcodeNameError}
}

func suffix(name string, qtype uint16) testCase {
	return testCase{name: name, qtype: qtype, kind: KindSearchSuffix, rcode: dns.RcodeNameError}
}

func nodata(name string, qtype uint16) testCase {
	return testCase{name: name, qtype: qtype, kind: KindNoData}
}

func fwd(name string, qtype uint16) testCase {
	return testCase{name: name, qtype: qtype, kind: KindForward}
}

func answer(name string, qtype uint16, rrs ...string) testCase {
	return testCase{name: name, qtype: qtype, kind: KindAnswer, answer: rrs}
}

// withExtra adds additional-section records to a case.
func (tc testCase) withExtra(rrs ...string) testCase {
	tc.extra = rrs
	return tc
}

// cluster is the standard object set of the table tests.
func cluster() Objects {
	return Objects{
		Namespaces: []string{"default", "prod", "test"},
		Services: []*Service{
			{Namespace: "default", Name: "kubernetes", ClusterIPs: ips("10.96.0.1"),
				Ports: []Port{{Name: "https", Protocol: "TCP", Port: 443}}},
			{Namespace: "prod", Name: "web", ClusterIPs: ips("10.96.0.10", "fd00::10"),
				Ports: []Port{
					{Name: "http", Protocol: "TCP", Port: 80},
					{Name: "dns", Protocol: "UDP", Port: 53},
					{Name: "assoc", Protocol: "SCTP", Port: 9},
					{Name: "", Protocol: "TCP", Port: 8080},      // unnamed: no SRV
					{Name: "quic", Protocol: "", Port: 443},      // empty protocol: TCP
					{Name: "weird", Protocol: "ICMP", Port: 1},   // unknown protocol: skipped
					{Name: "Bad_Name", Protocol: "TCP", Port: 2}, // not a label: skipped
				}},
			{Namespace: "prod", Name: "db", Headless: true},
			{Namespace: "prod", Name: "ext", ExternalName: "www.example.com"},
			{Namespace: "prod", Name: "idle", Headless: true},
			{Namespace: "prod", Name: "pnr", Headless: true, PublishNotReady: true},
			{Namespace: "prod", Name: "twins", Headless: true},
			{Namespace: "prod", Name: "sub", Headless: true},
		},
		EndpointSlices: []*EndpointSlice{
			{Namespace: "prod", Name: "db-a", ServiceName: "db", AddressType: "IPv4",
				Ports: []Port{{Name: "pg", Protocol: "TCP", Port: 5432}, {Protocol: "TCP", Port: 9999}},
				Endpoints: []Endpoint{
					ep("db-0", "10.1.0.1"),
					ep("db-1", "10.1.0.2"),
					ep("", "10.1.0.3"),
					{Addresses: ips("10.1.0.4"), Ready: false},                   // not ready
					{Addresses: ips("10.1.0.5"), Ready: true, Terminating: true}, // terminating
				}},
			{Namespace: "prod", Name: "db-b", ServiceName: "db", AddressType: "IPv4",
				Ports: []Port{{Name: "pg", Protocol: "TCP", Port: 5432}},
				Endpoints: []Endpoint{
					ep("", "10.1.0.3"), // duplicate across slices
					{Addresses: ips("10.1.0.6"), Ready: true, PodName: "db-7f9c-x2"},
				}},
			{Namespace: "prod", Name: "db-v6", ServiceName: "db", AddressType: "IPv6",
				Ports: []Port{{Name: "pg", Protocol: "TCP", Port: 5432}},
				Endpoints: []Endpoint{
					ep("db-0", "fd00::1:1"),
					ep("", "fd00::1:6"),
				}},
			{Namespace: "prod", Name: "idle-a", ServiceName: "idle", AddressType: "IPv4",
				Endpoints: []Endpoint{{Addresses: ips("10.4.0.1"), Ready: false}}},
			{Namespace: "prod", Name: "pnr-a", ServiceName: "pnr", AddressType: "IPv4",
				Endpoints: []Endpoint{
					{Addresses: ips("10.2.0.1"), Ready: false},
					{Addresses: ips("10.2.0.2"), Ready: true, Terminating: true},
				}},
			{Namespace: "prod", Name: "twins-a", ServiceName: "twins", AddressType: "IPv4",
				Ports:     []Port{{Name: "peer", Protocol: "UDP", Port: 7000}},
				Endpoints: []Endpoint{ep("twin", "10.3.0.1"), ep("twin", "10.3.0.2")}},
			// A Pod with hostname + subdomain "sub": its slice carries the hostname.
			{Namespace: "prod", Name: "sub-a", ServiceName: "sub", AddressType: "IPv4",
				Endpoints: []Endpoint{ep("busybox-1", "10.5.0.1"), ep("busybox-2", "10.5.0.2")}},
			// A ClusterIP service's endpoints get names too.
			{Namespace: "prod", Name: "web-a", ServiceName: "web", AddressType: "IPv4",
				Ports:     []Port{{Name: "http", Protocol: "TCP", Port: 8080}},
				Endpoints: []Endpoint{ep("", "10.6.0.1"), ep("web-7d4-abc", "10.6.0.2")}},
			// Slices without service or of FQDN type are ignored.
			{Namespace: "prod", Name: "orphan", AddressType: "IPv4",
				Endpoints: []Endpoint{ep("", "10.9.0.1")}},
			{Namespace: "prod", Name: "fqdn", ServiceName: "db", AddressType: "FQDN",
				Endpoints: []Endpoint{ep("", "10.9.0.2")}},
		},
		Pods: []*Pod{
			{Namespace: "prod", Name: "db-0", IPs: ips("10.1.0.1", "fd00::1:1")},
			{Namespace: "prod", Name: "hostnet", IPs: ips("192.168.0.5"), HostNetwork: true},
		},
	}
}
