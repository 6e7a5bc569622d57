package dnswire

import (
	"bytes"
	"testing"

	"github.com/miekg/dns"
)

func asciiLower(b []byte) []byte {
	out := make([]byte, len(b))
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		out[i] = c
	}
	return out
}

func addQuerySeeds(f *testing.F) {
	m := query("WwW.Example.COM.", dns.TypeA)
	f.Add(pack(f, m))
	m.SetEdns0(1232, true)
	f.Add(pack(f, m))
	m = query("a.b.", dns.TypeTXT)
	m.SetEdns0(4096, false)
	m.IsEdns0().Option = append(m.IsEdns0().Option, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"})
	rr, _ := dns.NewRR("a.b. 5 IN A 10.0.0.1")
	m.Answer = append(m.Answer, rr)
	f.Add(pack(f, m))
	f.Add(rawQuery(0x0100, 1, 0, 0, 2, qWWW, optRR, optRR2))
	f.Add(rawQuery(0x0100, 1, 0, 0, 0, []byte{1, 'a', 0xC0, 12, 0, 1, 0, 1}))
	f.Add(rawQuery(2<<11, 1, 0, 0, 0, qWWW))
	f.Add(rawQuery(0x0100, 1, 0, 0, 1, qWWW, []byte{0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 5, 0, 10, 0, 8, 1}))
	f.Add([]byte{1, 2, 3})
}

// FuzzParseQuery checks that ParseQuery never panics, that what it returns
// is consistent, that a reply built from it always unpacks, and that it
// agrees with miekg/dns on every message both accept.
func FuzzParseQuery(f *testing.F) {
	addQuerySeeds(f)
	f.Fuzz(func(t *testing.T, msg []byte) {
		var q Query
		err := ParseQuery(msg, &q)
		rcode := RcodeSuccess
		if err != nil {
			e, ok := err.(Error)
			if !ok {
				t.Fatalf("error of type %T", err)
			}
			var reply bool
			if rcode, reply = e.Rcode(); !reply {
				return
			}
		}
		if q.QEnd != 0 {
			name := q.Name()
			if q.QEnd > len(msg) || len(name) == 0 || len(name) > MaxNameLen || name[len(name)-1] != 0 {
				t.Fatalf("QEnd %d, name %q", q.QEnd, name)
			}
			if !bytes.Equal(name, asciiLower(msg[HeaderLen:HeaderLen+len(name)])) {
				t.Fatalf("name %q is not the lowercased question %q", name, msg[HeaderLen:HeaderLen+len(name)])
			}
		}
		if q.EDNS && q.Version > 0 {
			rcode = RcodeBadVers
		}
		// Any reply we build must unpack and echo the question.
		out := AppendResponse(make([]byte, 0, 512), msg, &q, &Answer{Rcode: rcode}, 512)
		var r dns.Msg
		if err := r.Unpack(out); err != nil {
			t.Fatalf("reply does not unpack: %v\n%x", err, out)
		}
		if r.Id != q.ID || !r.Response || (len(r.Question) == 1) != (q.QEnd != 0) || (r.IsEdns0() != nil) != q.EDNS {
			t.Fatalf("reply %v for query %+v", r, q)
		}
		if err != nil {
			return
		}
		var m dns.Msg
		if m.Unpack(msg) != nil || len(m.Question) != 1 {
			return // miekg/dns is stricter about RDATA; nothing to compare
		}
		mq := m.Question[0]
		if m.Id != q.ID || int(m.Opcode) != int(q.Opcode()) || m.RecursionDesired != q.RD() || m.CheckingDisabled != q.CD() ||
			mq.Qtype != q.Type || mq.Qclass != q.Class {
			t.Fatalf("header/question differ: miekg %v %v, ours %+v", m.MsgHdr, mq, q)
		}
		buf := make([]byte, 512)
		n, perr := dns.PackDomainName(mq.Name, buf, 0, nil, false)
		if perr != nil {
			t.Fatalf("miekg name %q does not repack: %v", mq.Name, perr)
		}
		if !bytes.Equal(asciiLower(buf[:n]), q.Name()) {
			t.Fatalf("name: miekg %q (%q), ours %q", mq.Name, buf[:n], q.Name())
		}
		opt := m.IsEdns0()
		if (opt != nil) != q.EDNS {
			t.Fatalf("EDNS: miekg %v, ours %v", opt, q.EDNS)
		}
		if opt != nil && (opt.UDPSize() != q.UDPSize || opt.Do() != q.DO || opt.Version() != q.Version) {
			t.Fatalf("OPT: miekg %v, ours size %d do %v version %d", opt, q.UDPSize, q.DO, q.Version)
		}
	})
}

// FuzzAppendRRExpanded checks that expanding a record never panics, that
// the copy stands alone, and that it reads like the original in miekg/dns.
func FuzzAppendRRExpanded(f *testing.F) {
	m := new(dns.Msg)
	m.SetQuestion("www.example.com.", dns.TypeA)
	m.Compress = true
	for _, s := range []string{
		"www.example.com. 300 IN CNAME web.example.com.",
		"example.com. 60 IN SOA ns1.example.com. hostmaster.example.com. 1 2 3 4 5",
		"_http._tcp.example.com. 60 IN SRV 1 2 80 web.example.com.",
		"example.com. 60 IN MX 10 mail.example.com.",
	} {
		rr, _ := dns.NewRR(s)
		m.Answer = append(m.Answer, rr)
	}
	msg := pack(f, m)
	f.Add(msg, uint16(33))
	f.Add([]byte{1, 'a', 0xC0, 0, 0, 5, 0, 1, 0, 0, 0, 1, 0, 2, 0xC0, 0}, uint16(0))
	f.Fuzz(func(t *testing.T, msg []byte, off16 uint16) {
		off := int(off16)
		if off > len(msg) {
			return
		}
		out, next, err := AppendRRExpanded([]byte("x"), msg, off)
		if err != nil {
			if string(out) != "x" {
				t.Fatalf("dst changed on error: %q", out)
			}
			return
		}
		out = out[1:]
		if next <= off || next > len(msg) {
			t.Fatalf("next %d for off %d len %d", next, off, len(msg))
		}
		rr, end, err := ReadRR(out, 0)
		if err != nil || end != len(out) || out[0]&0xC0 != 0 {
			t.Fatalf("copy %x does not read back: %v, end %d", out, err, end)
		}
		if orr, onext, err := ReadRR(msg, off); err != nil || onext != next || orr.Type != rr.Type || orr.TTL != rr.TTL {
			t.Fatalf("original reads as %+v (next %d, %v), copy as %+v", orr, onext, err, rr)
		}
		switch rr.Type {
		case TypeA, TypeAAAA, TypeCNAME, TypeNS, TypePTR, TypeMX, TypeSRV, TypeSOA, TypeTXT:
		default:
			return
		}
		orig, _, err1 := dns.UnpackRR(msg, off)
		cp, _, err2 := dns.UnpackRR(out, 0)
		if err1 != nil || err2 != nil {
			if (err1 == nil) != (err2 == nil) && err1 == nil {
				t.Fatalf("miekg reads the original (%v) but not the copy: %v", orig, err2)
			}
			return
		}
		if orig.String() != cp.String() {
			t.Fatalf("copy %q differs from original %q", cp, orig)
		}
	})
}
