package cache

import (
	"fmt"
	"testing"

	"github.com/miekg/dns"
)

func benchCache(b *testing.B) (*Cache, *req) {
	c, clk := newCache(b)
	r := query(b, "Api.Example.com.", dns.TypeA, true)
	c.Set(&r.q, answer(b, r, 0, []string{"api.example.com. 60 IN A 192.0.2.10", "api.example.com. 60 IN A 192.0.2.11"}, nil, nil))
	clk.Advance(3e9) // an aged entry: the TTL walk runs
	return c, r
}

// BenchmarkGetHit: one cache hit, patched (ID, case, TTLs, OPT).
func BenchmarkGetHit(b *testing.B) {
	c, r := benchCache(b)
	buf := make([]byte, 0, 4096)
	b.ReportAllocs()
	for b.Loop() {
		if _, hit := c.Get(buf, r.msg, &r.q); hit == Miss {
			b.Fatal("miss")
		}
	}
}

// BenchmarkGetHitParallel: hits from every P on distinct names, so they
// spread over the shards as real traffic does.
func BenchmarkGetHitParallel(b *testing.B) {
	c, _ := newCache(b)
	var reqs []*req
	for i := range 256 {
		r := query(b, fmt.Sprintf("n%d.example.com.", i), dns.TypeA, true)
		c.Set(&r.q, answer(b, r, 0, []string{fmt.Sprintf("n%d.example.com. 60 IN A 192.0.2.1", i)}, nil, nil))
		reqs = append(reqs, r)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		buf := make([]byte, 0, 4096)
		i := 0
		for pb.Next() {
			r := reqs[i&255]
			i++
			if _, hit := c.Get(buf, r.msg, &r.q); hit == Miss {
				b.Error("miss")
				return
			}
		}
	})
}

func BenchmarkGetMiss(b *testing.B) {
	c, _ := newCache(b)
	r := query(b, "api.example.com.", dns.TypeA, true)
	buf := make([]byte, 0, 4096)
	b.ReportAllocs()
	for b.Loop() {
		c.Get(buf, r.msg, &r.q)
	}
}

func BenchmarkSet(b *testing.B) {
	c, _ := newCache(b)
	r := query(b, "api.example.com.", dns.TypeA, true)
	up := answer(b, r, 0, []string{"api.example.com. 60 IN A 192.0.2.10", "api.example.com. 60 IN A 192.0.2.11"}, nil, nil)
	b.ReportAllocs()
	for b.Loop() {
		c.Set(&r.q, up)
	}
}
