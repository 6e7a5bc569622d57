package dnswire

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// pack packs m or fails the test.
func pack(t testing.TB, m *dns.Msg) []byte {
	t.Helper()
	b, err := m.Pack()
	if err != nil {
		t.Fatalf("pack: %v", err)
	}
	return b
}

func query(name string, qtype uint16) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.Id = 0x1234
	return m
}

// wireName returns the wire form of a presentation name.
func wireName(t testing.TB, name string) []byte {
	t.Helper()
	b := make([]byte, 256)
	n, err := dns.PackDomainName(dns.Fqdn(name), b, 0, nil, false)
	if err != nil {
		t.Fatalf("PackDomainName(%q): %v", name, err)
	}
	return b[:n]
}

// rawQuery builds a query header with the given flags and counts followed by
// body.
func rawQuery(flags, qd, an, ns, ar uint16, body ...[]byte) []byte {
	b := []byte{0xab, 0xcd, byte(flags >> 8), byte(flags), byte(qd >> 8), byte(qd),
		byte(an >> 8), byte(an), byte(ns >> 8), byte(ns), byte(ar >> 8), byte(ar)}
	for _, p := range body {
		b = append(b, p...)
	}
	return b
}

var (
	qWWW   = []byte("\x03www\x07example\x03com\x00\x00\x01\x00\x01")
	optRR  = []byte{0, 0, 41, 0x10, 0, 0, 0, 0x80, 0, 0, 0} // 4096, DO
	optRR2 = []byte{0, 0, 41, 0x02, 0, 0, 0, 0, 0, 0, 0}    // 512
)

func TestParseQueryGood(t *testing.T) {
	tests := []struct {
		name     string
		msg      func(t *testing.T) []byte
		wantName string
		qtype    uint16
		edns     bool
		udpSize  uint16
		do       bool
		version  uint8
	}{
		{
			name:     "plain, case folded",
			msg:      func(t *testing.T) []byte { return pack(t, query("WwW.ExAmPle.COM.", dns.TypeA)) },
			wantName: "www.example.com.", qtype: dns.TypeA,
		},
		{
			name: "edns do",
			msg: func(t *testing.T) []byte {
				m := query("kubernetes.default.svc.cluster.local.", dns.TypeAAAA)
				m.SetEdns0(1232, true)
				return pack(t, m)
			},
			wantName: "kubernetes.default.svc.cluster.local.", qtype: dns.TypeAAAA, edns: true, udpSize: 1232, do: true,
		},
		{
			name: "edns version 1 with options, after answer and authority records",
			msg: func(t *testing.T) []byte {
				m := query("a.b.", dns.TypeTXT)
				rr, _ := dns.NewRR("a.b. 5 IN A 10.0.0.1")
				m.Answer = append(m.Answer, rr)
				rr2, _ := dns.NewRR("b. 5 IN NS ns.b.")
				m.Ns = append(m.Ns, rr2)
				m.SetEdns0(4096, false)
				opt := m.IsEdns0()
				opt.SetVersion(1)
				opt.Option = append(opt.Option, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"})
				return pack(t, m)
			},
			wantName: "a.b.", qtype: dns.TypeTXT, edns: true, udpSize: 4096, version: 1,
		},
		{
			name:     "root",
			msg:      func(t *testing.T) []byte { return pack(t, query(".", dns.TypeNS)) },
			wantName: ".", qtype: dns.TypeNS,
		},
		{
			name:     "name of 255 octets",
			msg:      func(t *testing.T) []byte { return pack(t, query(longName(255), dns.TypeA)) },
			wantName: longName(255), qtype: dns.TypeA,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg := tt.msg(t)
			var q Query
			if err := ParseQuery(msg, &q); err != nil {
				t.Fatalf("ParseQuery: %v", err)
			}
			if want := wireName(t, strings.ToLower(tt.wantName)); !bytes.Equal(q.Name(), want) {
				t.Errorf("Name = %q, want %q", q.Name(), want)
			}
			if q.ID != 0x1234 || !q.RD() || q.Opcode() != 0 {
				t.Errorf("header: id %#x rd %v opcode %d", q.ID, q.RD(), q.Opcode())
			}
			if q.Type != tt.qtype || q.Class != ClassIN {
				t.Errorf("type/class = %d/%d", q.Type, q.Class)
			}
			if q.EDNS != tt.edns || q.UDPSize != tt.udpSize || q.DO != tt.do || q.Version != tt.version {
				t.Errorf("edns = %v size %d do %v version %d", q.EDNS, q.UDPSize, q.DO, q.Version)
			}
			if got, want := q.QEnd, HeaderLen+len(q.Name())+4; got != want {
				t.Errorf("QEnd = %d, want %d", got, want)
			}
		})
	}
}

// longName returns a presentation name whose wire form is n octets long.
func longName(n int) string {
	var sb strings.Builder
	left := n - 1 // root
	for left > 0 {
		l := min(63, left-1)
		if left-(l+1) == 1 { // cannot leave a 1-octet gap (an empty label)
			l--
		}
		sb.WriteString(strings.Repeat("A", l))
		sb.WriteByte('.')
		left -= l + 1
	}
	if sb.Len() == 0 {
		return "."
	}
	return sb.String()
}

func TestParseQueryErrors(t *testing.T) {
	label64 := append([]byte{64}, bytes.Repeat([]byte("a"), 64)...)
	tests := []struct {
		name      string
		msg       []byte
		want      Error
		wantQEnd  bool // the question was parsed
		wantRcode uint16
		wantReply bool
	}{
		{"empty", nil, ErrShortHeader, false, 0, false},
		{"truncated header", rawQuery(0x0100, 1, 0, 0, 0)[:11], ErrShortHeader, false, 0, false},
		{"response", rawQuery(0x8100, 1, 0, 0, 0, qWWW), ErrResponse, false, 0, false},
		{"opcode status", rawQuery(2<<11, 1, 0, 0, 0, qWWW), ErrOpcode, true, RcodeNotImplemented, true},
		{"opcode notify with qdcount 0", rawQuery(4<<11, 0, 0, 0, 0), ErrOpcode, false, RcodeNotImplemented, true},
		{"opcode update bad question", rawQuery(5<<11, 1, 0, 0, 0, []byte{0xC0, 12}), ErrOpcode, false, RcodeNotImplemented, true},
		{"qdcount 0", rawQuery(0x0100, 0, 0, 0, 0), ErrQDCount, false, RcodeFormatError, true},
		{"qdcount 2", rawQuery(0x0100, 2, 0, 0, 0, qWWW, qWWW), ErrQDCount, false, RcodeFormatError, true},
		{"no question bytes", rawQuery(0x0100, 1, 0, 0, 0), ErrTruncated, false, RcodeFormatError, true},
		{"label past end", rawQuery(0x0100, 1, 0, 0, 0, []byte{5, 'a', 'b'}), ErrTruncated, false, RcodeFormatError, true},
		{"no root label", rawQuery(0x0100, 1, 0, 0, 0, []byte{1, 'a'}), ErrTruncated, false, RcodeFormatError, true},
		{"type missing", rawQuery(0x0100, 1, 0, 0, 0, []byte{1, 'a', 0, 0, 1, 0}), ErrTruncated, false, RcodeFormatError, true},
		{"label 64", rawQuery(0x0100, 1, 0, 0, 0, label64, []byte{0, 0, 1, 0, 1}), ErrLabel, false, RcodeFormatError, true},
		{"extended label type", rawQuery(0x0100, 1, 0, 0, 0, []byte{0x41, 0, 0, 0, 1, 0, 1}), ErrLabel, false, RcodeFormatError, true},
		{"compressed question", rawQuery(0x0100, 1, 0, 0, 0, []byte{1, 'a', 0xC0, 12, 0, 1, 0, 1}), ErrCompressedQuestion, false, RcodeFormatError, true},
		{"pointer as whole name", rawQuery(0x0100, 1, 0, 0, 0, []byte{0xC0, 12, 0, 1, 0, 1}), ErrCompressedQuestion, false, RcodeFormatError, true},
		{"name 256 octets", rawQuery(0x0100, 1, 0, 0, 0, nameOfLen(256), []byte{0, 1, 0, 1}), ErrNameTooLong, false, RcodeFormatError, true},
		{"answer count past end", rawQuery(0x0100, 1, 1, 0, 0, qWWW), ErrTruncated, true, RcodeFormatError, true},
		{"rdata past end", rawQuery(0x0100, 1, 1, 0, 0, qWWW, []byte{0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4, 1, 2}), ErrTruncated, true, RcodeFormatError, true},
		{"two OPT", rawQuery(0x0100, 1, 0, 0, 2, qWWW, optRR, optRR2), ErrMultipleOPT, true, RcodeFormatError, true},
		// Names of skipped records: a pointer to itself, past the end, and a backward one into a forward one.
		{"answer owner points at itself", rawQuery(0x0100, 1, 1, 0, 0, qWWW, []byte{0xC0, byte(12 + len(qWWW)), 0, 1, 0, 1, 0, 0, 0, 0, 0, 0}), ErrPointer, true, RcodeFormatError, true},
		{"additional owner past the end", rawQuery(0x0100, 1, 0, 0, 1, qWWW, []byte{0xC0, 0xFF, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0}), ErrPointer, true, RcodeFormatError, true},
		{"answer owner loops through rdata", rawQuery(0x0100, 1, 2, 0, 0, qWWW,
			[]byte{0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 2, 0xC0, byte(12 + len(qWWW) + 13)}, // rdata: a pointer to the next owner
			[]byte{0xC0, byte(12 + len(qWWW) + 11), 0, 1, 0, 1, 0, 0, 0, 0, 0, 0}), ErrPointer, true, RcodeFormatError, true},
		{"OPT not at root", rawQuery(0x0100, 1, 0, 0, 1, qWWW, []byte{1, 'x'}, optRR), ErrBadOPT, true, RcodeFormatError, true},
		{"OPT in answer section", rawQuery(0x0100, 1, 1, 0, 0, qWWW, optRR), ErrBadOPT, true, RcodeFormatError, true},
		{"OPT option past rdata", rawQuery(0x0100, 1, 0, 0, 1, qWWW, []byte{0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 5, 0, 10, 0, 8, 1}), ErrBadOPT, true, RcodeFormatError, true},
		{"OPT short option header", rawQuery(0x0100, 1, 0, 0, 1, qWWW, []byte{0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 2, 0, 10}), ErrBadOPT, true, RcodeFormatError, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var q Query
			err := ParseQuery(tt.msg, &q)
			var e Error
			if !errors.As(err, &e) || e != tt.want {
				t.Fatalf("ParseQuery = %v, want %v", err, tt.want)
			}
			if e.Error() == "" || strings.Contains(e.Error(), "unknown") {
				t.Errorf("no text for %d", e)
			}
			if (q.QEnd != 0) != tt.wantQEnd {
				t.Errorf("QEnd = %d, want question parsed %v", q.QEnd, tt.wantQEnd)
			}
			rc, reply := e.Rcode()
			if rc != tt.wantRcode || reply != tt.wantReply {
				t.Errorf("Rcode = %d, %v; want %d, %v", rc, reply, tt.wantRcode, tt.wantReply)
			}
		})
	}
}

// nameOfLen returns an uncompressed wire name of n octets (root included).
func nameOfLen(n int) []byte {
	var b []byte
	left := n - 1
	for left > 0 {
		l := min(63, left-1)
		if left-(l+1) == 1 {
			l--
		}
		b = append(b, byte(l))
		b = append(b, bytes.Repeat([]byte("x"), l)...)
		left -= l + 1
	}
	return append(b, 0)
}

func TestParseQueryReuse(t *testing.T) {
	// A Query reused after an EDNS query must not keep its OPT fields.
	var q Query
	m := query("a.example.", dns.TypeA)
	m.SetEdns0(4096, true)
	if err := ParseQuery(pack(t, m), &q); err != nil || !q.EDNS {
		t.Fatalf("ParseQuery = %v, EDNS %v", err, q.EDNS)
	}
	if err := ParseQuery(pack(t, query("b.example.", dns.TypeAAAA)), &q); err != nil {
		t.Fatal(err)
	}
	if q.EDNS || q.DO || q.UDPSize != 0 || string(q.Name()) != "\x01b\x07example\x00" || q.Type != dns.TypeAAAA {
		t.Errorf("stale fields: %+v", q)
	}
	if err := ParseQuery([]byte{1, 2, 3}, &q); err == nil || q.QEnd != 0 || len(q.Name()) != 0 {
		t.Errorf("short message left QEnd %d name %q", q.QEnd, q.Name())
	}
}

func TestUDPLimit(t *testing.T) {
	tests := []struct {
		edns bool
		size uint16
		max  int
		want int
	}{
		{false, 0, 1232, 512},
		{false, 4096, 1232, 512},
		{true, 0, 1232, 512},
		{true, 100, 1232, 512},
		{true, 800, 1232, 800},
		{true, 1232, 1232, 1232},
		{true, 4096, 1232, 1232},
		{true, 4096, 100, 512},
	}
	for _, tt := range tests {
		q := Query{EDNS: tt.edns, UDPSize: tt.size}
		if got := q.UDPLimit(tt.max); got != tt.want {
			t.Errorf("UDPLimit(edns %v size %d, max %d) = %d, want %d", tt.edns, tt.size, tt.max, got, tt.want)
		}
	}
}

func TestParseQueryAllocs(t *testing.T) {
	m := query("kubernetes.default.svc.cluster.local.", dns.TypeA)
	m.SetEdns0(1232, false)
	msg := pack(t, m)
	var q Query
	if n := testing.AllocsPerRun(100, func() {
		if err := ParseQuery(msg, &q); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("ParseQuery allocates %v times", n)
	}
	bad := rawQuery(0x0100, 2, 0, 0, 0)
	if n := testing.AllocsPerRun(100, func() { _ = ParseQuery(bad, &q) }); n != 0 {
		t.Errorf("failing ParseQuery allocates %v times", n)
	}
}

// Error replies carry an OPT when the query's was readable (RFC 6891 §7).
func TestParseQueryErrorEDNS(t *testing.T) {
	tests := []struct {
		name string
		msg  []byte
		err  Error
		edns bool
	}{
		{"bad options", rawQuery(0x0100, 1, 0, 0, 1, qWWW, []byte{0, 0, 41, 0x10, 0, 0, 0, 0x80, 0, 0, 2, 0, 10}), ErrBadOPT, true},
		{"two OPT", rawQuery(0x0100, 1, 0, 0, 2, qWWW, optRR, optRR2), ErrMultipleOPT, true},
		{"OPT not at root", rawQuery(0x0100, 1, 0, 0, 1, qWWW, []byte{1, 'x'}, optRR), ErrBadOPT, false},
		{"notimp with OPT", rawQuery(2<<11, 1, 0, 0, 1, qWWW, optRR), ErrOpcode, true},
	}
	for _, tt := range tests {
		var q Query
		if err := ParseQuery(tt.msg, &q); err != tt.err || q.EDNS != tt.edns {
			t.Errorf("%s: err %v EDNS %v, want %v %v", tt.name, err, q.EDNS, tt.err, tt.edns)
			continue
		}
		rc, _ := tt.err.Rcode()
		m := unpack(t, AppendResponse(nil, tt.msg, &q, &Answer{Rcode: rc}, 512))
		if (m.IsEdns0() != nil) != tt.edns || m.Rcode != int(rc) {
			t.Errorf("%s: reply rcode %d OPT %v", tt.name, m.Rcode, m.IsEdns0())
		}
	}
}
