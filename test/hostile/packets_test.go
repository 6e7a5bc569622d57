package hostile

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/nodedns/nodedns/internal/dnstest"
)

const (
	drop       = -1   // the packet must get no answer at all
	rcBadVers  = 16   // extended rcode, needs the OPT record (RFC 6891 §6.1.3)
	caseIDBase = 0x10 // case i has ID 0x1000+i; good queries 0x8000+
)

// pktCase is one hostile message and what RFC says a server does with it.
type pktCase struct {
	name string
	msg  []byte
	want int  // rcode, or drop
	opt  bool // the answer must carry an OPT record (the query had a good one)
	// why cites the rule.
	why string
}

// upstreamZone is the "node resolver" the daemons forward to.
func upstreamServer(t testing.TB, addr string) *dnstest.Server {
	return dnstest.Start(t, addr, dnstest.WithZone("example.com."), dnstest.WithRecords(
		"api.example.com. 60 IN A 192.0.2.10",
		"api.example.com. 60 IN AAAA 2001:db8::10",
		"api.example.com. 60 IN TXT \"hello\"",
		"api.example.com. 60 IN MX 10 mail.example.com.",
	))
}

// corpus returns the malformed and hostile messages. IDs are 0x1000+i.
func corpus() []pktCase {
	web := wname(webName)
	webQ := q(web, dns.TypeA, dns.ClassINET)
	goodOPT := opt([]byte{0}, 1232, 0, nil)
	// A name of exactly 255 octets under cluster.local (valid: NXDOMAIN
	// from the zone) and one of 256 (invalid).
	long := func(extra int) []byte {
		return wname(label(63) + "." + label(63) + "." + label(63) + "." + label(47+extra) + ".cluster.local.")
	}
	if len(long(0)) != 255 {
		panic(fmt.Sprintf("long name is %d octets", len(long(0))))
	}
	cs := []pktCase{
		{name: "3 octets, no header", msg: []byte{1, 2, 3}, want: drop,
			why: "nothing to answer: no ID"},
		{name: "11-octet header", msg: hdr(0, flagRD, 1, 0, 0, 0)[:11], want: drop,
			why: "shorter than a header"},
		{name: "QDCOUNT 0", msg: hdr(0, flagRD, 0, 0, 0, 0), want: dns.RcodeFormatError,
			why: "RFC 9619: a query has exactly one question"},
		{name: "QDCOUNT 2", msg: cat(hdr(0, flagRD, 2, 0, 0, 0), webQ, q(wname("api.example.com."), dns.TypeA, dns.ClassINET)),
			want: dns.RcodeFormatError, why: "RFC 9619"},
		{name: "QDCOUNT 1, no question", msg: hdr(0, flagRD, 1, 0, 0, 0), want: dns.RcodeFormatError,
			why: "RFC 1035 §4.1.1: unable to interpret"},
		{name: "question without type and class", msg: cat(hdr(0, flagRD, 1, 0, 0, 0), web), want: dns.RcodeFormatError,
			why: "truncated question"},
		{name: "label runs past the end", msg: cat(hdr(0, flagRD, 1, 0, 0, 0), []byte{40, 'a', 'b'}), want: dns.RcodeFormatError,
			why: "truncated name"},
		{name: "compression loop in question", msg: cat(hdr(0, flagRD, 1, 0, 0, 0), []byte{0xC0, 12, 0, 1, 0, 1}), want: dns.RcodeFormatError,
			why: "pointer to itself; the first name has nothing before it to point at"},
		{name: "compression pointer past the end in question", msg: cat(hdr(0, flagRD, 1, 0, 0, 0), []byte{0xC0, 0xFF, 0, 1, 0, 1}),
			want: dns.RcodeFormatError, why: "RFC 1035 §4.1.4"},
		{name: "two-pointer loop in question", msg: cat(hdr(0, flagRD, 1, 0, 0, 0), []byte{1, 'a', 0xC0, 12, 0, 1, 0, 1}),
			want: dns.RcodeFormatError, why: "RFC 1035 §4.1.4: pointers go to prior names"},
		{name: "compression loop in OPT owner", msg: cat(hdr(0, flagRD, 1, 0, 0, 1), webQ, opt([]byte{0xC0, byte(12 + len(webQ))}, 1232, 0, nil)),
			want: dns.RcodeFormatError, why: "RFC 6891 §6.1.2: OPT owner is the root"},
		{name: "pointer past the end in OPT owner", msg: cat(hdr(0, flagRD, 1, 0, 0, 1), webQ, opt([]byte{0xC0, 0xFF}, 1232, 0, nil)),
			want: dns.RcodeFormatError, why: "RFC 6891 §6.1.2"},
		{name: "compression loop in an answer record", msg: cat(hdr(0, flagRD, 1, 1, 0, 0), webQ, rr([]byte{0xC0, byte(12 + len(webQ))}, dns.TypeA, dns.ClassINET, 60, []byte{1, 2, 3, 4})),
			want: dns.RcodeFormatError, why: "RFC 1035 §4.1.4: pointers go to prior names"},
		{name: "pointer past the end in an additional record", msg: cat(hdr(0, flagRD, 1, 0, 0, 1), webQ, rr([]byte{0xC0, 0xFF}, dns.TypeA, dns.ClassINET, 60, []byte{1, 2, 3, 4})),
			want: dns.RcodeFormatError, why: "RFC 1035 §4.1.4"},
		{name: "label of 64 octets", msg: cat(hdr(0, flagRD, 1, 0, 0, 0), q(append([]byte{64}, label(64)+"\x00"...), dns.TypeA, dns.ClassINET)),
			want: dns.RcodeFormatError, why: "RFC 1035 §2.3.4: labels are 63 octets or less (0x40 is a reserved label type, RFC 6891 §5)"},
		{name: "label of 200 octets", msg: cat(hdr(0, flagRD, 1, 0, 0, 0), q(append([]byte{200}, label(200)+"\x00"...), dns.TypeA, dns.ClassINET)),
			want: dns.RcodeFormatError, why: "RFC 1035 §2.3.4"},
		{name: "name of 256 octets", msg: cat(hdr(0, flagRD, 1, 0, 0, 0), q(long(1), dns.TypeA, dns.ClassINET)),
			want: dns.RcodeFormatError, why: "RFC 1035 §3.1: names are 255 octets or less"},
		{name: "name of 320 octets", msg: cat(hdr(0, flagRD, 1, 0, 0, 0), q(wname(strings.Repeat(label(63)+".", 5)), dns.TypeA, dns.ClassINET)),
			want: dns.RcodeFormatError, why: "RFC 1035 §3.1"},
		{name: "name of exactly 255 octets", msg: cat(hdr(0, flagRD, 1, 0, 0, 0), q(long(0), dns.TypeA, dns.ClassINET)),
			want: dns.RcodeNameError, why: "valid; not in the zone (SPEC R12)"},
		{name: "QR=1 (a response sent to us)", msg: cat(hdr(0, flagQR|flagRD, 1, 0, 0, 0), webQ), want: drop,
			why: "RFC 1035 §7.3: unsolicited responses are discarded (answering could loop)"},
		{name: "QR=1 with an answer", msg: cat(hdr(0, flagQR|flagRD, 1, 1, 0, 0), webQ, rr([]byte{0xC0, 12}, dns.TypeA, dns.ClassINET, 60, []byte{203, 0, 113, 66})),
			want: drop, why: "RFC 1035 §7.3"},
		{name: "OPT twice", msg: cat(hdr(0, flagRD, 1, 0, 0, 2), webQ, goodOPT, goodOPT), want: dns.RcodeFormatError, opt: true,
			why: "RFC 6891 §6.1.1: more than one OPT is FORMERR"},
		{name: "OPT owner not the root", msg: cat(hdr(0, flagRD, 1, 0, 0, 1), webQ, opt(wname("a."), 1232, 0, nil)),
			want: dns.RcodeFormatError, why: "RFC 6891 §6.1.2"},
		{name: "OPT in the answer section", msg: cat(hdr(0, flagRD, 1, 1, 0, 0), webQ, goodOPT), want: dns.RcodeFormatError,
			why: "RFC 6891 §6.1.1: OPT only in the additional section"},
		{name: "EDNS version 1", msg: cat(hdr(0, flagRD, 1, 0, 0, 1), webQ, opt([]byte{0}, 1232, 1, nil)), want: rcBadVers, opt: true,
			why: "RFC 6891 §6.1.3: BADVERS"},
		{name: "EDNS version 255 with DO", msg: cat(hdr(0, flagRD, 1, 0, 0, 1), webQ, rr([]byte{0}, 41, 4096, 255<<16|1<<15, nil)), want: rcBadVers, opt: true,
			why: "RFC 6891 §6.1.3"},
		{name: "EDNS option longer than the RDATA", msg: cat(hdr(0, flagRD, 1, 0, 0, 1), webQ, opt([]byte{0}, 1232, 0, []byte{0, 10, 0, 40, 1, 2})),
			want: dns.RcodeFormatError, opt: true, why: "RFC 6891 §6.1.2 / §7"},
		{name: "EDNS option of 3 octets", msg: cat(hdr(0, flagRD, 1, 0, 0, 1), webQ, opt([]byte{0}, 1232, 0, []byte{0, 10, 0})),
			want: dns.RcodeFormatError, opt: true, why: "RFC 6891 §6.1.2"},
		{name: "EDNS cookie and unknown options, well formed", msg: cat(hdr(0, flagRD, 1, 0, 0, 1), webQ,
			opt([]byte{0}, 1232, 0, cat(option(10, []byte("12345678")), option(65001, []byte("x")), option(3, nil)))),
			want: dns.RcodeSuccess, opt: true, why: "RFC 6891 §6.1.2: unknown options are ignored"},
		{name: "OPT RDLEN past the end", msg: cat(hdr(0, flagRD, 1, 0, 0, 1), webQ, opt([]byte{0}, 1232, 0, nil)[:9], []byte{0, 50}),
			want: dns.RcodeFormatError, why: "truncated record"},
		{name: "ARCOUNT 100, no records", msg: cat(hdr(0, flagRD, 1, 0, 0, 100), webQ), want: dns.RcodeFormatError,
			why: "truncated message"},
		{name: "EDNS payload size 0", msg: cat(hdr(0, flagRD, 1, 0, 0, 1), webQ, opt([]byte{0}, 0, 0, nil)), want: dns.RcodeSuccess, opt: true,
			why: "RFC 6891 §6.2.5: sizes below 512 count as 512"},
		{name: "class CHAOS version.bind", msg: cat(hdr(0, flagRD, 1, 0, 0, 0), q(wname("version.bind."), dns.TypeTXT, dns.ClassCHAOS)),
			want: dns.RcodeRefused, why: "policy: nothing outside class IN, and the upstream is not revealed"},
		{name: "class 42", msg: cat(hdr(0, flagRD, 1, 0, 0, 0), q(web, dns.TypeA, 42)), want: dns.RcodeRefused, why: "policy"},
		{name: "AXFR of the zone", msg: cat(hdr(0, 0, 1, 0, 0, 0), q(wname("cluster.local."), dns.TypeAXFR, dns.ClassINET)),
			want: dns.RcodeNotImplemented, why: "no zone transfers"},
		{name: "IXFR of the zone", msg: cat(hdr(0, 0, 1, 0, 0, 0), q(wname("cluster.local."), dns.TypeIXFR, dns.ClassINET)),
			want: dns.RcodeNotImplemented, why: "no zone transfers"},
		{name: "AXFR outside the zone", msg: cat(hdr(0, 0, 1, 0, 0, 0), q(wname("example.com."), dns.TypeAXFR, dns.ClassINET)),
			want: dns.RcodeNotImplemented, why: "never forwarded"},
	}
	for _, op := range []uint16{1, 2, 3, 4, 5, 6, 15} {
		cs = append(cs, pktCase{name: fmt.Sprintf("opcode %d", op), msg: cat(hdr(0, opcode(op), 1, 0, 0, 0), webQ),
			want: dns.RcodeNotImplemented, why: "RFC 1035 §4.1.1 (IQUERY obsolete, RFC 3425; NOTIFY and UPDATE not served)"})
	}
	cs = append(cs,
		pktCase{name: "opcode 5 (UPDATE) with QDCOUNT 0", msg: hdr(0, opcode(5), 0, 0, 0, 0), want: dns.RcodeNotImplemented,
			why: "RFC 1035 §4.1.1"},
		pktCase{name: "opcode 4 (NOTIFY) with OPT", msg: cat(hdr(0, opcode(4), 1, 0, 0, 1), webQ, goodOPT), want: dns.RcodeNotImplemented, opt: true,
			why: "RFC 6891 §7: the error carries an OPT"},
	)
	for i := range cs {
		if len(cs[i].msg) >= 2 {
			cs[i].msg = append([]byte(nil), cs[i].msg...)
			binary.BigEndian.PutUint16(cs[i].msg, uint16(caseIDBase)<<8|uint16(i))
		}
	}
	return cs
}

func caseID(i int) uint16 { return uint16(caseIDBase)<<8 | uint16(i) }

// checkReply reports what is wrong with reply as the answer to c ("" if right).
func checkReply(c pktCase, id uint16, reply []byte) string {
	if c.want == drop {
		return fmt.Sprintf("answered (%d octets), want no answer", len(reply))
	}
	m := new(dns.Msg)
	if err := m.Unpack(reply); err != nil {
		return fmt.Sprintf("answer does not parse: %v", err)
	}
	var problems []string
	if m.Id != id {
		problems = append(problems, fmt.Sprintf("ID %#x, want %#x", m.Id, id))
	}
	if !m.Response {
		problems = append(problems, "QR not set")
	}
	if m.Rcode != c.want {
		problems = append(problems, fmt.Sprintf("rcode %s, want %s", rcodeName(m.Rcode), rcodeName(c.want)))
	}
	if c.opt && m.IsEdns0() == nil {
		problems = append(problems, "no OPT record")
	}
	if o := m.IsEdns0(); o != nil && o.Version() != 0 {
		problems = append(problems, fmt.Sprintf("OPT version %d, want 0", o.Version()))
	}
	if len(problems) == 0 {
		return ""
	}
	return strings.Join(problems, "; ")
}

func rcodeName(rc int) string {
	if rc == drop {
		return "no answer"
	}
	if s, ok := dns.RcodeToString[rc]; ok {
		return s
	}
	return fmt.Sprint(rc)
}

// goodQuery is a well-formed query with ID id: the zone's web name, or,
// every other time, a forwarded (then cached) name.
func goodQuery(id uint16, i int) ([]byte, string) {
	name, want := webName, webIP
	if i%2 == 1 {
		name, want = "api.example.com.", "192.0.2.10"
	}
	m := new(dns.Msg).SetQuestion(name, dns.TypeA)
	m.Id = id
	m.SetEdns0(1232, false)
	b, err := m.Pack()
	if err != nil {
		panic(err)
	}
	return b, want
}

// TestMalformedPacketsUDP sends the corpus over UDP, each hostile packet
// followed by a good query on the same socket, and checks every answer
// (or its absence) once all have been sent.
func TestMalformedPacketsUDP(t *testing.T) {
	up := upstreamServer(t, "127.0.0.2:0")
	d := startDaemon(t, "--zone-file", exampleZone, "--upstream", up.Addr().String())
	d.WaitReady(15 * time.Second)
	cs := corpus()

	conn, err := net.Dial("udp", d.DNS)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	replies := map[uint16][][]byte{}
	var stray [][]byte
	read := func(until time.Time, stop func() bool) {
		buf := make([]byte, 65535)
		for !stop() {
			conn.SetReadDeadline(until)
			n, err := conn.Read(buf)
			if err != nil {
				return // deadline: the caller decides whether that is a loss
			}
			if n < 2 {
				stray = append(stray, append([]byte(nil), buf[:n]...))
				continue
			}
			id := binary.BigEndian.Uint16(buf)
			replies[id] = append(replies[id], append([]byte(nil), buf[:n]...))
		}
	}
	lost, good := 0, 0
	var goodLatency []time.Duration
	for i, c := range cs {
		if _, err := conn.Write(c.msg); err != nil {
			t.Fatal(err)
		}
		gid := uint16(0x8000 + i)
		g, want := goodQuery(gid, i)
		start := time.Now()
		if _, err := conn.Write(g); err != nil {
			t.Fatal(err)
		}
		good++
		read(time.Now().Add(2*time.Second), func() bool { return len(replies[gid]) > 0 })
		if len(replies[gid]) == 0 {
			lost++
			t.Errorf("good query after %q: no answer within 2s", c.name)
			continue
		}
		goodLatency = append(goodLatency, time.Since(start))
		m := new(dns.Msg)
		if err := m.Unpack(replies[gid][0]); err != nil || firstA(m) != want {
			t.Errorf("good query after %q: %v (err %v), want %s", c.name, m, err, want)
		}
	}
	// Readers may answer in any order: give late answers to the hostile
	// packets a moment to arrive, then judge them all.
	read(time.Now().Add(300*time.Millisecond), func() bool { return false })
	d.Alive()
	wrong := 0
	for i, c := range cs {
		got := replies[caseID(i)]
		switch {
		case c.want == drop && len(got) > 0:
			t.Errorf("udp %q: %s", c.name, checkReply(c, caseID(i), got[0]))
			wrong++
		case c.want != drop && len(got) != 1:
			t.Errorf("udp %q: %d answers, want one %s (%s)", c.name, len(got), rcodeName(c.want), c.why)
			wrong++
		case c.want != drop:
			if p := checkReply(c, caseID(i), got[0]); p != "" {
				t.Errorf("udp %q: %s (%s)", c.name, p, c.why)
				wrong++
			}
		}
		delete(replies, caseID(i))
		delete(replies, uint16(0x8000+i))
	}
	for id, r := range replies {
		t.Errorf("answer with unexpected ID %#x (%d)", id, len(r))
	}
	if len(stray) > 0 {
		t.Errorf("%d stray datagrams shorter than 2 octets", len(stray))
	}
	figure(t, "%d hostile packets over UDP, %d answered wrongly; %d good queries interleaved, %d lost, p50 %v; crashes 0",
		len(cs), wrong, good, lost, percentile(goodLatency, 50).Round(time.Microsecond))
}

// TestMalformedPacketsTCP sends each corpus message framed on its own TCP
// connection, then a good query on the same connection: TCP answers in
// order, so the first message back is the hostile one's answer unless it
// was dropped.
func TestMalformedPacketsTCP(t *testing.T) {
	up := upstreamServer(t, "127.0.0.2:0")
	d := startDaemon(t, "--zone-file", exampleZone, "--upstream", up.Addr().String())
	d.WaitReady(15 * time.Second)
	cs := corpus()
	wrong, lost := 0, 0
	for i, c := range cs {
		conn, err := net.Dial("tcp", d.DNS)
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(3 * time.Second))
		gid := uint16(0x8000 + i)
		g, want := goodQuery(gid, i)
		if _, err := conn.Write(cat(frame(c.msg), frame(g))); err != nil {
			t.Fatal(err)
		}
		first, err := readFramed(conn)
		if err != nil {
			t.Errorf("tcp %q: nothing back: %v", c.name, err)
			lost++
			conn.Close()
			continue
		}
		goodReply := first
		if c.want != drop {
			if p := checkReply(c, caseID(i), first); p != "" {
				t.Errorf("tcp %q: %s (%s)", c.name, p, c.why)
				wrong++
			}
			if goodReply, err = readFramed(conn); err != nil {
				t.Errorf("tcp: good query after %q: %v", c.name, err)
				lost++
				conn.Close()
				continue
			}
		}
		m := new(dns.Msg)
		if err := m.Unpack(goodReply); err != nil || m.Id != gid || firstA(m) != want {
			t.Errorf("tcp %q: the message after it is %v (err %v), want the good answer %s", c.name, m, err, want)
			if c.want == drop {
				wrong++ // most likely the hostile one was answered
			}
		}
		conn.Close()
	}
	d.Alive()
	figure(t, "%d hostile messages over TCP, %d answered wrongly, %d good queries lost; crashes 0", len(cs), wrong, lost)
}

func readFramed(c net.Conn) ([]byte, error) {
	var l [2]byte
	if _, err := io.ReadFull(c, l[:]); err != nil {
		return nil, err
	}
	b := make([]byte, binary.BigEndian.Uint16(l[:]))
	_, err := io.ReadFull(c, b)
	return b, err
}

// TestAnyIsMinimal: RFC 8482. Outside the zone nodedns answers ANY itself
// with one synthesized HINFO and never forwards it (no amplification); in
// the zone it answers one RRset.
func TestAnyIsMinimal(t *testing.T) {
	up := upstreamServer(t, "127.0.0.2:0")
	d := startDaemon(t, "--zone-file", exampleZone, "--upstream", up.Addr().String())
	d.WaitReady(15 * time.Second)
	for _, network := range []string{"udp", "tcp"} {
		r, _, err := d.ask(network, "api.example.com.", dns.TypeANY)
		if err != nil {
			t.Fatal(err)
		}
		h, ok := any(nil), false
		if len(r.Answer) == 1 {
			h, ok = r.Answer[0].(*dns.HINFO)
		}
		if r.Rcode != dns.RcodeSuccess || !ok || h.(*dns.HINFO).Cpu != "RFC8482" || len(r.Ns) != 0 {
			t.Errorf("%s ANY api.example.com: %v, want NOERROR with one HINFO \"RFC8482\" (RFC 8482 §4.2)", network, r)
		}
		if n := up.Count("api.example.com.", dns.TypeANY); n != 0 {
			t.Errorf("%s: ANY forwarded upstream %d times", network, n)
		}
		r, _, err = d.ask(network, webName, dns.TypeANY)
		if err != nil {
			t.Fatal(err)
		}
		types := map[uint16]bool{}
		for _, rr := range r.Answer {
			types[rr.Header().Rrtype] = true
		}
		if r.Rcode != dns.RcodeSuccess || len(r.Answer) == 0 || len(types) != 1 {
			t.Errorf("%s ANY %s: %v, want NOERROR with one RRset (RFC 8482 §4.1)", network, webName, r)
		}
		figure(t, "%s: ANY outside the zone -> %d record (HINFO), 0 forwarded; ANY %s -> %d record(s) of %d type",
			network, 1, webName, len(r.Answer), len(types))
	}
	r, _, err := d.ask("udp", "api.example.com.", dns.TypeANY)
	if err == nil {
		// An amplification factor below 1.5 is what RFC 8482 is for.
		q := new(dns.Msg).SetQuestion("api.example.com.", dns.TypeANY)
		q.SetEdns0(1232, false)
		figure(t, "ANY amplification %d/%d octets", r.Len(), q.Len())
	}
}

// tcpIdle measures how long the daemon keeps conn open without answering:
// it reads until EOF or error and returns the time and whatever arrived.
func tcpIdle(conn net.Conn, max time.Duration) (time.Duration, []byte, error) {
	start := time.Now()
	conn.SetReadDeadline(start.Add(max))
	b, err := io.ReadAll(conn)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return time.Since(start), b, err
	}
	return time.Since(start), b, nil // EOF or reset: the server closed it
}

// TestTCPIdleAndSlowClients: a connection that sends nothing, one that
// sends half a length prefix, one whose prefix promises more than it
// sends, and one that drips a message a byte at a time, are all closed by
// the server once the idle timeout passes, without an answer; a zero
// length message is skipped; good queries are answered meanwhile.
func TestTCPIdleAndSlowClients(t *testing.T) {
	const idle = time.Second
	up := upstreamServer(t, "127.0.0.2:0")
	d := startDaemon(t, "--zone-file", exampleZone, "--upstream", up.Addr().String(), "--tcp-idle-timeout", idle.String())
	d.WaitReady(15 * time.Second)

	good, _ := goodQuery(0x8001, 0)
	cases := []struct {
		name  string
		write []byte
		drip  bool
	}{
		{"sends nothing", nil, false},
		{"sends half a length prefix", []byte{0}, false},
		{"sends length 200 and 3 octets", []byte{0, 200, 1, 2, 3}, false},
		{"sends length 65535 and a header", cat([]byte{0xFF, 0xFF}, good[:12]), false},
		{"drips a whole query, one octet per 200ms", frame(good), true},
	}
	var wg sync.WaitGroup
	results := make([]string, len(cases))
	took := make([]time.Duration, len(cases))
	for i, c := range cases {
		conn, err := net.Dial("tcp", d.DNS)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		wg.Go(func() {
			if c.drip {
				go func() {
					tick := time.NewTicker(200 * time.Millisecond) // pacing the drip
					defer tick.Stop()
					for _, b := range c.write {
						if _, err := conn.Write([]byte{b}); err != nil {
							return
						}
						<-tick.C
					}
				}()
			} else if len(c.write) > 0 {
				conn.Write(c.write)
			}
			el, got, err := tcpIdle(conn, idle+3*time.Second)
			took[i] = el
			switch {
			case err != nil:
				results[i] = fmt.Sprintf("still open after %v", el.Round(time.Millisecond))
			case len(got) > 0:
				results[i] = fmt.Sprintf("got %d octets back, want none", len(got))
			case el < idle-100*time.Millisecond:
				results[i] = fmt.Sprintf("closed after %v, before the idle timeout", el.Round(time.Millisecond))
			}
		})
	}
	// Meanwhile, good queries over both transports.
	n, failed := 0, 0
	deadline := time.Now().Add(idle)
	for time.Now().Before(deadline) {
		for _, network := range []string{"udp", "tcp"} {
			r, _, err := d.ask(network, webName, dns.TypeA)
			n++
			if err != nil || firstA(r) != webIP {
				failed++
			}
		}
	}
	wg.Wait()
	for i, c := range cases {
		if results[i] != "" {
			t.Errorf("%s: %s", c.name, results[i])
		}
		figure(t, "tcp client that %s: closed by nodedns after %v (idle timeout %v)", c.name, took[i].Round(time.Millisecond), idle)
	}
	if failed > 0 {
		t.Errorf("%d of %d good queries failed while slow clients held connections", failed, n)
	}

	// A zero-length message is nothing to answer; the connection goes on.
	conn, err := net.Dial("tcp", d.DNS)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(3 * time.Second))
	conn.Write(cat([]byte{0, 0}, frame(good)))
	b, err := readFramed(conn)
	m := new(dns.Msg)
	if err != nil || m.Unpack(b) != nil || m.Id != 0x8001 || firstA(m) != webIP {
		t.Errorf("after a zero-length message: %v %v, want the good answer", m, err)
	}
	d.Alive()
	figure(t, "%d good queries during the slow clients, %d failed", n, failed)
}

// TestTCPConnectionBound: with --tcp-max-conns N, N idle connections hold
// every slot; a new connection makes the one idle the longest give its
// slot up (RFC 7766 §6.2.3) and is answered at once, long before the idle timeout, and UDP
// keeps answering. (Slots held by queries in progress are not taken:
// pkg/server's TestTCPMaxConns.)
func TestTCPConnectionBound(t *testing.T) {
	const (
		bound = 16
		extra = 16
		idle  = 30 * time.Second
	)
	up := upstreamServer(t, "127.0.0.2:0")
	d := startDaemon(t, "--zone-file", exampleZone, "--upstream", up.Addr().String(),
		"--tcp-max-conns", fmt.Sprint(bound), "--tcp-idle-timeout", idle.String())
	d.WaitReady(15 * time.Second)

	// Fill every slot: each connection is answered once, so it surely
	// holds a slot, then stays idle.
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for i := range bound {
		c, err := net.Dial("tcp", d.DNS)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
		g, _ := goodQuery(uint16(0x8000+i), 0)
		c.SetDeadline(time.Now().Add(3 * time.Second))
		c.Write(frame(g))
		if _, err := readFramed(c); err != nil {
			t.Fatalf("connection %d of %d (within the bound) not answered: %v", i+1, bound, err)
		}
	}
	// Over the bound: idle connections make room, each new one is answered.
	var worst time.Duration
	for i := range extra {
		c, err := net.Dial("tcp", d.DNS)
		if err != nil {
			t.Fatal(err)
		}
		g, _ := goodQuery(uint16(0x9000+i), 0)
		start := time.Now()
		c.SetDeadline(start.Add(3 * time.Second))
		c.Write(frame(g))
		_, err = readFramed(c)
		worst = max(worst, time.Since(start))
		c.Close()
		if err != nil {
			t.Errorf("connection %d over the bound not answered: %v", i+1, err)
		}
	}
	// UDP is not affected.
	for range 20 {
		if r, _, err := d.ask("udp", webName, dns.TypeA); err != nil || firstA(r) != webIP {
			t.Fatalf("udp while TCP is full: %v %v", r, err)
		}
	}
	// Held idle connections were closed to make that room, long before
	// their idle timeout: the one idle the longest for each newcomer that
	// found every slot taken. Once a newcomer has closed and left its
	// slot free, the next needs none, so how many is up to the timing.
	var closed atomic.Int64
	var wg sync.WaitGroup
	for _, c := range held {
		wg.Go(func() {
			if _, got, err := tcpIdle(c, time.Second); err == nil && len(got) == 0 {
				closed.Add(1)
			}
		})
	}
	wg.Wait()
	if closed.Load() == 0 {
		t.Errorf("none of the %d held idle connections was closed (idle timeout %v): how did the new ones get a slot?", bound, idle)
	}
	d.Alive()
	figure(t, "tcp-max-conns %d held by idle connections: %d new connections answered, slowest %v; %d of the idle ones closed for them (idle timeout %v); UDP unaffected",
		bound, extra, worst.Round(time.Microsecond), closed.Load(), idle)
}
