package dnstest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func query(t *testing.T, s *Server, transport, name string, qtype uint16, edns uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	if edns > 0 {
		m.SetEdns0(edns, false)
	}
	c := &dns.Client{Net: transport, Timeout: 5 * time.Second, UDPSize: 65535}
	r, _, err := c.Exchange(m, s.Addr().String())
	if err != nil {
		t.Fatalf("%s %s %s: %v", transport, name, dns.TypeToString[qtype], err)
	}
	if r.Id != m.Id {
		t.Fatalf("reply ID %d, want %d", r.Id, m.Id)
	}
	return r
}

// sortedRRs returns the records as zone-file text, sorted, for
// order-independent comparison.
func sortedRRs(rrs []dns.RR) []string {
	out := make([]string, 0, len(rrs))
	for _, rr := range rrs {
		if rr.Header().Rrtype == dns.TypeOPT {
			continue
		}
		out = append(out, strings.ReplaceAll(rr.String(), "\t", " "))
	}
	sort.Strings(out)
	return out
}

func TestAnswers(t *testing.T) {
	s := Start(t, "127.0.0.1:0", WithZone("example.com"),
		WithRecords("api.example.com. 60 IN A 192.0.2.1"))
	s.Add(
		"api.example.com. 60 IN A 192.0.2.2",
		"api.example.com. 60 IN AAAA 2001:db8::1",
		"www.example.com. 120 IN CNAME api.example.com.",
		"ext.example.com. 120 IN CNAME elsewhere.test.",
		"a.b.deep.example.com. 60 IN TXT \"x\"",
	)
	soa := "example.com. 60 IN SOA ns.example.com. hostmaster.example.com. 1 7200 1800 86400 30"
	tests := []struct {
		name   string
		qtype  uint16
		rcode  int
		answer []string
		ns     []string
	}{
		{"api.example.com.", dns.TypeA, dns.RcodeSuccess,
			[]string{"api.example.com. 60 IN A 192.0.2.1", "api.example.com. 60 IN A 192.0.2.2"}, nil},
		{"API.Example.COM.", dns.TypeAAAA, dns.RcodeSuccess,
			[]string{"API.Example.COM. 60 IN AAAA 2001:db8::1"}, nil},
		{"www.example.com.", dns.TypeA, dns.RcodeSuccess, []string{
			"www.example.com. 120 IN CNAME api.example.com.",
			"api.example.com. 60 IN A 192.0.2.1", "api.example.com. 60 IN A 192.0.2.2"}, nil},
		{"www.example.com.", dns.TypeCNAME, dns.RcodeSuccess,
			[]string{"www.example.com. 120 IN CNAME api.example.com."}, nil},
		{"ext.example.com.", dns.TypeA, dns.RcodeSuccess,
			[]string{"ext.example.com. 120 IN CNAME elsewhere.test."}, nil},
		{"api.example.com.", dns.TypeMX, dns.RcodeSuccess, nil, []string{soa}},
		{"deep.example.com.", dns.TypeA, dns.RcodeSuccess, nil, []string{soa}}, // empty non-terminal
		{"nope.example.com.", dns.TypeA, dns.RcodeNameError, nil, []string{soa}},
		{"other.test.", dns.TypeA, dns.RcodeRefused, nil, nil},
	}
	for _, transport := range []string{"udp", "tcp"} {
		for _, tc := range tests {
			t.Run(transport+"/"+tc.name+"/"+dns.TypeToString[tc.qtype], func(t *testing.T) {
				r := query(t, s, transport, tc.name, tc.qtype, 0)
				if r.Rcode != tc.rcode {
					t.Errorf("rcode %s, want %s", dns.RcodeToString[r.Rcode], dns.RcodeToString[tc.rcode])
				}
				if got, want := sortedRRs(r.Answer), sortedRRs(mustRRs(t, tc.answer)); !slices.Equal(got, want) {
					t.Errorf("answer\n%q\nwant\n%q", got, want)
				}
				if got, want := sortedRRs(r.Ns), sortedRRs(mustRRs(t, tc.ns)); !slices.Equal(got, want) {
					t.Errorf("authority\n%q\nwant\n%q", got, want)
				}
			})
		}
	}
}

func mustRRs(t *testing.T, texts []string) []dns.RR {
	t.Helper()
	var out []dns.RR
	for _, s := range texts {
		rr, err := dns.NewRR(s)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, rr)
	}
	return out
}

func TestDefaultZoneIsRoot(t *testing.T) {
	s := Start(t, "127.0.0.1:0")
	r := query(t, s, "udp", "anything.test.", dns.TypeA, 0)
	if r.Rcode != dns.RcodeNameError || len(r.Ns) != 1 || r.Ns[0].Header().Rrtype != dns.TypeSOA {
		t.Fatalf("got %s with authority %v, want NXDOMAIN with the root SOA", dns.RcodeToString[r.Rcode], r.Ns)
	}
}

func TestRemoveAndReplaceSOA(t *testing.T) {
	s := Start(t, "127.0.0.1:0", WithZone("example.com"))
	s.Add("a.example.com. 60 IN A 192.0.2.1", "a.example.com. 60 IN TXT \"t\"",
		"example.com. 10 IN SOA ns1.example.com. h.example.com. 2 1 1 1 7")
	s.Remove("A.example.com", dns.TypeA)
	if r := query(t, s, "udp", "a.example.com.", dns.TypeA, 0); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 {
		t.Fatalf("after removing A: %v", r)
	}
	r := query(t, s, "udp", "a.example.com.", dns.TypeTXT, 0)
	if len(r.Answer) != 1 {
		t.Fatalf("TXT removed too: %v", r)
	}
	s.Remove("a.example.com.", dns.TypeANY)
	r = query(t, s, "udp", "a.example.com.", dns.TypeTXT, 0)
	if r.Rcode != dns.RcodeNameError || len(r.Ns) != 1 || r.Ns[0].(*dns.SOA).Minttl != 7 {
		t.Fatalf("want NXDOMAIN with the replaced SOA, got %v", r)
	}
}

func TestAddBadRecordFailsTest(t *testing.T) {
	s, err := New("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	defer func() {
		if recover() == nil {
			t.Error("Add of a bad record did not panic")
		}
	}()
	s.Add("this is not a record")
}

func TestQueryLog(t *testing.T) {
	s := Start(t, "127.0.0.1:0")
	s.Add("api.example.com. 60 IN A 192.0.2.1")
	query(t, s, "udp", "API.example.com.", dns.TypeA, 0)
	query(t, s, "tcp", "api.example.com.", dns.TypeA, 0)
	query(t, s, "udp", "api.example.com.", dns.TypeAAAA, 0)
	if got := s.Count("api.example.com", dns.TypeA); got != 2 {
		t.Errorf("Count A = %d, want 2", got)
	}
	if got := s.Count("api.example.com.", dns.TypeAAAA); got != 1 {
		t.Errorf("Count AAAA = %d, want 1", got)
	}
	qs := s.Queries()
	if len(qs) != 3 || s.Len() != 3 {
		t.Fatalf("log has %d (Len %d), want 3", len(qs), s.Len())
	}
	if qs[0].Name != "API.example.com." || qs[0].Transport != "udp" || qs[1].Transport != "tcp" ||
		qs[0].Class != dns.ClassINET || !qs[0].From.Addr().IsLoopback() || qs[0].Time.IsZero() ||
		qs[1].Time.Before(qs[0].Time) {
		t.Errorf("log entries wrong: %+v", qs)
	}
	s.Reset()
	if s.Len() != 0 || s.Count("api.example.com.", dns.TypeA) != 0 {
		t.Error("Reset left entries")
	}
}

func TestDrop(t *testing.T) {
	s := Start(t, "127.0.0.1:0")
	s.Add("api.example.com. 60 IN A 192.0.2.1")
	s.SetBehavior(Behavior{Drop: true})
	if !s.Behavior().Drop {
		t.Fatal("Behavior() does not report Drop")
	}
	m := new(dns.Msg).SetQuestion("api.example.com.", dns.TypeA)
	for _, transport := range []string{"udp", "tcp"} {
		c := &dns.Client{Net: transport, Timeout: 150 * time.Millisecond}
		_, _, err := c.Exchange(m, s.Addr().String())
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Errorf("%s: err = %v, want a timeout", transport, err)
		}
	}
	if got := s.Count("api.example.com.", dns.TypeA); got != 2 {
		t.Errorf("dropped queries logged %d times, want 2", got)
	}
	s.SetBehavior(Behavior{})
	if r := query(t, s, "udp", "api.example.com.", dns.TypeA, 0); len(r.Answer) != 1 {
		t.Errorf("after switching back: %v", r)
	}
}

func TestRcodeAndDelay(t *testing.T) {
	s := Start(t, "127.0.0.1:0")
	s.Add("api.example.com. 60 IN A 192.0.2.1")
	s.SetBehavior(Behavior{Rcode: dns.RcodeServerFailure})
	if r := query(t, s, "udp", "api.example.com.", dns.TypeA, 0); r.Rcode != dns.RcodeServerFailure || len(r.Answer) != 0 {
		t.Errorf("want bare SERVFAIL, got %v", r)
	}
	const delay = 100 * time.Millisecond
	s.SetBehavior(Behavior{Delay: delay})
	start := time.Now()
	r := query(t, s, "udp", "api.example.com.", dns.TypeA, 0)
	if el := time.Since(start); el < delay || len(r.Answer) != 1 {
		t.Errorf("delayed answer came after %v (want >= %v): %v", el, delay, r)
	}
}

func TestTruncate(t *testing.T) {
	s := Start(t, "127.0.0.1:0")
	s.Add("api.example.com. 60 IN A 192.0.2.1")
	s.SetBehavior(Behavior{Truncate: true})
	r := query(t, s, "udp", "api.example.com.", dns.TypeA, 1232)
	if !r.Truncated || len(r.Answer) != 0 {
		t.Errorf("UDP: want TC and no answer, got %v", r)
	}
	r = query(t, s, "tcp", "api.example.com.", dns.TypeA, 1232)
	if r.Truncated || len(r.Answer) != 1 {
		t.Errorf("TCP: want the full answer, got %v", r)
	}
}

func TestLargeAnswerRespectsUDPSize(t *testing.T) {
	s := Start(t, "127.0.0.1:0")
	for i := range 100 {
		s.Add(fmt.Sprintf("big.example.com. 60 IN A 192.0.2.%d", i+1))
	}
	r := query(t, s, "udp", "big.example.com.", dns.TypeA, 0)
	r.Compress = true // measure as sent
	if !r.Truncated || r.Len() > 512 {
		t.Errorf("no EDNS: want TC within 512 bytes, got TC=%v len %d", r.Truncated, r.Len())
	}
	r = query(t, s, "udp", "big.example.com.", dns.TypeA, 4096)
	r.Compress = true
	if r.Truncated || len(r.Answer) != 100 || r.Len() <= 512 {
		t.Errorf("EDNS 4096: want all 100 records (>512 bytes), got TC=%v %d records, %d bytes",
			r.Truncated, len(r.Answer), r.Len())
	}
}

// TestForge reads the raw packets: the forged replies come first, in order,
// then the real one.
func TestForge(t *testing.T) {
	s := Start(t, "127.0.0.1:0")
	s.Add("api.example.com. 60 IN A 192.0.2.1")
	s.SetBehavior(Behavior{Forge: ForgeID | ForgeName | ForgeType})
	for _, transport := range []string{"udp", "tcp"} {
		conn, err := net.Dial(transport, s.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		q := new(dns.Msg).SetQuestion("api.example.com.", dns.TypeA)
		out, _ := q.Pack()
		if transport == "tcp" {
			out = append(binary.BigEndian.AppendUint16(nil, uint16(len(out))), out...)
		}
		if _, err := conn.Write(out); err != nil {
			t.Fatal(err)
		}
		var got []*dns.Msg
		buf := make([]byte, 65535)
		for range 4 {
			var pkt []byte
			if transport == "udp" {
				n, err := conn.Read(buf)
				if err != nil {
					t.Fatal(err)
				}
				pkt = buf[:n]
			} else {
				if _, err := io.ReadFull(conn, buf[:2]); err != nil {
					t.Fatal(err)
				}
				n := int(binary.BigEndian.Uint16(buf))
				if _, err := io.ReadFull(conn, buf[:n]); err != nil {
					t.Fatal(err)
				}
				pkt = buf[:n]
			}
			m := new(dns.Msg)
			if err := m.Unpack(pkt); err != nil {
				t.Fatal(err)
			}
			got = append(got, m)
		}
		conn.Close()
		poisoned := func(m *dns.Msg) bool {
			return len(m.Answer) == 1 && m.Answer[0].(*dns.A).A.String() == ForgedA.String() &&
				m.Answer[0].Header().Name == "api.example.com."
		}
		if f := got[0]; f.Id == q.Id || f.Question[0] != q.Question[0] || !poisoned(f) {
			t.Errorf("%s: first reply is not the wrong-ID forgery: %v", transport, f)
		}
		if f := got[1]; f.Id != q.Id || f.Question[0].Name != "xpi.example.com." || !poisoned(f) {
			t.Errorf("%s: second reply is not the wrong-name forgery: %v", transport, f)
		}
		if f := got[2]; f.Id != q.Id || f.Question[0].Qtype != dns.TypeAAAA || !poisoned(f) {
			t.Errorf("%s: third reply is not the wrong-type forgery: %v", transport, f)
		}
		if r := got[3]; r.Id != q.Id || r.Question[0] != q.Question[0] || len(r.Answer) != 1 ||
			r.Answer[0].(*dns.A).A.String() != "192.0.2.1" {
			t.Errorf("%s: fourth reply is not the real one: %v", transport, r)
		}
	}
}

func TestOnQuery(t *testing.T) {
	s := Start(t, "127.0.0.1:0")
	seen := make(chan Query, 1)
	s.OnQuery(func(q Query) { seen <- q })
	query(t, s, "udp", "x.test.", dns.TypeTXT, 0)
	if q := <-seen; q.Name != "x.test." || q.Type != dns.TypeTXT {
		t.Errorf("hook got %+v", q)
	}
	s.OnQuery(nil)
	query(t, s, "udp", "x.test.", dns.TypeTXT, 0) // would block on the full channel if still hooked
}

func TestFixedAddress(t *testing.T) {
	probe := Start(t, "127.0.0.1:0")
	port := probe.Addr().Port()
	probe.Close()
	s, err := New(net.JoinHostPort("127.0.0.2", strconv.Itoa(int(port))))
	if err != nil {
		t.Skipf("127.0.0.2:%d not bindable here: %v", port, err)
	}
	defer s.Close()
	if s.Addr().String() != "127.0.0.2:"+strconv.Itoa(int(port)) {
		t.Errorf("Addr() = %v", s.Addr())
	}
	s.Add("api.example.com. 60 IN A 192.0.2.1")
	for _, tr := range []string{"udp", "tcp"} {
		if r := query(t, s, tr, "api.example.com.", dns.TypeA, 0); len(r.Answer) != 1 {
			t.Errorf("%s: %v", tr, r)
		}
	}
}

func TestCloseUnblocksDelayAndConnections(t *testing.T) {
	s, err := New("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.SetBehavior(Behavior{Delay: time.Hour})
	arrived := make(chan struct{}, 2)
	s.OnQuery(func(Query) { arrived <- struct{}{} })
	for _, tr := range []string{"udp", "tcp"} {
		conn, err := net.Dial(tr, s.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		out, _ := new(dns.Msg).SetQuestion("x.test.", dns.TypeA).Pack()
		if tr == "tcp" {
			out = append(binary.BigEndian.AppendUint16(nil, uint16(len(out))), out...)
		}
		conn.Write(out)
		<-arrived
	}
	done := make(chan struct{})
	go func() {
		s.Close()
		s.Close() // twice is fine
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return while answers were delayed")
	}
}

func TestNewBadAddress(t *testing.T) {
	if _, err := New("localhost:53"); err == nil {
		t.Error("New accepted a host name")
	}
}
