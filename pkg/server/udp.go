package server

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/nodedns/nodedns/internal/dnswire"
	"github.com/nodedns/nodedns/pkg/resolver"
)

// We own the UDP read loop rather than use miekg/dns's server, which unpacks
// every message into a dns.Msg and starts a goroutine per packet: that is
// most of its cost per query (BENCHMARKING.md). Here a fixed set of reader
// goroutines each keep their own buffers and Scratch, so a zone answer is
// read, parsed, looked up, built and written without allocating; only
// queries that need the upstream leave the reader (resolver.Handle). On
// Linux the readers work in batches (udp_linux.go); readUDPLoop, one packet
// per syscall, is the portable version.

// listenUDP binds n SO_REUSEPORT sockets on ap.
func listenUDP(ctx context.Context, ap netip.AddrPort, n, rcvbuf int) ([]*net.UDPConn, error) {
	lc := net.ListenConfig{Control: ReusePort}
	var conns []*net.UDPConn
	for range n {
		pc, err := lc.ListenPacket(ctx, udpNetwork(ap.Addr()), ap.String())
		if err != nil {
			return conns, err
		}
		c := pc.(*net.UDPConn)
		conns = append(conns, c)
		if rcvbuf > 0 {
			if err := c.SetReadBuffer(rcvbuf); err != nil {
				return conns, err
			}
		}
	}
	return conns, nil
}

// udpSender sends asynchronous answers from a socket; WriteToUDPAddrPort is
// safe for concurrent use.
type udpSender struct {
	conn *net.UDPConn
	log  *slog.Logger
}

func (u *udpSender) Send(msg []byte, to netip.AddrPort) {
	if _, err := u.conn.WriteToUDPAddrPort(msg, to); err != nil {
		u.log.Debug("udp write failed", slog.Any("err", err))
	}
}

// readUDP serves one socket until Shutdown.
func (s *Server) readUDP(c *net.UDPConn, snd *udpSender) {
	defer s.wg.Done()
	if s.cfg.udpLoop || !s.readUDPBatch(c, snd) {
		s.readUDPLoop(c, snd)
	}
}

// readUDPLoop reads, answers and writes one packet at a time, with buffers
// of its own (ReadFromUDPAddrPort and WriteToUDPAddrPort do not allocate).
func (s *Server) readUDPLoop(c *net.UDPConn, snd *udpSender) {
	sc := resolver.NewScratch()
	in := make([]byte, dnswire.MaxMsgLen)
	out := make([]byte, 0, dnswire.MaxMsgLen)
	var wait time.Duration
	for {
		n, addr, err := c.ReadFromUDPAddrPort(in)
		if err != nil {
			if s.stopping.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Debug("udp read failed", slog.Any("err", err))
			wait = backoff(wait)
			continue
		}
		wait = 0
		if reply := s.res.Handle(sc, out[:0], in[:n], resolver.UDP, snd, addr); reply != nil {
			if _, err := c.WriteToUDPAddrPort(reply, addr); err != nil {
				s.log.Debug("udp write failed", slog.Any("err", err))
			}
		}
	}
}
