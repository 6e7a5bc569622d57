package resolver

import (
	"context"
	"testing"

	"github.com/miekg/dns"

	rt "github.com/nodedns/nodedns/pkg/resolver/resolvertest"
)

// FuzzResolve feeds any bytes through the resolver (zone, forward and chase
// paths): it must not panic, and every answer must unpack, carry the query's
// ID, and fit the client's UDP limit.
func FuzzResolve(f *testing.F) {
	for _, name := range []string{"web.default.svc.cluster.local.", "ext.default.svc.cluster.local.", "api.example.com.", "nope.default.svc.cluster.local."} {
		f.Add(rt.Query(f, name, dns.TypeA, 1232))
		f.Add(rt.Query(f, name, dns.TypeANY, 0))
	}
	f.Add(rawMsg(0x0100, 2, 0, 0, 0, qA, qA))
	f.Add(rawMsg(2<<11, 1, 0, 0, 0, qA))
	r := newResolver(f, testZone(f), testUpstream(f))
	s := NewScratch()
	f.Fuzz(func(t *testing.T, msg []byte) {
		out := r.Resolve(context.Background(), s, nil, msg, UDP, client)
		if out == nil {
			return
		}
		if len(out) > s.q.UDPLimit(r.udpSize) {
			t.Fatalf("answer of %d octets over the limit %d", len(out), s.q.UDPLimit(r.udpSize))
		}
		m := new(dns.Msg)
		if err := m.Unpack(out); err != nil {
			t.Fatalf("answer does not unpack: %v\n%x", err, out)
		}
		if len(msg) >= 2 && m.Id != uint16(msg[0])<<8|uint16(msg[1]) {
			t.Fatalf("id %#x for query %x", m.Id, msg[:2])
		}
	})
}
