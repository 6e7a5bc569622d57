package server

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/nodedns/nodedns/internal/dnswire"
	"github.com/nodedns/nodedns/pkg/resolver"
)

func listenTCP(ctx context.Context, ap netip.AddrPort) (net.Listener, error) {
	lc := net.ListenConfig{Control: ReusePort}
	return lc.Listen(ctx, tcpNetwork(ap.Addr()), ap.String())
}

// tcpBuf holds the buffers of one TCP query; pooled, taken only once a
// length prefix has arrived, so idle connections hold no buffer.
type tcpBuf struct {
	in  []byte
	out []byte // 2-byte length prefix + answer
	sc  *resolver.Scratch
}

func newTCPBuf() *tcpBuf {
	return &tcpBuf{
		in:  make([]byte, dnswire.MaxMsgLen),
		out: make([]byte, 0, 2+dnswire.MaxMsgLen),
		sc:  resolver.NewScratch(),
	}
}

// acceptTCP accepts connections until the listener is closed.
func (s *Server) acceptTCP(l net.Listener) {
	defer s.wg.Done()
	var wait time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if s.stopping.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Debug("tcp accept failed", slog.Any("err", err))
			wait = backoff(wait) // e.g. EMFILE: let connections close
			continue
		}
		wait = 0
		if !s.takeSlot() {
			// Every slot busy with a query: close at once; the client
			// may retry (RFC 7766 §6.2.2 lets servers close connections
			// to manage resources).
			c.Close()
			continue
		}
		st := s.track(c)
		if st == nil {
			<-s.connSem
			c.Close()
			continue
		}
		go s.serveTCP(c, st)
	}
}

// takeSlot takes one of TCPMaxConns slots. When all are taken, the
// connection idle the longest gives its up, so clients that hold
// connections open without asking cannot keep TCP shut for everyone until
// they time out.
func (s *Server) takeSlot() bool {
	select {
	case s.connSem <- struct{}{}:
		return true
	default:
	}
	if !s.reclaimIdle() {
		return false
	}
	// A woken connection frees its slot as soon as its goroutine runs.
	t := time.NewTimer(time.Second)
	defer t.Stop()
	select {
	case s.connSem <- struct{}{}:
		return true
	case <-t.C:
		return false
	}
}

// serveTCP answers the queries of one connection in order (RFC 7766 §6.2.1.1
// allows it; pipelined queries wait for the one before). Each message must
// arrive whole within the idle timeout, or the connection is closed.
func (s *Server) serveTCP(c net.Conn, st *connState) {
	defer func() {
		s.untrack(c)
		c.Close()
		<-s.connSem
		s.wg.Done()
	}()
	var hdr [2]byte
	// The peer, for autopath and the query log; zero (no autopath) if the
	// listener is not TCP/IP.
	var peer netip.AddrPort
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		ap := a.AddrPort()
		peer = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	for {
		c.SetReadDeadline(time.Now().Add(s.idle))
		// Checked after setting the deadline: Shutdown sets stopping, then
		// a past deadline, so one of the two stops this read.
		if s.stopping.Load() {
			return
		}
		s.markIdle(st)
		_, err := io.ReadFull(c, hdr[:])
		st.idleSince.Store(0)
		if err != nil {
			return
		}
		n := int(binary.BigEndian.Uint16(hdr[:]))
		b := s.tcpBufs.Get().(*tcpBuf)
		if _, err := io.ReadFull(c, b.in[:n]); err != nil {
			s.tcpBufs.Put(b)
			return
		}
		out := s.res.Resolve(s.ctx, b.sc, b.out[:2], b.in[:n], resolver.TCP, peer)
		if out == nil {
			s.tcpBufs.Put(b)
			continue
		}
		binary.BigEndian.PutUint16(out, uint16(len(out)-2))
		c.SetWriteDeadline(time.Now().Add(s.idle))
		_, err = c.Write(out)
		s.tcpBufs.Put(b)
		if err != nil {
			return
		}
	}
}
