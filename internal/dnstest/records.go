package dnstest

import (
	"fmt"
	"strings"

	"github.com/miekg/dns"
)

// Add adds records in zone-file syntax with absolute names, e.g.
// "api.example.com. 60 IN A 192.0.2.1". An SOA replaces the one at its
// name (each zone starts with a default SOA whose minimum is 30). A record
// that does not parse fails the test for a server made by Start, and
// panics for one made by New: records in tests are constants.
func (s *Server) Add(rrs ...string) {
	if s.tb != nil {
		s.tb.Helper()
	}
	parsed := make([]dns.RR, 0, len(rrs))
	for _, text := range rrs {
		rr, err := dns.NewRR(text)
		if err != nil {
			err = fmt.Errorf("dnstest: record %q: %w", text, err)
			if s.tb != nil {
				s.tb.Fatal(err)
			}
			panic(err)
		}
		if rr != nil {
			parsed = append(parsed, rr)
		}
	}
	s.AddRR(parsed...)
}

// AddRR adds records; see Add.
func (s *Server) AddRR(rrs ...dns.RR) {
	s.recMu.Lock()
	defer s.recMu.Unlock()
	for _, rr := range rrs {
		s.put(dns.Copy(rr))
	}
}

// Remove deletes the records of name with type qtype (dns.TypeANY: all
// records of name).
func (s *Server) Remove(name string, qtype uint16) {
	key := strings.ToLower(dns.Fqdn(name))
	s.recMu.Lock()
	defer s.recMu.Unlock()
	kept := s.records[key][:0]
	for _, rr := range s.records[key] {
		if qtype != dns.TypeANY && rr.Header().Rrtype != qtype {
			kept = append(kept, rr)
		}
	}
	if len(kept) == 0 {
		delete(s.records, key)
		return
	}
	s.records[key] = kept
}

// put adds rr; the caller holds recMu.
func (s *Server) put(rr dns.RR) {
	key := strings.ToLower(rr.Header().Name)
	old := s.records[key]
	for i, o := range old {
		if rr.Header().Rrtype == dns.TypeSOA && o.Header().Rrtype == dns.TypeSOA {
			old[i] = rr
			return
		}
		if dns.IsDuplicate(o, rr) {
			return
		}
	}
	s.records[key] = append(old, rr)
}

func (s *Server) addDefaultSOAs() {
	s.recMu.Lock()
	defer s.recMu.Unlock()
	for _, z := range s.zones {
		if s.soa(z) != nil {
			continue // given by WithRecords
		}
		host := "dnstest."
		if z != "." {
			host = z
		}
		s.put(&dns.SOA{
			Hdr:     dns.RR_Header{Name: z, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 60},
			Ns:      "ns." + host,
			Mbox:    "hostmaster." + host,
			Serial:  1,
			Refresh: 7200,
			Retry:   1800,
			Expire:  86400,
			Minttl:  30,
		})
	}
}

// respond builds the real answer to req under behaviour b.
func (s *Server) respond(req *dns.Msg, b Behavior, transport string) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	m.RecursionAvailable = true
	switch {
	case req.Opcode != dns.OpcodeQuery:
		m.Rcode = dns.RcodeNotImplemented
	case b.Rcode != dns.RcodeSuccess:
		m.Rcode = b.Rcode
	case b.Truncate && transport == "udp":
		m.Truncated = true
	default:
		s.lookup(m, req.Question[0])
	}
	size := dns.MinMsgSize
	if opt := req.IsEdns0(); opt != nil {
		size = max(size, int(opt.UDPSize()))
		m.SetEdns0(1232, opt.Do())
	}
	if transport == "udp" {
		m.Truncate(size) // RFC 1035 4.2.1, RFC 6891 6.2.5
	} else {
		m.Compress = true
	}
	return m
}

// lookup fills m with the answer to q from the records, following CNAMEs
// within the server's zones.
func (s *Server) lookup(m *dns.Msg, q dns.Question) {
	s.recMu.RLock()
	defer s.recMu.RUnlock()
	name, owner := strings.ToLower(q.Name), q.Name
	if s.zoneOf(name) == "" {
		m.Rcode = dns.RcodeRefused
		m.Authoritative = false
		return
	}
	for range 8 {
		zone := s.zoneOf(name)
		if zone == "" {
			return // CNAME out of our zones: the client chases it
		}
		rrs := s.records[name]
		if len(rrs) == 0 {
			if !s.hasDescendants(name) {
				m.Rcode = dns.RcodeNameError
			} // else an empty non-terminal: NODATA (RFC 8020)
			m.Ns = s.soa(zone)
			return
		}
		var cname *dns.CNAME
		found := false
		for _, rr := range rrs {
			switch t := rr.Header().Rrtype; {
			case t == q.Qtype || q.Qtype == dns.TypeANY:
				m.Answer = append(m.Answer, withOwner(rr, owner))
				found = true
			case t == dns.TypeCNAME:
				cname = rr.(*dns.CNAME)
			}
		}
		if found {
			return
		}
		if cname == nil {
			m.Ns = s.soa(zone) // NODATA (RFC 2308 2.2)
			return
		}
		m.Answer = append(m.Answer, withOwner(cname, owner))
		name, owner = strings.ToLower(cname.Target), cname.Target
	}
}

// withOwner returns a copy of rr owned by owner, so answers echo the
// question's case.
func withOwner(rr dns.RR, owner string) dns.RR {
	c := dns.Copy(rr)
	c.Header().Name = owner
	return c
}

// zoneOf returns the longest zone containing name, or "".
func (s *Server) zoneOf(name string) string {
	best := ""
	for _, z := range s.zones {
		if dns.IsSubDomain(z, name) && len(z) > len(best) {
			best = z
		}
	}
	return best
}

func (s *Server) hasDescendants(name string) bool {
	suffix := "." + name
	if name == "." {
		suffix = "."
	}
	for k := range s.records {
		if k != name && strings.HasSuffix(k, suffix) {
			return true
		}
	}
	return false
}

func (s *Server) soa(zone string) []dns.RR {
	for _, rr := range s.records[zone] {
		if rr.Header().Rrtype == dns.TypeSOA {
			return []dns.RR{dns.Copy(rr)}
		}
	}
	return nil
}
