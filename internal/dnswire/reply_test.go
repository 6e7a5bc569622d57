package dnswire

import (
	"bytes"
	"sort"
	"testing"

	"github.com/miekg/dns"
)

// recordsFor packs rrs uncompressed, replacing owners equal to qname by the
// pointer 0xC00C as the zone does.
func recordsFor(t testing.TB, qname string, rrs ...string) []byte {
	t.Helper()
	var out []byte
	owner := wireName(t, qname)
	for _, s := range rrs {
		rr, err := dns.NewRR(s)
		if err != nil {
			t.Fatalf("NewRR(%q): %v", s, err)
		}
		buf := make([]byte, 1024)
		n, err := dns.PackRR(rr, buf, 0, nil, false)
		if err != nil {
			t.Fatalf("PackRR(%q): %v", s, err)
		}
		b := buf[:n]
		if bytes.EqualFold(b[:len(owner)], owner) {
			b = append([]byte{0xC0, 0x0C}, b[len(owner):]...)
		}
		out = append(out, b...)
	}
	return out
}

func unpack(t testing.TB, b []byte) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	if err := m.Unpack(b); err != nil {
		t.Fatalf("Unpack: %v\n%x", err, b)
	}
	return m
}

func rrStrings(rrs []dns.RR) []string {
	var s []string
	for _, rr := range rrs {
		s = append(s, rr.String())
	}
	sort.Strings(s)
	return s
}

func TestAppendResponse(t *testing.T) {
	qm := query("Web.Default.SVC.cluster.local.", dns.TypeA)
	qm.CheckingDisabled = true
	qm.SetEdns0(4096, true)
	msg := pack(t, qm)
	var q Query
	if err := ParseQuery(msg, &q); err != nil {
		t.Fatal(err)
	}
	recs := recordsFor(t, "web.default.svc.cluster.local.",
		"web.default.svc.cluster.local. 5 IN A 10.0.0.1",
		"web.default.svc.cluster.local. 5 IN A 10.0.0.2",
		"cluster.local. 30 IN NS ns.dns.cluster.local.",
		"ns.dns.cluster.local. 30 IN A 169.254.20.10")
	a := Answer{AA: true, Records: recs, An: 2, Ns: 1, Ar: 1}
	out := AppendResponse(make([]byte, 0, 512), msg, &q, &a, q.UDPLimit(DefaultUDPSize))
	m := unpack(t, out)
	if m.Id != 0x1234 || !m.Response || !m.Authoritative || !m.RecursionDesired || !m.RecursionAvailable ||
		!m.CheckingDisabled || m.AuthenticatedData || m.Truncated || m.Rcode != dns.RcodeSuccess {
		t.Errorf("header: %v", m.MsgHdr)
	}
	if len(m.Question) != 1 || m.Question[0].Name != "Web.Default.SVC.cluster.local." {
		t.Errorf("question not echoed verbatim: %v", m.Question)
	}
	want := []string{
		"Web.Default.SVC.cluster.local.\t5\tIN\tA\t10.0.0.1",
		"Web.Default.SVC.cluster.local.\t5\tIN\tA\t10.0.0.2",
	}
	if got := rrStrings(m.Answer); !equal(got, want) {
		t.Errorf("answer = %q, want %q", got, want)
	}
	if len(m.Ns) != 1 || len(m.Extra) != 2 {
		t.Errorf("ns %v extra %v", m.Ns, m.Extra)
	}
	opt := m.IsEdns0()
	if opt == nil || opt.UDPSize() != DefaultUDPSize || !opt.Do() || opt.Version() != 0 {
		t.Errorf("OPT = %v", opt)
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestAppendResponseTruncates(t *testing.T) {
	var rrs []string
	for i := range 100 {
		rrs = append(rrs, "big.example. 5 IN AAAA 2001:db8::"+string(rune('a'+i%6)))
	}
	recs := recordsFor(t, "big.example.", rrs...)
	a := Answer{AA: true, Records: recs, An: 100, Rcode: RcodeSuccess}

	for _, tt := range []struct {
		name   string
		edns   uint16
		limit  func(q *Query) int
		wantTC bool
	}{
		{"no edns, 512", 0, func(q *Query) int { return q.UDPLimit(DefaultUDPSize) }, true},
		{"edns 1232 still too small", 1232, func(q *Query) int { return q.UDPLimit(DefaultUDPSize) }, true},
		{"edns 4096 capped by us", 4096, func(q *Query) int { return q.UDPLimit(DefaultUDPSize) }, true},
		{"edns 4096, our max 4096", 4096, func(q *Query) int { return q.UDPLimit(4096) }, false},
		{"tcp", 0, func(*Query) int { return MaxMsgLen }, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			qm := query("BIG.example.", dns.TypeAAAA)
			if tt.edns != 0 {
				qm.SetEdns0(tt.edns, false)
			}
			msg := pack(t, qm)
			var q Query
			if err := ParseQuery(msg, &q); err != nil {
				t.Fatal(err)
			}
			limit := tt.limit(&q)
			out := AppendResponse(nil, msg, &q, &a, limit)
			if len(out) > limit {
				t.Errorf("len %d > limit %d", len(out), limit)
			}
			m := unpack(t, out)
			if m.Truncated != tt.wantTC {
				t.Fatalf("TC = %v, want %v", m.Truncated, tt.wantTC)
			}
			if tt.wantTC {
				if len(m.Answer) != 0 || len(m.Ns) != 0 || len(m.Question) != 1 || m.Question[0].Name != "BIG.example." {
					t.Errorf("truncated reply carries %v", m)
				}
			} else if len(m.Answer) != 100 {
				t.Errorf("%d answers", len(m.Answer))
			}
			if (m.IsEdns0() != nil) != (tt.edns != 0) {
				t.Errorf("OPT present %v, query had one %v", m.IsEdns0() != nil, tt.edns != 0)
			}
		})
	}
}

func TestAppendResponseBadVersAndErrors(t *testing.T) {
	qm := query("a.example.", dns.TypeA)
	qm.SetEdns0(1232, false)
	qm.IsEdns0().SetVersion(1)
	msg := pack(t, qm)
	var q Query
	if err := ParseQuery(msg, &q); err != nil {
		t.Fatal(err)
	}
	out := AppendResponse(nil, msg, &q, &Answer{Rcode: RcodeBadVers}, 512)
	m := unpack(t, out)
	opt := m.IsEdns0()
	if opt == nil || opt.Version() != 0 || m.Rcode != dns.RcodeBadVers {
		t.Errorf("BADVERS reply: rcode %d opt %v", m.Rcode, opt)
	}

	// A FORMERR for a question that did not parse has no question.
	bad := rawQuery(0x0100, 2, 0, 0, 0, qWWW, qWWW)
	err := ParseQuery(bad, &q)
	rc, _ := err.(Error).Rcode()
	out = AppendResponse(nil, bad, &q, &Answer{Rcode: rc}, 512)
	m = unpack(t, out)
	if m.Rcode != dns.RcodeFormatError || len(m.Question) != 0 || m.Id != 0xabcd || !m.Response {
		t.Errorf("FORMERR reply: %v", m)
	}

	// NOTIMP echoes the opcode and the question.
	notimp := rawQuery(2<<11|FlagRD, 1, 0, 0, 0, qWWW)
	err = ParseQuery(notimp, &q)
	rc, _ = err.(Error).Rcode()
	out = AppendResponse(nil, notimp, &q, &Answer{Rcode: rc}, 512)
	m = unpack(t, out)
	if m.Rcode != dns.RcodeNotImplemented || m.Opcode != 2 || len(m.Question) != 1 {
		t.Errorf("NOTIMP reply: %v", m)
	}
}

func TestAppendQuery(t *testing.T) {
	name := wireName(t, "target.example.org.")
	out := AppendQuery(nil, 77, FlagRD|FlagCD, name, dns.TypeAAAA, 1232, true)
	m := unpack(t, out)
	if m.Id != 77 || !m.RecursionDesired || !m.CheckingDisabled || m.Response || len(m.Question) != 1 ||
		m.Question[0] != (dns.Question{Name: "target.example.org.", Qtype: dns.TypeAAAA, Qclass: dns.ClassINET}) {
		t.Errorf("query: %v", m)
	}
	if opt := m.IsEdns0(); opt == nil || opt.UDPSize() != 1232 || !opt.Do() {
		t.Errorf("OPT = %v", opt)
	}
	var q Query
	if err := ParseQuery(out, &q); err != nil || !bytes.Equal(q.Name(), name) {
		t.Errorf("reparse: %v %q", err, q.Name())
	}
	if m := unpack(t, AppendQuery(nil, 1, 0, name, dns.TypeA, 0, false)); m.IsEdns0() != nil {
		t.Errorf("OPT without ednsSize")
	}
}

func TestAppendResponseAllocs(t *testing.T) {
	qm := query("web.default.svc.cluster.local.", dns.TypeA)
	qm.SetEdns0(1232, false)
	msg := pack(t, qm)
	var q Query
	if err := ParseQuery(msg, &q); err != nil {
		t.Fatal(err)
	}
	a := Answer{AA: true, Records: recordsFor(t, "web.default.svc.cluster.local.", "web.default.svc.cluster.local. 5 IN A 10.0.0.1"), An: 1}
	buf := make([]byte, 0, 1232)
	if n := testing.AllocsPerRun(100, func() { _ = AppendResponse(buf, msg, &q, &a, 1232) }); n != 0 {
		t.Errorf("AppendResponse allocates %v times", n)
	}
}

func TestPatch(t *testing.T) {
	msg := pack(t, query("a.example.", dns.TypeA))
	SetID(msg, 0xbeef)
	SetTC(msg)
	if ID(msg) != 0xbeef || Flags(msg)&FlagTC == 0 || Rcode(msg) != 0 {
		t.Errorf("patched header %x", msg[:12])
	}
	qd, an, ns, ar := Counts(msg)
	if qd != 1 || an != 0 || ns != 0 || ar != 0 {
		t.Errorf("counts %d %d %d %d", qd, an, ns, ar)
	}
	m := unpack(t, msg)
	if m.Id != 0xbeef || !m.Truncated {
		t.Errorf("unpacked %v", m.MsgHdr)
	}
	short := []byte{1, 2, 3}
	SetID(short, 1)
	SetTC(short)
	if !bytes.Equal(short, []byte{1, 2, 3}) || ID(short) != 0 || Flags(short) != 0 {
		t.Errorf("patched a short message: %v", short)
	}
	if qd, _, _, _ := Counts(short); qd != 0 {
		t.Errorf("Counts of short message")
	}
}
