package zone

import (
	"testing"

	"github.com/miekg/dns"
)

func rev(t testing.TB, addr string) string {
	t.Helper()
	r, err := dns.ReverseAddr(addr)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestLookupSpec walks every SPEC row over the standard cluster.
func TestLookupSpec(t *testing.T) {
	_, store := newBuilder(t, Config{NSAddrs: ips("10.0.0.10", "fd00::a")}, cluster())
	snap := store.Load()
	const (
		A, AAAA, SRV, PTR, TXT, SOA, NS, CNAME, ANY, MX = dns.TypeA, dns.TypeAAAA, dns.TypeSRV, dns.TypePTR,
			dns.TypeTXT, dns.TypeSOA, dns.TypeNS, dns.TypeCNAME, dns.TypeANY, dns.TypeMX
	)
	dbSRVExtra := []string{
		"db-0.db.prod.svc.cluster.local. 5 IN A 10.1.0.1",
		"db-0.db.prod.svc.cluster.local. 5 IN AAAA fd00::1:1",
		"db-1.db.prod.svc.cluster.local. 5 IN A 10.1.0.2",
		"10-1-0-3.db.prod.svc.cluster.local. 5 IN A 10.1.0.3",
		"10-1-0-6.db.prod.svc.cluster.local. 5 IN A 10.1.0.6",
		"fd00--1-6.db.prod.svc.cluster.local. 5 IN AAAA fd00::1:6",
	}
	webExtra := []string{
		"web.prod.svc.cluster.local. 5 IN A 10.96.0.10",
		"web.prod.svc.cluster.local. 5 IN AAAA fd00::10",
	}
	cases := []testCase{
		// R1
		answer("dns-version.cluster.local", TXT, `dns-version.cluster.local. 30 IN TXT "1.1.0"`),
		nodata("dns-version.cluster.local", A),
		nx("x.dns-version.cluster.local", TXT),
		// R2: apex, NS target and its addresses.
		answer("cluster.local", SOA, soaApex),
		answer("cluster.local", NS, "cluster.local. 30 IN NS ns.dns.cluster.local.").withExtra(
			"ns.dns.cluster.local. 30 IN A 10.0.0.10", "ns.dns.cluster.local. 30 IN AAAA fd00::a"),
		nodata("cluster.local", A),
		answer("ns.dns.cluster.local", A, "ns.dns.cluster.local. 30 IN A 10.0.0.10"),
		answer("ns.dns.cluster.local", AAAA, "ns.dns.cluster.local. 30 IN AAAA fd00::a"),
		nodata("ns.dns.cluster.local", TXT),
		nodata("dns.cluster.local", A),
		nx("x.dns.cluster.local", A),
		// R3: ClusterIP, dual stack by family.
		answer("kubernetes.default.svc.cluster.local", A, "kubernetes.default.svc.cluster.local. 5 IN A 10.96.0.1"),
		nodata("kubernetes.default.svc.cluster.local", AAAA),
		answer("web.prod.svc.cluster.local", A, "web.prod.svc.cluster.local. 5 IN A 10.96.0.10"),
		answer("web.prod.svc.cluster.local", AAAA, "web.prod.svc.cluster.local. 5 IN AAAA fd00::10"),
		nodata("web.prod.svc.cluster.local", TXT),
		// R4: headless = ready endpoints of all slices, deduplicated; not
		// ready, terminating, orphan and FQDN slices excluded.
		answer("db.prod.svc.cluster.local", A,
			"db.prod.svc.cluster.local. 5 IN A 10.1.0.1", "db.prod.svc.cluster.local. 5 IN A 10.1.0.2",
			"db.prod.svc.cluster.local. 5 IN A 10.1.0.3", "db.prod.svc.cluster.local. 5 IN A 10.1.0.6"),
		answer("db.prod.svc.cluster.local", AAAA,
			"db.prod.svc.cluster.local. 5 IN AAAA fd00::1:1", "db.prod.svc.cluster.local. 5 IN AAAA fd00::1:6"),
		nx("idle.prod.svc.cluster.local", A), // no ready endpoint
		nx("_tcp.idle.prod.svc.cluster.local", A),
		// publishNotReadyAddresses: not-ready and terminating are served.
		answer("pnr.prod.svc.cluster.local", A,
			"pnr.prod.svc.cluster.local. 5 IN A 10.2.0.1", "pnr.prod.svc.cluster.local. 5 IN A 10.2.0.2"),
		// R5: hostname, shared by two addresses; a Pod with hostname+subdomain.
		answer("db-0.db.prod.svc.cluster.local", A, "db-0.db.prod.svc.cluster.local. 5 IN A 10.1.0.1"),
		answer("db-0.db.prod.svc.cluster.local", AAAA, "db-0.db.prod.svc.cluster.local. 5 IN AAAA fd00::1:1"),
		answer("twin.twins.prod.svc.cluster.local", A,
			"twin.twins.prod.svc.cluster.local. 5 IN A 10.3.0.1", "twin.twins.prod.svc.cluster.local. 5 IN A 10.3.0.2"),
		answer("busybox-1.sub.prod.svc.cluster.local", A, "busybox-1.sub.prod.svc.cluster.local. 5 IN A 10.5.0.1"),
		answer("busybox-2.sub.prod.svc.cluster.local", A, "busybox-2.sub.prod.svc.cluster.local. 5 IN A 10.5.0.2"),
		nx("busybox-3.sub.prod.svc.cluster.local", A),
		nx("10-1-0-1.db.prod.svc.cluster.local", A), // has a hostname: no dashed name
		// R6: dashed IPs; IPv6 compressed or expanded.
		answer("10-1-0-3.db.prod.svc.cluster.local", A, "10-1-0-3.db.prod.svc.cluster.local. 5 IN A 10.1.0.3"),
		answer("10-1-0-6.db.prod.svc.cluster.local", A, "10-1-0-6.db.prod.svc.cluster.local. 5 IN A 10.1.0.6"),
		nodata("10-1-0-6.db.prod.svc.cluster.local", AAAA),
		answer("fd00--1-6.db.prod.svc.cluster.local", AAAA, "fd00--1-6.db.prod.svc.cluster.local. 5 IN AAAA fd00::1:6"),
		answer("fd00-0-0-0-0-0-1-6.db.prod.svc.cluster.local", AAAA,
			"fd00-0-0-0-0-0-1-6.db.prod.svc.cluster.local. 5 IN AAAA fd00::1:6"),
		answer("fd00-0000-0000-0000-0000-0000-0001-0006.db.prod.svc.cluster.local", AAAA,
			"fd00-0000-0000-0000-0000-0000-0001-0006.db.prod.svc.cluster.local. 5 IN AAAA fd00::1:6"),
		nx("fd00--1-7.db.prod.svc.cluster.local", AAAA),
		nx("10-1-0-4.db.prod.svc.cluster.local", A),   // not ready
		nx("10-1-0-5.db.prod.svc.cluster.local", A),   // terminating
		nx("db-7f9c-x2.db.prod.svc.cluster.local", A), // R6b is off by default
		// Endpoint names of a ClusterIP service exist too (CoreDNS; k8s docs).
		answer("10-6-0-1.web.prod.svc.cluster.local", A, "10-6-0-1.web.prod.svc.cluster.local. 5 IN A 10.6.0.1"),
		answer("web-7d4-abc.web.prod.svc.cluster.local", A, "web-7d4-abc.web.prod.svc.cluster.local. 5 IN A 10.6.0.2"),
		nx("10-1-0-3.web.prod.svc.cluster.local", A),
		// R7: SRV for named ports; ClusterIP targets the service.
		answer("_http._tcp.web.prod.svc.cluster.local", SRV,
			"_http._tcp.web.prod.svc.cluster.local. 5 IN SRV 0 100 80 web.prod.svc.cluster.local.").withExtra(webExtra...),
		answer("_dns._udp.web.prod.svc.cluster.local", SRV,
			"_dns._udp.web.prod.svc.cluster.local. 5 IN SRV 0 100 53 web.prod.svc.cluster.local.").withExtra(webExtra...),
		answer("_assoc._sctp.web.prod.svc.cluster.local", SRV,
			"_assoc._sctp.web.prod.svc.cluster.local. 5 IN SRV 0 100 9 web.prod.svc.cluster.local.").withExtra(webExtra...),
		answer("_quic._tcp.web.prod.svc.cluster.local", SRV,
			"_quic._tcp.web.prod.svc.cluster.local. 5 IN SRV 0 100 443 web.prod.svc.cluster.local.").withExtra(webExtra...),
		nodata("_http._tcp.web.prod.svc.cluster.local", A),
		nx("_http._udp.web.prod.svc.cluster.local", SRV),
		nx("_weird._icmp.web.prod.svc.cluster.local", SRV),
		suffix("_https._tcp.kubernetes.default.svc.cluster.local.svc.cluster.local", SRV),
		answer("_https._tcp.kubernetes.default.svc.cluster.local", SRV,
			"_https._tcp.kubernetes.default.svc.cluster.local. 5 IN SRV 0 100 443 kubernetes.default.svc.cluster.local.").
			withExtra("kubernetes.default.svc.cluster.local. 5 IN A 10.96.0.1"),
		// Headless: one per ready endpoint name × port, weight 100/n.
		answer("_pg._tcp.db.prod.svc.cluster.local", SRV,
			"_pg._tcp.db.prod.svc.cluster.local. 5 IN SRV 0 20 5432 db-0.db.prod.svc.cluster.local.",
			"_pg._tcp.db.prod.svc.cluster.local. 5 IN SRV 0 20 5432 db-1.db.prod.svc.cluster.local.",
			"_pg._tcp.db.prod.svc.cluster.local. 5 IN SRV 0 20 5432 10-1-0-3.db.prod.svc.cluster.local.",
			"_pg._tcp.db.prod.svc.cluster.local. 5 IN SRV 0 20 5432 10-1-0-6.db.prod.svc.cluster.local.",
			"_pg._tcp.db.prod.svc.cluster.local. 5 IN SRV 0 20 5432 fd00--1-6.db.prod.svc.cluster.local.",
		).withExtra(dbSRVExtra...),
		answer("_peer._udp.twins.prod.svc.cluster.local", SRV,
			"_peer._udp.twins.prod.svc.cluster.local. 5 IN SRV 0 100 7000 twin.twins.prod.svc.cluster.local.").
			withExtra("twin.twins.prod.svc.cluster.local. 5 IN A 10.3.0.1", "twin.twins.prod.svc.cluster.local. 5 IN A 10.3.0.2"),
		// R8: PTR for ClusterIPs and ready endpoints; unknown: forward.
		answer(rev(t, "10.96.0.10"), PTR, rev(t, "10.96.0.10")+" 5 IN PTR web.prod.svc.cluster.local."),
		answer(rev(t, "fd00::10"), PTR, rev(t, "fd00::10")+" 5 IN PTR web.prod.svc.cluster.local."),
		answer(rev(t, "10.1.0.1"), PTR, rev(t, "10.1.0.1")+" 5 IN PTR db-0.db.prod.svc.cluster.local."),
		answer(rev(t, "fd00::1:6"), PTR, rev(t, "fd00::1:6")+" 5 IN PTR fd00--1-6.db.prod.svc.cluster.local."),
		answer(rev(t, "10.1.0.3"), PTR, rev(t, "10.1.0.3")+" 5 IN PTR 10-1-0-3.db.prod.svc.cluster.local."),
		answer(rev(t, "10.6.0.1"), PTR, rev(t, "10.6.0.1")+" 5 IN PTR 10-6-0-1.web.prod.svc.cluster.local."),
		answer(rev(t, "10.3.0.2"), PTR, rev(t, "10.3.0.2")+" 5 IN PTR twin.twins.prod.svc.cluster.local."),
		fwd(rev(t, "10.1.0.4"), PTR), // not ready
		fwd(rev(t, "10.9.9.9"), PTR),
		fwd(rev(t, "10.96.0.10"), A),
		fwd("96.10.in-addr.arpa", PTR),
		fwd("010.0.96.10.in-addr.arpa", PTR),
		// R9: ExternalName.
		{name: "ext.prod.svc.cluster.local", qtype: A, kind: KindChase, chase: "www.example.com",
			answer: []string{"ext.prod.svc.cluster.local. 5 IN CNAME www.example.com."}},
		{name: "ext.prod.svc.cluster.local", qtype: AAAA, kind: KindChase, chase: "www.example.com",
			answer: []string{"ext.prod.svc.cluster.local. 5 IN CNAME www.example.com."}},
		answer("ext.prod.svc.cluster.local", CNAME, "ext.prod.svc.cluster.local. 5 IN CNAME www.example.com."),
		answer("ext.prod.svc.cluster.local", ANY, "ext.prod.svc.cluster.local. 5 IN CNAME www.example.com."),
		nx("x.ext.prod.svc.cluster.local", A),
		// R10 (insecure, the default).
		answer("1-2-3-4.prod.pod.cluster.local", A, "1-2-3-4.prod.pod.cluster.local. 5 IN A 1.2.3.4"),
		nodata("1-2-3-4.prod.pod.cluster.local", AAAA),
		answer("fd00--1.prod.pod.cluster.local", AAAA, "fd00--1.prod.pod.cluster.local. 5 IN AAAA fd00::1"),
		nx("1-2-3.prod.pod.cluster.local", A),
		nx("1-2-3-256.prod.pod.cluster.local", A),
		nx("01-2-3-4.prod.pod.cluster.local", A),
		nx("0-0-0-0.prod.pod.cluster.local", A),
		suffix("1-2-3-4.nope.pod.cluster.local", A),
		suffix("x.1-2-3-4.prod.pod.cluster.local", A),
		// R11: NODATA, including empty non-terminals.
		nodata("svc.cluster.local", A),
		nodata("prod.svc.cluster.local", A),
		nodata("test.svc.cluster.local", A), // namespace without services
		nodata("_tcp.web.prod.svc.cluster.local", SRV),
		nodata("_udp.web.prod.svc.cluster.local", A),
		nodata("_tcp.db.prod.svc.cluster.local", SRV),
		nodata("pod.cluster.local", A),
		nodata("prod.pod.cluster.local", A),
		nodata("db.prod.svc.cluster.local", MX),
		// R12: NXDOMAIN, never forwarded; search-list expansions apart.
		nx("missing.prod.svc.cluster.local", A),
		nx("nope.web.prod.svc.cluster.local", A),
		nx("_x._tcp.missing.prod.svc.cluster.local", SRV),
		suffix("api.example.com.test.svc.cluster.local", A),
		suffix("api.example.com.svc.cluster.local", A),
		suffix("api.example.com.cluster.local", AAAA),
		suffix("google.com.test.svc.cluster.local", A),
		suffix("example.com.svc.cluster.local", A),
		suffix("nope.svc.cluster.local", A),
		suffix("foo.cluster.local", A),
		suffix("a.b.c.d.web.prod.svc.cluster.local", A),
		suffix("a.b.web.prod.svc.cluster.local", A),
		// Outside the zone.
		fwd("example.com", A),
		fwd("local", A),
		fwd("xcluster.local", A),
		// ANY: one RRset, never the whole node (RFC 8482).
		answer("web.prod.svc.cluster.local", ANY, "web.prod.svc.cluster.local. 5 IN A 10.96.0.10"),
		answer("cluster.local", ANY, soaApex),
		nodata("prod.svc.cluster.local", ANY),
	}
	runCases(t, snap, cases)
}

func TestLookupMixedCase(t *testing.T) {
	_, store := newBuilder(t, Config{}, cluster())
	snap := store.Load()
	runCases(t, snap, []testCase{
		answer("WeB.PrOd.SvC.Cluster.LOCAL", dns.TypeA, "WeB.PrOd.SvC.Cluster.LOCAL. 5 IN A 10.96.0.10"),
		answer("_HTTP._Tcp.web.PROD.svc.cluster.local", dns.TypeSRV,
			"_HTTP._Tcp.web.PROD.svc.cluster.local. 5 IN SRV 0 100 80 web.prod.svc.cluster.local.").withExtra(
			"web.prod.svc.cluster.local. 5 IN A 10.96.0.10", "web.prod.svc.cluster.local. 5 IN AAAA fd00::10"),
		answer("FD00--1-6.db.prod.svc.cluster.local", dns.TypeAAAA, "FD00--1-6.db.prod.svc.cluster.local. 5 IN AAAA fd00::1:6"),
		answer("1-2-3-4.Prod.POD.cluster.local", dns.TypeA, "1-2-3-4.Prod.POD.cluster.local. 5 IN A 1.2.3.4"),
		nx("Missing.prod.svc.cluster.local", dns.TypeA),
	})
	// The owner is a pointer to the question: raw bytes, not a copy.
	r := snap.Lookup(wireOf(t, "web.prod.svc.cluster.local"), dns.TypeA, nil)
	if len(r.Records) < 2 || r.Records[0] != 0xC0 || r.Records[1] != 0x0C {
		t.Fatalf("owner is not 0xC00C: % x", r.Records)
	}
}

func TestLookupEndpointPodNames(t *testing.T) {
	_, store := newBuilder(t, Config{EndpointPodNames: true}, cluster())
	snap := store.Load()
	runCases(t, snap, []testCase{
		answer("db-7f9c-x2.db.prod.svc.cluster.local", dns.TypeA, "db-7f9c-x2.db.prod.svc.cluster.local. 5 IN A 10.1.0.6"),
		nx("10-1-0-6.db.prod.svc.cluster.local", dns.TypeA),
		// A hostname wins over the Pod name.
		answer("db-0.db.prod.svc.cluster.local", dns.TypeA, "db-0.db.prod.svc.cluster.local. 5 IN A 10.1.0.1"),
		answer(rev(t, "10.1.0.6"), dns.TypePTR, rev(t, "10.1.0.6")+" 5 IN PTR db-7f9c-x2.db.prod.svc.cluster.local."),
	})
	r, m := lookup(t, snap, "_pg._tcp.db.prod.svc.cluster.local", dns.TypeSRV)
	if r.Kind != KindAnswer || len(m.Answer) != 5 {
		t.Fatalf("SRV: kind %d, %d records", r.Kind, len(m.Answer))
	}
	found := false
	for _, rr := range m.Answer {
		found = found || rr.(*dns.SRV).Target == "db-7f9c-x2.db.prod.svc.cluster.local."
	}
	if !found {
		t.Errorf("SRV does not target the pod name: %v", m.Answer)
	}
}

// A Pod name that is not one label falls back to the dashed IP.
func TestLookupEndpointPodNameNotALabel(t *testing.T) {
	objs := Objects{
		Services: []*Service{{Namespace: "ns", Name: "h", Headless: true}},
		EndpointSlices: []*EndpointSlice{{Namespace: "ns", Name: "h-1", ServiceName: "h", AddressType: "IPv4",
			Endpoints: []Endpoint{{Addresses: ips("10.0.0.1"), Ready: true, PodName: "a.b"}}}},
	}
	_, store := newBuilder(t, Config{EndpointPodNames: true}, objs)
	runCases(t, store.Load(), []testCase{
		answer("10-0-0-1.h.ns.svc.cluster.local", dns.TypeA, "10-0-0-1.h.ns.svc.cluster.local. 5 IN A 10.0.0.1"),
	})
}

func TestLookupPodModes(t *testing.T) {
	t.Run("verified", func(t *testing.T) {
		_, store := newBuilder(t, Config{PodMode: PodsVerified}, cluster())
		runCases(t, store.Load(), []testCase{
			answer("10-1-0-1.prod.pod.cluster.local", dns.TypeA, "10-1-0-1.prod.pod.cluster.local. 5 IN A 10.1.0.1"),
			answer("fd00--1-1.prod.pod.cluster.local", dns.TypeAAAA, "fd00--1-1.prod.pod.cluster.local. 5 IN AAAA fd00::1:1"),
			nx("1-2-3-4.prod.pod.cluster.local", dns.TypeA),
			nx("192-168-0-5.prod.pod.cluster.local", dns.TypeA), // hostNetwork
			nx("10-1-0-1.test.pod.cluster.local", dns.TypeA),    // other namespace
			nodata("prod.pod.cluster.local", dns.TypeA),
			nx("test.pod.cluster.local", dns.TypeA), // no pods there
			nodata("pod.cluster.local", dns.TypeA),
		})
	})
	t.Run("disabled", func(t *testing.T) {
		_, store := newBuilder(t, Config{PodMode: PodsDisabled}, cluster())
		runCases(t, store.Load(), []testCase{
			nx("10-1-0-1.prod.pod.cluster.local", dns.TypeA),
			nx("1-2-3-4.prod.pod.cluster.local", dns.TypeA),
			nx("pod.cluster.local", dns.TypeA),
			nx("prod.pod.cluster.local", dns.TypeA),
			suffix("x.1-2-3-4.prod.pod.cluster.local", dns.TypeA),
		})
	})
}

func TestLookupNotSynced(t *testing.T) {
	store := &Store{}
	// Before any builder: nothing is ours.
	runCases(t, store.Load(), []testCase{fwd("web.prod.svc.cluster.local", dns.TypeA)})

	b, err := NewBuilder(Config{Domains: []string{"cluster.local"}}, store)
	if err != nil {
		t.Fatal(err)
	}
	b.ReplaceAll(cluster())
	b.Flush()
	snap := store.Load()
	if snap.Synced() {
		t.Fatal("synced before SetSynced")
	}
	notSynced := func(name string) testCase {
		return testCase{name: name, qtype: dns.TypeA, kind: KindNotSynced, rcode: dns.RcodeServerFailure}
	}
	runCases(t, snap, []testCase{
		notSynced("web.prod.svc.cluster.local"),
		notSynced("missing.prod.svc.cluster.local"),
		notSynced("cluster.local"),
		fwd(rev(t, "10.96.0.10"), dns.TypePTR),
		fwd("example.com", dns.TypeA),
	})
	b.SetSynced()
	b.Flush()
	if !store.Load().Synced() {
		t.Fatal("not synced after SetSynced+Flush")
	}
	runCases(t, store.Load(), []testCase{
		answer("web.prod.svc.cluster.local", dns.TypeA, "web.prod.svc.cluster.local. 5 IN A 10.96.0.10"),
	})
}

func TestLookupTwoDomains(t *testing.T) {
	_, store := newBuilder(t, Config{Domains: []string{"cluster.local", "Corp.Example."}, TTL: 7, SOATTL: 60}, cluster())
	snap := store.Load()
	const corpSOA = "corp.example. 60 IN SOA ns.dns.corp.example. hostmaster.corp.example. 0 7200 1800 86400 7"
	const corpNeg = "corp.example. 7 IN SOA ns.dns.corp.example. hostmaster.corp.example. 0 7200 1800 86400 7"
	runCases(t, snap, []testCase{
		answer("web.prod.svc.cluster.local", dns.TypeA, "web.prod.svc.cluster.local. 7 IN A 10.96.0.10"),
		answer("web.prod.svc.corp.example", dns.TypeA, "web.prod.svc.corp.example. 7 IN A 10.96.0.10"),
		answer("dns-version.corp.example", dns.TypeTXT, `dns-version.corp.example. 60 IN TXT "1.1.0"`),
		answer("corp.example", dns.TypeSOA, corpSOA),
		{name: "missing.prod.svc.corp.example", qtype: dns.TypeA, kind: KindNXDomain, rcode: dns.RcodeNameError, ns: []string{corpNeg}},
		answer("_peer._udp.twins.prod.svc.corp.example", dns.TypeSRV,
			"_peer._udp.twins.prod.svc.corp.example. 7 IN SRV 0 100 7000 twin.twins.prod.svc.corp.example.").
			withExtra("twin.twins.prod.svc.corp.example. 7 IN A 10.3.0.1", "twin.twins.prod.svc.corp.example. 7 IN A 10.3.0.2"),
		// PTR names the primary (first) domain.
		answer(rev(t, "10.96.0.10"), dns.TypePTR, rev(t, "10.96.0.10")+" 7 IN PTR web.prod.svc.cluster.local."),
		fwd("example", dns.TypeA),
	})
}
