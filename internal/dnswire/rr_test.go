package dnswire

import (
	"testing"

	"github.com/miekg/dns"
)

func TestAppendRRExpanded(t *testing.T) {
	m := new(dns.Msg)
	m.SetQuestion("www.example.com.", dns.TypeANY)
	m.Response = true
	m.Compress = true
	for _, s := range []string{
		"www.example.com. 300 IN CNAME web.example.com.",
		"web.example.com. 60 IN A 192.0.2.1",
		"example.com. 60 IN MX 10 mail.example.com.",
		"example.com. 60 IN SOA ns1.example.com. hostmaster.example.com. 1 2 3 4 5",
		"_http._tcp.example.com. 60 IN SRV 1 2 80 web.example.com.",
		"example.com. 60 IN NS ns1.example.com.",
		"1.2.0.192.in-addr.arpa. 60 IN PTR web.example.com.",
		"example.com. 60 IN TXT \"hello\" \"world\"",
		"example.com. 60 IN RP mbox.example.com. txt.example.com.",
	} {
		rr, err := dns.NewRR(s)
		if err != nil {
			t.Fatal(err)
		}
		m.Answer = append(m.Answer, rr)
	}
	msg := pack(t, m)
	if len(msg) > 400 {
		t.Fatalf("message not compressed? %d octets", len(msg))
	}
	off, err := SkipName(msg, HeaderLen)
	if err != nil {
		t.Fatal(err)
	}
	off += 4
	for i, want := range m.Answer {
		var out []byte
		out, next, err := AppendRRExpanded(out, msg, off)
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		// The copy must stand alone: unpack it at offset 0 of its own buffer.
		got, _, err := dns.UnpackRR(out, 0)
		if err != nil {
			t.Fatalf("record %d: UnpackRR: %v (%x)", i, err, out)
		}
		if got.String() != want.String() {
			t.Errorf("record %d = %q, want %q", i, got, want)
		}
		for j := 0; j < len(out); {
			// owner must be uncompressed
			if out[j]&0xC0 != 0 {
				t.Errorf("record %d: compressed owner", i)
			}
			if out[j] == 0 {
				break
			}
			j += int(out[j]) + 1
		}
		_, next2, err := ReadRR(msg, off)
		if err != nil || next != next2 {
			t.Errorf("record %d: ReadRR next %d vs %d (%v)", i, next2, next, err)
		}
		off = next
	}
}

func TestAppendExpandedNameErrors(t *testing.T) {
	tests := []struct {
		name string
		msg  []byte
		off  int
		want Error
	}{
		{"self loop", []byte{0xC0, 0}, 0, ErrPointer},
		{"forward pointer", []byte{0xC0, 2, 0}, 0, ErrPointer},
		{"two-pointer loop", []byte{1, 'a', 0xC0, 4, 1, 'b', 0xC0, 0}, 4, ErrPointer},
		{"truncated pointer", []byte{1, 'a', 0xC0}, 0, ErrTruncated},
		{"truncated label", []byte{3, 'a'}, 0, ErrTruncated},
		{"reserved label type", []byte{0x80}, 0, ErrLabel},
		{"past end", []byte{}, 0, ErrTruncated},
	}
	for _, tt := range tests {
		dst := []byte("keep")
		out, _, err := AppendExpandedName(dst, tt.msg, tt.off)
		if err != tt.want {
			t.Errorf("%s: err %v, want %v", tt.name, err, tt.want)
		}
		if string(out) != "keep" {
			t.Errorf("%s: dst changed to %q", tt.name, out)
		}
	}
	// A name that grows past 255 octets through a pointer.
	long := nameOfLen(200)
	msg := append([]byte(nil), long...)        // offsets 0..199
	msg = append(msg, nameOfLen(101)[:100]...) // 100 octets of labels at 200
	msg = append(msg, 0xC0, 0)                 // then a pointer to the 200-octet name
	if _, _, err := AppendExpandedName(nil, msg, 200); err != ErrNameTooLong {
		t.Errorf("long name through pointer: %v", err)
	}
}

func TestReadRRErrors(t *testing.T) {
	for _, msg := range [][]byte{
		{0},                         // no fixed part
		{0, 0, 1, 0, 1, 0, 0, 0, 0}, // 9 of 10 octets
		{0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4, 1, 2, 3}, // rdata short
	} {
		if _, _, err := ReadRR(msg, 0); err != ErrTruncated {
			t.Errorf("ReadRR(%x) = %v", msg, err)
		}
	}
}
