package dnswire

import (
	"bytes"
	"testing"

	"github.com/miekg/dns"
)

// reply builds a response to name/qtype with the given records
// (zone-file syntax), compressed as real servers send it.
func reply(t testing.TB, name string, qtype uint16, rcode int, an, ns, ar []string, edns bool) *dns.Msg {
	t.Helper()
	m := query(name, qtype)
	m.Response, m.RecursionAvailable, m.Rcode, m.Compress = true, true, rcode, true
	for _, sec := range []struct {
		to  *[]dns.RR
		rrs []string
	}{{&m.Answer, an}, {&m.Ns, ns}, {&m.Extra, ar}} {
		for _, s := range sec.rrs {
			rr, err := dns.NewRR(s)
			if err != nil {
				t.Fatal(err)
			}
			*sec.to = append(*sec.to, rr)
		}
	}
	if edns {
		m.SetEdns0(4096, true)
	}
	return m
}

func TestParseReply(t *testing.T) {
	good := reply(t, "www.example.com.", dns.TypeA, 0,
		[]string{"www.example.com. 300 IN CNAME web.example.com.", "web.example.com. 60 IN A 192.0.2.1"},
		[]string{"example.com. 60 IN NS ns1.example.com."},
		[]string{"ns1.example.com. 60 IN A 192.0.2.53"}, true)
	goodMsg := pack(t, good)

	// An OPT record in the middle of the additional section: what follows
	// it is dropped.
	mid := reply(t, "www.example.com.", dns.TypeA, 0, []string{"www.example.com. 60 IN A 192.0.2.1"}, nil,
		[]string{"a.example.com. 60 IN A 192.0.2.2"}, false)
	opt := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT, Class: 1232, Ttl: 1 << 24}} // extended rcode 1<<4
	b, _ := dns.NewRR("b.example.com. 60 IN A 192.0.2.3")
	mid.Extra = append(mid.Extra, opt, b)
	mid.Compress = false
	mid.Rcode = dns.RcodeBadVers // miekg puts the upper bits in the OPT record
	midMsg := pack(t, mid)

	optInAnswer := reply(t, "www.example.com.", dns.TypeA, 0, nil, nil, nil, false)
	optInAnswer.Answer = append(optInAnswer.Answer, opt)
	optInAnswer.Compress = false

	tests := []struct {
		name string
		msg  []byte
		err  error
		want Reply
	}{
		{"answer, authority, additional, OPT", goodMsg, nil, Reply{
			Flags: 0x8180, Rcode: 0, QEnd: 33, End: len(goodMsg) - OPTLen, An: 2, Ns: 1, Ar: 1, EDNS: true}},
		{"records after OPT dropped, extended rcode", midMsg, nil, Reply{
			Flags: 0x8180, Rcode: 16, QEnd: 33, End: 33 + 31 + 29, An: 1, Ar: 1, EDNS: true}},
		{"short", goodMsg[:11], ErrShortHeader, Reply{}},
		{"query", pack(t, query("a.", dns.TypeA)), ErrNotResponse, Reply{}},
		{"truncated record", goodMsg[:40], ErrTruncated, Reply{}},
		{"truncated question", goodMsg[:30], ErrTruncated, Reply{}},
		{"OPT in answer", pack(t, optInAnswer), ErrBadOPT, Reply{}},
		{"qdcount 0", append([]byte{0, 0, 0x81, 0x80}, make([]byte, 8)...), ErrQDCount, Reply{}},
		{"compressed question", []byte{0, 0, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0, 0xC0, 12, 0, 1, 0, 1}, ErrCompressedQuestion, Reply{}},
		{"bad label", []byte{0, 0, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0, 0x40, 12, 0, 1, 0, 1}, ErrLabel, Reply{}},
		{"OPT not owned by root", []byte{0, 0, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 1,
			1, 'a', 0, 0, 41, 0, 0, 0, 0, 0, 0, 0, 0}, ErrBadOPT, Reply{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var l Reply
			err := ParseReply(tt.msg, &l)
			if err != tt.err {
				t.Fatalf("err %v, want %v", err, tt.err)
			}
			if err == nil && l != tt.want {
				t.Errorf("layout %+v, want %+v", l, tt.want)
			}
		})
	}
	// The kept part of mid unpacks, without the record after the OPT.
	var l Reply
	if err := ParseReply(midMsg, &l); err != nil {
		t.Fatal(err)
	}
	kept := bytes.Clone(midMsg[:l.End])
	kept[11] = byte(l.Ar)
	m := unpack(t, kept)
	if len(m.Extra) != 1 || m.Extra[0].Header().Name != "a.example.com." {
		t.Errorf("kept additional %v", m.Extra)
	}
}

func TestAppendRelay(t *testing.T) {
	up := reply(t, "www.example.com.", dns.TypeA, dns.RcodeSuccess,
		[]string{"www.example.com. 300 IN CNAME web.example.com.", "web.example.com. 60 IN A 192.0.2.1"}, nil, nil, true)
	up.AuthenticatedData = true
	up.Id = 0x9999
	upMsg := pack(t, up)
	var l Reply
	if err := ParseReply(upMsg, &l); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		edns   bool
		do, ad bool
		rd     bool
		wantAD bool
	}{
		{"plain query: OPT removed, AD cleared", false, false, false, true, false},
		{"EDNS without DO: our OPT, AD cleared", true, false, false, true, false},
		{"DO: AD kept", true, true, false, true, true},
		{"AD in query: AD kept", false, false, true, true, true},
		{"RD 0 copied", false, false, false, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			qm := query("WWW.example.COM.", dns.TypeA)
			qm.Id, qm.RecursionDesired, qm.AuthenticatedData = 0x4242, tt.rd, tt.ad
			if tt.edns {
				qm.SetEdns0(512, tt.do)
			}
			msg := pack(t, qm)
			var q Query
			if err := ParseQuery(msg, &q); err != nil {
				t.Fatal(err)
			}
			prefix := []byte("xx")
			out, ok := AppendRelay(prefix, msg, &q, upMsg, &l, 1232)
			if !ok || !bytes.Equal(out[:2], prefix) {
				t.Fatalf("AppendRelay: %v", ok)
			}
			m := unpack(t, out[2:])
			if m.Id != 0x4242 || !m.Response || m.RecursionDesired != tt.rd || !m.RecursionAvailable || m.AuthenticatedData != tt.wantAD {
				t.Errorf("header %+v", m.MsgHdr)
			}
			if m.Question[0].Name != "WWW.example.COM." {
				t.Errorf("question %v: case not the query's", m.Question[0])
			}
			if len(m.Answer) != 2 || m.Answer[1].(*dns.A).A.String() != "192.0.2.1" {
				t.Errorf("answer %v", m.Answer)
			}
			opt := m.IsEdns0()
			if (opt != nil) != tt.edns {
				t.Fatalf("OPT %v, query EDNS %v", opt, tt.edns)
			}
			if opt != nil && (opt.UDPSize() != 1232 || opt.Do() != tt.do) {
				t.Errorf("OPT %v", opt)
			}
		})
	}
	t.Run("different question length", func(t *testing.T) {
		msg := pack(t, query("www.example.org.uk.", dns.TypeA))
		var q Query
		if err := ParseQuery(msg, &q); err != nil {
			t.Fatal(err)
		}
		if out, ok := AppendRelay(nil, msg, &q, upMsg, &l, 0); ok || len(out) != 0 {
			t.Errorf("relayed to another question: %x", out)
		}
	})
	t.Run("extended rcode needs the OPT", func(t *testing.T) {
		ext := l
		ext.Rcode = RcodeBadVers
		qm := query("www.example.com.", dns.TypeA)
		qm.SetEdns0(1232, false)
		msg := pack(t, qm)
		var q Query
		if err := ParseQuery(msg, &q); err != nil {
			t.Fatal(err)
		}
		out, _ := AppendRelay(nil, msg, &q, upMsg, &ext, 0)
		if m := unpack(t, out); m.Rcode != dns.RcodeBadVers {
			t.Errorf("rcode %d", m.Rcode)
		}
	})
}

func TestTTLPatches(t *testing.T) {
	m := reply(t, "www.example.com.", dns.TypeA, 0,
		[]string{"www.example.com. 300 IN CNAME web.example.com.", "web.example.com. 20 IN A 192.0.2.1"},
		[]string{"example.com. 7 IN NS ns1.example.com."}, nil, true)
	msg := pack(t, m)
	var l Reply
	if err := ParseReply(msg, &l); err != nil {
		t.Fatal(err)
	}
	ttls := func(b []byte) []uint32 {
		var out []uint32
		m := unpack(t, b)
		for _, rr := range append(append(m.Answer, m.Ns...), m.Extra...) {
			if rr.Header().Rrtype != dns.TypeOPT {
				out = append(out, rr.Header().Ttl)
			}
		}
		return out
	}
	optTTL := func(b []byte) uint32 { return unpack(t, b).IsEdns0().Hdr.Ttl }
	wantOPT := optTTL(msg) // the DO bit: never touched
	all := l.Records() + 1 // the OPT record too: skipped
	for _, tt := range []struct {
		name  string
		patch func(b []byte) (int, error)
		want  []uint32
	}{
		{"sub", func(b []byte) (int, error) { return SubTTLs(b, l.QEnd, all, 10) }, []uint32{290, 10, 0, wantOPT}},
		{"set", func(b []byte) (int, error) { return SetTTLs(b, l.QEnd, all, 30) }, []uint32{30, 30, 30, wantOPT}},
		{"clamp", func(b []byte) (int, error) { return ClampTTLs(b, l.QEnd, all, 25) }, []uint32{25, 20, 7, wantOPT}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := bytes.Clone(msg)
			end, err := tt.patch(b)
			if err != nil || end != len(b) {
				t.Fatalf("end %d of %d, %v", end, len(b), err)
			}
			got := append(ttls(b), optTTL(b))
			if len(got) != len(tt.want) {
				t.Fatalf("TTLs %v, want %v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Fatalf("TTLs %v, want %v", got, tt.want)
				}
			}
		})
	}
	if _, err := SubTTLs(msg[:l.QEnd+5], l.QEnd, 1, 1); err == nil {
		t.Error("truncated record patched")
	}
}

func TestRelayAllocs(t *testing.T) {
	up := pack(t, reply(t, "www.example.com.", dns.TypeA, 0, []string{"www.example.com. 60 IN A 192.0.2.1"}, nil, nil, true))
	qm := query("www.example.com.", dns.TypeA)
	qm.SetEdns0(1232, false)
	msg := pack(t, qm)
	var q Query
	var l Reply
	if ParseQuery(msg, &q) != nil || ParseReply(up, &l) != nil {
		t.Fatal("parse")
	}
	buf := make([]byte, 0, 512)
	if n := testing.AllocsPerRun(100, func() {
		_ = ParseReply(up, &l)
		out, _ := AppendRelay(buf, msg, &q, up, &l, 0)
		_, _ = SubTTLs(out, l.QEnd, l.Records(), 1)
	}); n != 0 {
		t.Errorf("%v allocations", n)
	}
}

// FuzzRelay checks that arbitrary replies never make ParseReply,
// AppendRelay or the TTL patches panic, and that a relayed reply always
// carries the query's ID and question.
func FuzzRelay(f *testing.F) {
	f.Add(pack(f, reply(f, "www.example.com.", dns.TypeA, 0,
		[]string{"www.example.com. 300 IN CNAME web.example.com.", "web.example.com. 20 IN A 192.0.2.1"},
		[]string{"example.com. 7 IN SOA ns1.example.com. h.example.com. 1 2 3 4 5"},
		[]string{"ns1.example.com. 60 IN A 192.0.2.53"}, true)), uint32(3))
	f.Add([]byte{0, 0, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 1, 0, 0, 1, 0, 1, 0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4, 1, 2, 3, 4,
		0, 0, 41, 4, 0, 0, 0, 0x80, 0, 0, 0}, uint32(1))
	f.Fuzz(func(t *testing.T, up []byte, age uint32) {
		var l Reply
		if err := ParseReply(up, &l); err != nil {
			if _, ok := err.(Error); !ok {
				t.Fatalf("error of type %T", err)
			}
			return
		}
		if l.QEnd > l.End || l.End > len(up) {
			t.Fatalf("layout %+v of %d octets", l, len(up))
		}
		b := bytes.Clone(up)
		if end, err := SubTTLs(b, l.QEnd, l.Records(), age); err != nil || end != l.End {
			t.Fatalf("SubTTLs over the kept records: end %d, %v; layout %+v", end, err, l)
		}
		_, _ = ClampTTLs(bytes.Clone(up), 0, 3, age) // from anywhere: an error, never a panic
		// Relay to a query for the reply's own question.
		qmsg := append([]byte{0xAB, 0xCD, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0}, up[HeaderLen:l.QEnd]...)
		var q Query
		if ParseQuery(qmsg, &q) != nil {
			return
		}
		out, ok := AppendRelay(nil, qmsg, &q, b, &l, 0)
		if !ok {
			t.Fatal("relay to the same question refused")
		}
		if ID(out) != 0xABCD || !bytes.Equal(out[HeaderLen:q.QEnd], qmsg[HeaderLen:q.QEnd]) || Flags(out)&FlagQR == 0 {
			t.Fatalf("relayed %x", out)
		}
	})
}

func BenchmarkAppendRelay(b *testing.B) {
	up := pack(b, reply(b, "api.example.com.", dns.TypeA, 0,
		[]string{"api.example.com. 60 IN A 192.0.2.10", "api.example.com. 60 IN A 192.0.2.11"}, nil, nil, true))
	qm := query("api.example.com.", dns.TypeA)
	qm.SetEdns0(1232, false)
	msg := pack(b, qm)
	var q Query
	var l Reply
	if ParseQuery(msg, &q) != nil || ParseReply(up, &l) != nil {
		b.Fatal("parse")
	}
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		out, _ := AppendRelay(buf, msg, &q, up, &l, 0)
		_, _ = SubTTLs(out, l.QEnd, l.Records(), 1)
	}
}
