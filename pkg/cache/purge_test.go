package cache

import (
	"bytes"
	"testing"

	"github.com/miekg/dns"
)

func TestPurge(t *testing.T) {
	c, _ := newCache(t)
	names := []string{"www.corp.example.", "corp.example.", "api.example.com.", "failed.corp.example."}
	for _, n := range names[:3] {
		r := query(t, n, dns.TypeA, false)
		c.Set(&r.q, answer(t, r, 0, []string{n + " 30 IN A 192.0.2.1"}, nil, nil))
	}
	failed := query(t, names[3], dns.TypeA, false)
	c.Fail(&failed.q) // a failure mark is purged too
	if c.Len() != 4 {
		t.Fatalf("Len %d, want 4", c.Len())
	}
	var seen [][]byte
	n := c.Purge(func(name []byte) bool {
		seen = append(seen, append([]byte(nil), name...))
		return bytes.HasSuffix(name, []byte("\x04corp\x07example\x00"))
	})
	if n != 3 || c.Len() != 1 {
		t.Errorf("Purge removed %d, %d left; want 3 removed, 1 left", n, c.Len())
	}
	for _, s := range seen {
		if s[len(s)-1] != 0 {
			t.Errorf("match got %q: want a wire name with its root label", s)
		}
	}
	if get(t, c, query(t, "api.example.com.", dns.TypeA, false)) == nil {
		t.Error("an entry outside the purged names went")
	}
	if m := get(t, c, failed); m != nil {
		t.Errorf("purged failure mark still answers: %v", m)
	}
	if n := c.Purge(nil); n != 1 || c.Len() != 0 {
		t.Errorf("Purge(nil) removed %d, %d left", n, c.Len())
	}
}
