package upstream

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/miekg/dns"
)

func TestQuestionEnd(t *testing.T) {
	q := packQuery(t, "api.example.com.", dns.TypeA, 1232) // with an OPT record after the question
	end, err := questionEnd(q)
	if err != nil {
		t.Fatal(err)
	}
	if want := 12 + len("\x03api\x07example\x03com\x00") + 4; end != want {
		t.Errorf("questionEnd = %d, want %d", end, want)
	}
	root := packQuery(t, ".", dns.TypeNS, 0)
	if end, err := questionEnd(root); err != nil || end != 12+1+4 {
		t.Errorf("root: %d, %v", end, err)
	}
	long := append(bytes.Clone(q[:12]), bytes.Repeat([]byte{63}, 1)...)
	for range 4 {
		long = append(long, bytes.Repeat([]byte{'a'}, 63)...)
		long = append(long, 63)
	}
	long = append(long[:len(long)-1], 0, 0, 1, 0, 1)
	if _, err := questionEnd(long); err != errNameLength {
		t.Errorf("256-byte name: err = %v, want errNameLength", err)
	}
}

func TestMatches(t *testing.T) {
	query := packQuery(t, "Api.Example.com.", dns.TypeA, 0)
	end, _ := questionEnd(query)
	q := query[headerLen:end]
	reply := func(edit func(m *dns.Msg)) []byte {
		m := new(dns.Msg)
		m.SetQuestion("Api.Example.com.", dns.TypeA)
		m.Id = 7
		m.Response = true
		if edit != nil {
			edit(m)
		}
		b, err := m.Pack()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, tc := range []struct {
		name  string
		reply []byte
		want  bool
	}{
		{"same", reply(nil), true},
		{"other case", reply(func(m *dns.Msg) { m.Question[0].Name = "aPI.eXAMPLE.COM." }), true},
		{"with answer", reply(func(m *dns.Msg) {
			rr, _ := dns.NewRR("api.example.com. 60 IN A 192.0.2.1")
			m.Answer = append(m.Answer, rr)
		}), true},
		{"wrong ID", reply(func(m *dns.Msg) { m.Id = 8 }), false},
		{"not a response", reply(func(m *dns.Msg) { m.Response = false }), false},
		{"other name, same length", reply(func(m *dns.Msg) { m.Question[0].Name = "Apx.Example.com." }), false},
		{"longer name", reply(func(m *dns.Msg) { m.Question[0].Name = "x.Api.Example.com." }), false},
		{"other type", reply(func(m *dns.Msg) { m.Question[0].Qtype = dns.TypeAAAA }), false},
		{"other class", reply(func(m *dns.Msg) { m.Question[0].Qclass = dns.ClassCHAOS }), false},
		{"no question", reply(func(m *dns.Msg) { m.Question = nil }), false},
		{"two questions", reply(func(m *dns.Msg) { m.Question = append(m.Question, m.Question[0]) }), false},
		{"header only", reply(nil)[:headerLen], false},
	} {
		if got := matches(tc.reply, 7, q); got != tc.want {
			t.Errorf("%s: matches = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func FuzzQuestionEnd(f *testing.F) {
	f.Add(packQuery(f, "api.example.com.", dns.TypeA, 0))
	f.Add(packQuery(f, ".", dns.TypeNS, 4096))
	f.Add([]byte{0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xC0, 12, 0, 1, 0, 1})
	f.Add([]byte{0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 3, 'a'})
	f.Fuzz(func(t *testing.T, msg []byte) {
		end, err := questionEnd(msg)
		if err != nil {
			return
		}
		if end < headerLen+5 || end > len(msg) {
			t.Fatalf("end %d out of range for %d bytes", end, len(msg))
		}
		// A message whose question parses must match a reply that echoes
		// it, with the QR bit set.
		reply := bytes.Clone(msg[:end])
		reply[2] |= 0x80
		binary.BigEndian.PutUint16(reply, 42)
		if !matches(reply, 42, msg[headerLen:end]) {
			t.Fatalf("echoed question does not match: %x", msg[:end])
		}
	})
}

func FuzzMatches(f *testing.F) {
	query := packQuery(f, "api.example.com.", dns.TypeA, 0)
	f.Add(query)
	f.Add(append([]byte{}, query...))
	f.Fuzz(func(t *testing.T, reply []byte) {
		end, _ := questionEnd(query)
		matches(reply, 0xBEEF, query[headerLen:end]) // must not panic
	})
}
