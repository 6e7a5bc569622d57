package dnstest

import (
	"net"
	"net/netip"
	"time"

	"github.com/miekg/dns"
)

// Behavior says how the server treats queries. The zero value answers
// normally from the records.
type Behavior struct {
	// Drop: log queries but never answer them (a silent server).
	Drop bool
	// Delay: wait this long before sending the real answer. Forged replies
	// are sent before the wait, as an off-path attacker racing the real
	// server would.
	Delay time.Duration
	// Rcode, if not 0 (NOERROR), answers every query with this rcode and no
	// records, e.g. dns.RcodeServerFailure or dns.RcodeRefused.
	Rcode int
	// Truncate: over UDP answer with TC set and no records; TCP answers in
	// full. (Answers larger than the client's UDP size, 512 or its EDNS0
	// size, are truncated over UDP whatever this says.)
	Truncate bool
	// Forge: before the real answer, send one forged reply per flag set.
	// Each carries a poison record for the asked name (ForgedA or
	// ForgedAAAA), so a client that accepts one gives itself away.
	Forge Forge
}

// Forge selects forged replies sent ahead of the real one.
type Forge uint8

const (
	// ForgeID: the right question with a wrong ID.
	ForgeID Forge = 1 << iota
	// ForgeName: the right ID with a different question name of the same
	// length: the first letter changed ("api.example.com." becomes
	// "xpi.example.com."; the root becomes "forged.").
	ForgeName
	// ForgeType: the right ID and name with a different question type.
	ForgeType
)

// Poison addresses carried by forged replies (TEST-NET-3 and the
// documentation prefix, RFC 5737 and RFC 3849).
var (
	ForgedA    = netip.MustParseAddr("203.0.113.66")
	ForgedAAAA = netip.MustParseAddr("2001:db8:bad::66")
)

// SetBehavior switches how the server treats queries from now on; queries
// already being handled keep the behaviour they started with.
func (s *Server) SetBehavior(b Behavior) { s.behavior.Store(&b) }

// Behavior returns the current behaviour.
func (s *Server) Behavior() Behavior { return *s.behavior.Load() }

// forged builds the forged reply of kind f to req.
func forged(req *dns.Msg, f Forge) *dns.Msg {
	q := req.Question[0]
	m := new(dns.Msg)
	m.SetReply(req)
	m.RecursionAvailable = true
	switch f {
	case ForgeID:
		m.Id = req.Id + 1
	case ForgeName:
		m.Question[0].Name = forgedName(q.Name)
	case ForgeType:
		m.Question[0].Qtype = dns.TypeA
		if q.Qtype == dns.TypeA {
			m.Question[0].Qtype = dns.TypeAAAA
		}
	}
	hdr := dns.RR_Header{Name: q.Name, Class: dns.ClassINET, Ttl: 3600}
	if q.Qtype == dns.TypeAAAA {
		hdr.Rrtype = dns.TypeAAAA
		m.Answer = []dns.RR{&dns.AAAA{Hdr: hdr, AAAA: net.IP(ForgedAAAA.AsSlice())}}
	} else {
		hdr.Rrtype = dns.TypeA
		m.Answer = []dns.RR{&dns.A{Hdr: hdr, A: net.IP(ForgedA.AsSlice())}}
	}
	return m
}

// forgedName returns a name that differs from name, ignoring case, in its
// first byte only, so a client must compare names, not just lengths.
func forgedName(name string) string {
	if name == "." || name == "" {
		return "forged."
	}
	c := byte('x')
	if name[0] == 'x' || name[0] == 'X' {
		c = 'y'
	}
	return string(c) + name[1:]
}
