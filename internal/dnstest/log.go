package dnstest

import (
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Query is one logged query, as received.
type Query struct {
	Name      string // question name, fully qualified, case as sent
	Type      uint16
	Class     uint16
	ID        uint16
	Transport string // "udp" or "tcp"
	From      netip.AddrPort
	Time      time.Time
}

func (s *Server) record(q Query) {
	s.logMu.Lock()
	s.log = append(s.log, q)
	s.logMu.Unlock()
	if fn := s.onQuery.Load(); fn != nil {
		(*fn)(q)
	}
}

// OnQuery sets fn to be called with every query received, after it is
// logged and before it is answered (or dropped), so a test can wait for a
// query to arrive. fn is called from the serving goroutines, concurrently;
// it should not block for long. nil removes it.
func (s *Server) OnQuery(fn func(Query)) {
	if fn == nil {
		s.onQuery.Store(nil)
		return
	}
	s.onQuery.Store(&fn)
}

// Queries returns a copy of the query log, oldest first.
func (s *Server) Queries() []Query {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	return append([]Query(nil), s.log...)
}

// Len returns the number of queries logged.
func (s *Server) Len() int {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	return len(s.log)
}

// Count returns how many logged queries asked for name (compared
// case-insensitively, trailing dot optional) and qtype, over either
// transport.
func (s *Server) Count(name string, qtype uint16) int {
	name = dns.Fqdn(name)
	s.logMu.Lock()
	defer s.logMu.Unlock()
	n := 0
	for _, q := range s.log {
		if q.Type == qtype && strings.EqualFold(q.Name, name) {
			n++
		}
	}
	return n
}

// Reset clears the query log.
func (s *Server) Reset() {
	s.logMu.Lock()
	s.log = nil
	s.logMu.Unlock()
}
