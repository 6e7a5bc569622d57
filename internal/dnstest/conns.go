package dnstest

// TCPConns returns the number of TCP connections open on the server's
// side. A connection the client closed counts until the server has read
// its end, so poll for an expected value.
func (s *Server) TCPConns() int {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	return len(s.conns)
}

// CloseTCPConns closes every open TCP connection, as a server does when
// it finds them idle (RFC 7766 6.2.3); it keeps listening. It returns
// how many it closed.
func (s *Server) CloseTCPConns() int {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	for c := range s.conns {
		c.Close()
	}
	return len(s.conns)
}

// TCPClients returns the distinct client addresses (so connections) that
// sent the logged TCP queries, in order of their first query.
func (s *Server) TCPClients() []string {
	var out []string
	seen := map[string]bool{}
	for _, q := range s.Queries() {
		if k := q.From.String(); q.Transport == "tcp" && !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	return out
}
