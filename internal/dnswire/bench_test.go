package dnswire

import (
	"testing"

	"github.com/miekg/dns"
)

func BenchmarkParseQuery(b *testing.B) {
	m := query("api.example.com.test.svc.cluster.local.", dns.TypeA)
	m.SetEdns0(1232, false)
	msg := pack(b, m)
	var q Query
	b.ReportAllocs()
	for b.Loop() {
		if err := ParseQuery(msg, &q); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendResponse(b *testing.B) {
	m := query("web.default.svc.cluster.local.", dns.TypeA)
	m.SetEdns0(1232, false)
	msg := pack(b, m)
	var q Query
	if err := ParseQuery(msg, &q); err != nil {
		b.Fatal(err)
	}
	a := Answer{AA: true, An: 1, Records: recordsFor(b, "web.default.svc.cluster.local.", "web.default.svc.cluster.local. 5 IN A 10.0.0.1")}
	buf := make([]byte, 0, DefaultUDPSize)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendResponse(buf[:0], msg, &q, &a, DefaultUDPSize)
	}
}

func BenchmarkAppendRRExpanded(b *testing.B) {
	m := new(dns.Msg)
	m.SetQuestion("www.example.com.", dns.TypeA)
	m.Compress = true
	rr, _ := dns.NewRR("www.example.com. 300 IN CNAME web.example.com.")
	m.Answer = append(m.Answer, rr)
	msg := pack(b, m)
	off := HeaderLen + len("\x03www\x07example\x03com\x00") + 4
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, _, err = AppendRRExpanded(buf[:0], msg, off); err != nil {
			b.Fatal(err)
		}
	}
}
