package cache

import (
	"bytes"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/nodedns/nodedns/internal/dnswire"
)

// FuzzCacheSet offers arbitrary replies to Set, for a query with the
// reply's own question when it has one, and checks that Set, Get, Stale
// and Fail never panic and that every answer served carries the query's
// ID and question.
func FuzzCacheSet(f *testing.F) {
	r := query(f, "www.example.com.", dns.TypeA, true)
	f.Add(answer(f, r, 0, []string{"www.example.com. 300 IN CNAME web.example.com.", "web.example.com. 20 IN A 192.0.2.1"},
		[]string{"example.com. 7 IN NS ns1.example.com."}, []string{"ns1.example.com. 60 IN A 192.0.2.53"}), uint8(3))
	f.Add(answer(f, r, dns.RcodeNameError, nil, []string{soa}, nil), uint8(1))
	f.Add(answer(f, r, 0, nil, []string{soaLong}, nil), uint8(0))
	// An answer record whose length runs past the end.
	f.Add([]byte{0, 0, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0, 1, 'a', 0, 0, 1, 0, 1, 0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 5, 0, 9, 1, 2, 3, 4}, uint8(0))
	f.Fuzz(func(t *testing.T, reply []byte, steps uint8) {
		c, clk := newCache(t, func(cfg *Config) { cfg.Prefetch, cfg.PrefetchHits, cfg.Size = true, 1, 4 })
		qmsg := []byte{0xAB, 0xCD, 1, 0x10, 0, 1, 0, 0, 0, 0, 0, 0} // RD, CD
		var l dnswire.Reply
		if dnswire.ParseReply(reply, &l) == nil {
			qmsg = append(qmsg, reply[dnswire.HeaderLen:l.QEnd]...)
		} else {
			qmsg = append(qmsg, 1, 'a', 0, 0, 1, 0, 1)
		}
		var q dnswire.Query
		if dnswire.ParseQuery(qmsg, &q) != nil {
			return
		}
		orig := bytes.Clone(reply)
		c.Set(&q, reply)
		if len(reply) != len(orig) {
			t.Fatal("Set resized the reply")
		}
		check := func(out []byte, ok bool) {
			t.Helper()
			if !ok {
				return
			}
			if dnswire.ID(out) != 0xABCD || len(out) < q.QEnd || !bytes.Equal(out[dnswire.HeaderLen:q.QEnd], qmsg[dnswire.HeaderLen:q.QEnd]) {
				t.Fatalf("answer %x to query %x", out, qmsg)
			}
			var got dnswire.Reply
			if err := dnswire.ParseReply(out, &got); err != nil {
				t.Fatalf("answer does not parse: %v (%x)", err, out)
			}
		}
		for i := range int(steps%8) + 1 {
			out, hit := c.Get(nil, qmsg, &q)
			check(out, hit != Miss)
			check(c.Stale(nil, qmsg, &q))
			if i%3 == 2 {
				c.Fail(&q)
			}
			clk.Advance(time.Duration(i) * 7 * time.Second)
		}
	})
}
