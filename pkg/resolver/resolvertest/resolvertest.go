// Package resolvertest has fakes of the resolver's dependencies and helpers
// to build and check DNS messages in tests, with records written in zone-file
// syntax.
package resolvertest

import (
	"bytes"
	"context"
	"errors"
	"sort"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/miekg/dns"

	"github.com/nodedns/nodedns/pkg/zone"
)

// Wire returns the lowercase wire form of a presentation name.
func Wire(t testing.TB, name string) []byte {
	t.Helper()
	b := make([]byte, 256)
	n, err := dns.PackDomainName(dns.Fqdn(strings.ToLower(name)), b, 0, nil, false)
	if err != nil {
		t.Fatalf("PackDomainName(%q): %v", name, err)
	}
	return b[:n]
}

// Records packs rrs (zone-file syntax) uncompressed, as the zone does:
// records owned by qname get the owner pointer 0xC00C.
func Records(t testing.TB, qname string, rrs ...string) []byte {
	t.Helper()
	owner := Wire(t, qname)
	var out []byte
	for _, s := range rrs {
		rr, err := dns.NewRR(s)
		if err != nil || rr == nil {
			t.Fatalf("NewRR(%q): %v", s, err)
		}
		buf := make([]byte, 4096)
		n, err := dns.PackRR(rr, buf, 0, nil, false)
		if err != nil {
			t.Fatalf("PackRR(%q): %v", s, err)
		}
		b := buf[:n]
		if len(b) >= len(owner) && bytes.EqualFold(b[:len(owner)], owner) {
			b = append([]byte{0xC0, 0x0C}, b[len(owner):]...)
		}
		out = append(out, b...)
	}
	return out
}

// Result builds a zone.Result for qname with the given sections.
func Result(t testing.TB, kind zone.Kind, qname string, an, ns, ar []string) zone.Result {
	t.Helper()
	var rrs []string
	rrs = append(append(append(rrs, an...), ns...), ar...)
	r := zone.Result{Kind: kind, Records: Records(t, qname, rrs...), An: uint16(len(an)), Ns: uint16(len(ns)), Ar: uint16(len(ar))}
	switch kind {
	case zone.KindNXDomain, zone.KindSearchSuffix:
		r.Rcode = dns.RcodeNameError
	case zone.KindNotSynced:
		r.Rcode = dns.RcodeServerFailure
	}
	return r
}

// Chase builds the KindChase result of an ExternalName qname -> target.
func Chase(t testing.TB, qname, target string) zone.Result {
	t.Helper()
	r := Result(t, zone.KindChase, qname, []string{qname + " 5 IN CNAME " + target}, nil, nil)
	r.Chase = Wire(t, target)
	return r
}

// Zone is a fake Authority. Fill it before use; Lookup is then safe for
// concurrent use and does not allocate. Names not set get Default, or
// KindForward when Default is nil.
type Zone struct {
	m       map[string]map[uint16]zone.Result
	Default func(name []byte, qtype uint16) zone.Result
	lookups atomic.Int64
}

// Set makes Lookup(name, qtype) return r.
func (z *Zone) Set(t testing.TB, name string, qtype uint16, r zone.Result) {
	if z.m == nil {
		z.m = make(map[string]map[uint16]zone.Result)
	}
	k := string(Wire(t, name))
	if z.m[k] == nil {
		z.m[k] = make(map[uint16]zone.Result)
	}
	z.m[k][qtype] = r
}

// Lookup implements resolver.Authority.
func (z *Zone) Lookup(name []byte, qtype uint16, dst []byte) zone.Result {
	z.lookups.Add(1)
	if r, ok := z.m[string(name)][qtype]; ok {
		return r
	}
	if z.Default != nil {
		return z.Default(name, qtype)
	}
	return zone.Result{Kind: zone.KindForward}
}

// Lookups returns how many lookups were made.
func (z *Zone) Lookups() int64 { return z.lookups.Load() }

// Upstream is a fake resolver.Upstream.
type Upstream struct {
	ExchangeFunc func(ctx context.Context, query []byte) ([]byte, error)
	calls        atomic.Int64
}

// Exchange implements resolver.Upstream.
func (u *Upstream) Exchange(ctx context.Context, query []byte) ([]byte, error) {
	u.calls.Add(1)
	return u.ExchangeFunc(ctx, query)
}

// Calls returns how many exchanges were made.
func (u *Upstream) Calls() int64 { return u.calls.Load() }

// ErrUpstream is what Failing returns.
var ErrUpstream = errors.New("resolvertest: upstream failed")

// Failing returns an Upstream whose exchanges fail.
func Failing() *Upstream {
	return &Upstream{ExchangeFunc: func(context.Context, []byte) ([]byte, error) { return nil, ErrUpstream }}
}

// Static returns an Upstream that answers from rrs (zone-file syntax): the
// records whose owner and type match the question (or CNAME records of the
// name), else NXDOMAIN. It echoes the question and ID like a real server.
func Static(t testing.TB, rrs ...string) *Upstream {
	t.Helper()
	var parsed []dns.RR
	for _, s := range rrs {
		rr, err := dns.NewRR(s)
		if err != nil {
			t.Fatalf("NewRR(%q): %v", s, err)
		}
		parsed = append(parsed, rr)
	}
	return &Upstream{ExchangeFunc: func(_ context.Context, query []byte) ([]byte, error) {
		q := new(dns.Msg)
		if err := q.Unpack(query); err != nil {
			return nil, err
		}
		m := new(dns.Msg)
		m.SetReply(q)
		m.RecursionAvailable = true
		qq := q.Question[0]
		for _, rr := range parsed {
			h := rr.Header()
			if strings.EqualFold(h.Name, qq.Name) && (h.Rrtype == qq.Qtype || h.Rrtype == dns.TypeCNAME) {
				m.Answer = append(m.Answer, rr)
			}
		}
		if len(m.Answer) == 0 {
			m.Rcode = dns.RcodeNameError
		}
		if opt := q.IsEdns0(); opt != nil {
			m.SetEdns0(4096, opt.Do())
		}
		m.Compress = true
		return m.Pack()
	}}
}

// Query packs a query for name and qtype with ID 0x1234 and RD; edns > 0
// adds an OPT record with that payload size.
func Query(t testing.TB, name string, qtype uint16, edns uint16) []byte {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.Id = 0x1234
	if edns > 0 {
		m.SetEdns0(edns, false)
	}
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Unpack unpacks a message or fails the test.
func Unpack(t testing.TB, b []byte) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	if err := m.Unpack(b); err != nil {
		t.Fatalf("Unpack: %v (%x)", err, b)
	}
	return m
}

// Strings renders records in zone-file syntax, sorted.
func Strings(rrs []dns.RR) []string {
	out := make([]string, 0, len(rrs))
	for _, rr := range rrs {
		if rr.Header().Rrtype == dns.TypeOPT {
			continue
		}
		out = append(out, rr.String())
	}
	sort.Strings(out)
	return out
}

// Normalize parses rrs and renders them like Strings, so that expectations
// can be written loosely.
func Normalize(t testing.TB, rrs ...string) []string {
	t.Helper()
	var parsed []dns.RR
	for _, s := range rrs {
		rr, err := dns.NewRR(s)
		if err != nil {
			t.Fatalf("NewRR(%q): %v", s, err)
		}
		parsed = append(parsed, rr)
	}
	return Strings(parsed)
}

// CheckSection compares got with want (zone-file syntax), order-independent.
func CheckSection(t testing.TB, section string, got []dns.RR, want ...string) {
	t.Helper()
	g, w := Strings(got), Normalize(t, want...)
	if strings.Join(g, "\n") != strings.Join(w, "\n") {
		t.Errorf("%s:\n got  %q\n want %q", section, g, w)
	}
}
