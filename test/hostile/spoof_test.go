package hostile

import (
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/nodedns/nodedns/internal/dnstest"
)

// TestOffPathSpoofing: the strongest off-path attacker, one that knows the
// query's ID and source port (here the upstream tells it), races the real
// reply from another address and from another port of the upstream's
// address. Each forwarded query uses its own connected UDP socket, so the
// kernel drops both forgeries before nodedns reads anything: no forged
// answer reaches a client or the cache.
func TestOffPathSpoofing(t *testing.T) {
	otherHost := listenUDP(t, "127.0.0.9:0")
	otherPort := listenUDP(t, "127.0.0.2:0")
	// Positive control: an unconnected socket does take a forgery, so
	// the forgeries are well-formed and deliverable.
	control := listenUDP(t, "127.0.0.1:0")

	upstream := listenUDP(t, "127.0.0.2:0")
	var spoofed atomic.Int64
	go func() {
		buf := make([]byte, 4096)
		for {
			n, client, err := upstream.ReadFromUDP(buf)
			if err != nil {
				return // closed at cleanup
			}
			req := new(dns.Msg)
			if req.Unpack(buf[:n]) != nil || len(req.Question) != 1 {
				continue
			}
			real, forged := reply(req, "192.0.2.77"), reply(req, dnstest.ForgedA.String())
			// The forgeries first: on loopback a datagram is queued at
			// the receiver within the sending call, so each would be
			// read before the real reply if the socket took it.
			for _, from := range []*net.UDPConn{otherHost, otherPort} {
				if _, err := from.WriteToUDP(forged, client); err == nil {
					spoofed.Add(1)
				}
			}
			upstream.WriteToUDP(real, client)
		}
	}()

	d := startDaemon(t, "--zone-file", exampleZone, "--upstream", upstream.LocalAddr().String())
	d.WaitReady(15 * time.Second)
	const names = 50
	poisonedAnswers := 0
	for pass, what := range []string{"forwarded", "from the cache"} {
		for i := range names {
			name := fmt.Sprintf("s%d.example.com.", i)
			r, _, err := d.ask("udp", name, dns.TypeA)
			if poisoned(r) {
				poisonedAnswers++
				t.Errorf("%s %s: a forged answer reached the client: %v", what, name, r)
				continue
			}
			if err != nil || firstA(r) != "192.0.2.77" {
				t.Errorf("%s %s (pass %d): %v %v, want the real 192.0.2.77", what, name, pass, r, err)
			}
		}
	}
	if got := spoofed.Load(); got < 2*names {
		t.Fatalf("%d forgeries sent for %d queries, want 2 each", got, names)
	}

	req := new(dns.Msg).SetQuestion("control.example.com.", dns.TypeA)
	if _, err := otherHost.WriteToUDP(reply(req, dnstest.ForgedA.String()), control.LocalAddr().(*net.UDPAddr)); err != nil {
		t.Fatal(err)
	}
	control.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 512)
	if _, err := control.Read(buf); err != nil {
		t.Fatalf("control: an unconnected socket did not receive the forgery: %v", err)
	}
	d.Alive()
	figure(t, "off-path forgeries with the right ID and port, from another host and another port of the upstream: %d sent, %d reached a client of %d answers",
		spoofed.Load(), poisonedAnswers, 2*names)
}

func listenUDP(t *testing.T, addr string) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// reply answers req with one A record of ip, TTL 60, packed.
func reply(req *dns.Msg, ip string) []byte {
	m := new(dns.Msg).SetReply(req)
	m.Authoritative = true
	q := req.Question[0]
	m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.ParseIP(ip)}}
	b, err := m.Pack()
	if err != nil {
		panic(err)
	}
	return b
}
