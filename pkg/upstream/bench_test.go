package upstream

import (
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"testing"

	"github.com/miekg/dns"

	"github.com/nodedns/nodedns/internal/dnstest"
)

// BenchmarkExchange measures one forwarded query against a local server,
// socket setup included (a new UDP socket per exchange, by design: a
// random source port each time, RFC 5452 4.5).
func BenchmarkExchange(b *testing.B) {
	s := dnstest.Start(b, "127.0.0.1:0")
	s.Add("api.example.com. 60 IN A 192.0.2.1")
	f := newForwarder(b, Config{}, s)
	q := packQuery(b, "api.example.com.", dns.TypeA, 1232)
	ctx := b.Context()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.Exchange(ctx, q); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkExchangeEcho isolates the Forwarder's own cost: the server is a
// bare UDP loop that echoes each query back as its reply, so the
// allocations reported are (nearly) all the client's.
func BenchmarkExchangeEcho(b *testing.B) {
	pc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65535)
		for {
			n, from, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				return // closed
			}
			buf[2] |= 0x80 // QR
			pc.WriteToUDPAddrPort(buf[:n], from)
		}
	}()
	b.Cleanup(func() { pc.Close(); <-done })
	f, err := New(Config{Servers: []netip.AddrPort{pc.LocalAddr().(*net.UDPAddr).AddrPort()}})
	if err != nil {
		b.Fatal(err)
	}
	q := packQuery(b, "api.example.com.", dns.TypeA, 1232)
	ctx := b.Context()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.Exchange(ctx, q); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMatches(b *testing.B) {
	q := packQuery(b, "api.example.com.", dns.TypeA, 0)
	end, _ := questionEnd(q)
	reply := append([]byte(nil), q...)
	reply[2] |= 0x80
	b.ReportAllocs()
	for b.Loop() {
		if _, err := questionEnd(q); err != nil {
			b.Fatal(err)
		}
		if !matches(reply, callerID, q[headerLen:end]) {
			b.Fatal("no match")
		}
	}
}

func BenchmarkNewID(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		newID()
	}
}

func TestHelpersDoNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under the race detector")
	}
	q := packQuery(t, "api.example.com.", dns.TypeA, 0)
	end, _ := questionEnd(q)
	servers := make([]server, 3)
	var stack [8]int
	if n := testing.AllocsPerRun(100, func() {
		questionEnd(q)
		matches(q, callerID, q[headerLen:end])
		newID()
		order(stack[:0], servers, 0)
	}); n != 0 {
		t.Errorf("questionEnd, matches, newID, order: %v allocs, want 0", n)
	}
}

// startTCPEcho serves TCP on loopback, echoing each length-prefixed query
// back as its reply (QR set), so BenchmarkExchangeTCPEcho measures the
// Forwarder's side.
func startTCPEcho(b *testing.B) netip.AddrPort {
	addr, _ := serveTCP(b, func(c net.Conn) {
		buf := make([]byte, 2+512) // queries here are small
		for {
			if _, err := io.ReadFull(c, buf[:2]); err != nil {
				return
			}
			n := 2 + int(binary.BigEndian.Uint16(buf))
			if n > len(buf) {
				return
			}
			if _, err := io.ReadFull(c, buf[2:n]); err != nil {
				return
			}
			buf[4] |= 0x80 // QR
			if _, err := c.Write(buf[:n]); err != nil {
				return
			}
		}
	})
	return addr
}

// BenchmarkExchangeTCPEcho is one TCP exchange (the retry after a
// truncated UDP reply), on a pooled connection ("reuse") and on a new
// connection each time ("dial", as before pooling).
func BenchmarkExchangeTCPEcho(b *testing.B) {
	for _, bc := range []struct {
		name  string
		conns int
	}{{"reuse", 0}, {"dial", -1}} {
		b.Run(bc.name, func(b *testing.B) {
			f, err := New(Config{Servers: []netip.AddrPort{startTCPEcho(b)}, TCPIdleConns: bc.conns})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { f.Close() })
			q := packQuery(b, "api.example.com.", dns.TypeA, 1232)
			qEnd, _ := questionEnd(q)
			ctx := b.Context()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := f.exchangeTCP(ctx, &f.servers[0], q, qEnd); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
