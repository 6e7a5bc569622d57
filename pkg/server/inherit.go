package server

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
)

// Listener is one listening socket of a Server: a UDP socket or a TCP
// listener (exactly one of the two is set) bound to Addr.
type Listener struct {
	Addr netip.AddrPort
	UDP  *net.UDPConn
	TCP  *net.TCPListener
}

func (l Listener) close() {
	if l.UDP != nil {
		l.UDP.Close()
	}
	if l.TCP != nil {
		l.TCP.Close()
	}
}

// Listeners returns the sockets the Server reads and accepts on, with the
// address of each, for handing them to the instance that replaces this one.
// The Server keeps owning them: callers may duplicate them (a duplicate
// outlives the Server's Shutdown, and so does the socket and whatever is
// queued in it) but must not close them. Nil before Start and once Shutdown
// has begun.
func (s *Server) Listeners() []Listener {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.started || s.stopping.Load() {
		return nil
	}
	return slices.Clone(s.lns)
}

// checkInherited validates Config.Inherited against Config.Addrs.
func checkInherited(in []Listener, addrs []string) error {
	for _, l := range in {
		if (l.UDP == nil) == (l.TCP == nil) {
			return fmt.Errorf("server: inherited socket for %s: want exactly one of UDP and TCP", l.Addr)
		}
		if !slices.Contains(addrs, l.Addr.String()) || l.Addr.Port() == 0 {
			return fmt.Errorf("server: inherited socket for %s: not one of Addrs %v", l.Addr, addrs)
		}
	}
	return nil
}

// adopt moves the inherited sockets of ap from *in to *lns, setting their
// receive buffer as configured, and says what they cover: how many UDP
// sockets, and whether a TCP listener. Two TCP listeners for one address
// are an error: the second one's queue would never be accepted from.
func (s *Server) adopt(in, lns *[]Listener, ap netip.AddrPort) (udp int, tcp bool, err error) {
	var errs []error
	*in = slices.DeleteFunc(*in, func(l Listener) bool {
		if l.Addr != ap {
			return false
		}
		*lns = append(*lns, l) // owned by the Server now, closed by a failed Start
		switch {
		case l.UDP != nil:
			udp++
			if s.cfg.UDPReadBuffer > 0 {
				if err := l.UDP.SetReadBuffer(s.cfg.UDPReadBuffer); err != nil {
					errs = append(errs, fmt.Errorf("udp read buffer: %w", err))
				}
			}
		case tcp:
			errs = append(errs, errors.New("two TCP listeners"))
		default:
			tcp = true
		}
		return true
	})
	return udp, tcp, errors.Join(errs...)
}
