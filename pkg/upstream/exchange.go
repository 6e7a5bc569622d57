package upstream

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"
)

const (
	maxMsgSize = 65535 // EDNS0 replies over UDP can be this large (RFC 6891 6.2.5)
	flagTC     = 0x02  // in byte 2 of the header
)

// bufPool holds buffers for one message plus the TCP length prefix.
var bufPool = sync.Pool{New: func() any {
	b := make([]byte, 2+maxMsgSize)
	return &b
}}

// udpBufSize bounds a UDP reply we read. The resolver advertises 1232
// octets upstream, so replies fit; a 64 KiB buffer per exchange would
// make a flood of misses cost MaxInFlight × 64 KiB. A datagram that fills
// the buffer may have been cut, and is fetched whole over TCP.
const udpBufSize = 4096

var udpBufPool = sync.Pool{New: func() any {
	b := make([]byte, udpBufSize)
	return &b
}}

var errQueryTooLarge = errors.New("query larger than a UDP read buffer")

// aLongTimeAgo is a deadline in the past, to wake a blocked read.
var aLongTimeAgo = time.Unix(1, 0)

// newID returns a query ID from crypto/rand, so an off-path attacker
// cannot predict it (RFC 5452 4.3).
func newID() uint16 {
	var b [2]byte
	rand.Read(b[:]) // never fails (crypto/rand, Go 1.24+)
	return binary.BigEndian.Uint16(b[:])
}

// exchangeUDP sends query with a fresh ID from a fresh socket (a kernel
// chosen, randomised source port, RFC 5452 4.5) and returns the first
// reply that matches, dropping others until the try's deadline. The
// returned reply still carries the fresh ID.
func (f *Forwarder) exchangeUDP(ctx context.Context, srv *server, query []byte, qEnd int) ([]byte, error) {
	start := time.Now()
	srv.obs.Request(UDP)
	conn, err := net.DialUDP("udp", nil, srv.udpAddr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	conn.SetDeadline(f.deadline(ctx, start))
	defer context.AfterFunc(ctx, func() { conn.SetDeadline(aLongTimeAgo) })()

	bp := udpBufPool.Get().(*[]byte)
	defer udpBufPool.Put(bp)
	buf := *bp
	if len(query) > len(buf) {
		return nil, errQueryTooLarge
	}
	id := newID()
	n := copy(buf, query)
	binary.BigEndian.PutUint16(buf, id)
	if _, err := conn.Write(buf[:n]); err != nil {
		return nil, err
	}
	q := query[headerLen:qEnd]
	for {
		// A connected socket gets datagrams from the server's address
		// only; a reply to an earlier, abandoned query cannot arrive
		// because the socket is new.
		n, err := conn.Read(buf)
		if err != nil {
			return nil, err
		}
		if matches(buf[:n], id, q) {
			srv.obs.Reply(UDP, time.Since(start))
			reply := append([]byte(nil), buf[:n]...)
			if n == len(buf) {
				reply[2] |= flagTC // maybe cut: try() fetches it over TCP
			}
			return reply, nil
		}
		srv.obs.Error(ErrorMismatch)
		if f.log.Enabled(ctx, slog.LevelDebug) {
			f.log.Debug("dropped mismatched upstream reply", "server", srv.addr, "transport", "udp", "bytes", n)
		}
	}
}

// exchangeTCP is exchangeUDP over TCP (RFC 1035 4.2.2 framing), on the
// server's most recently used idle connection if it has one, else on a
// new one.
func (f *Forwarder) exchangeTCP(ctx context.Context, srv *server, query []byte, qEnd int) ([]byte, error) {
	start := time.Now()
	deadline := f.deadline(ctx, start)
	srv.obs.Request(TCP)
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	if conn := srv.pool.get(); conn != nil {
		reply, replied, err := f.roundTripTCP(ctx, srv, conn, *bp, query, qEnd, deadline)
		if err == nil {
			srv.obs.Reply(TCP, time.Since(start))
			return reply, nil
		}
		// RFC 7766 6.2.3: a server may close an idle connection at any
		// time (and miekg/dns ones do after 128 queries), so a failure
		// before any reply byte is most likely that: send once more on
		// a new connection. A timeout is not that, and used the try up.
		if replied || isTimeout(err) || ctxDone(ctx) != nil {
			return nil, err
		}
		f.log.Debug("reused upstream connection failed, retrying on a new one", "server", srv.addr, "err", err)
	}
	d := net.Dialer{Deadline: deadline}
	conn, err := d.DialContext(ctx, "tcp", srv.tcpAddr)
	if err != nil {
		return nil, err
	}
	reply, _, err := f.roundTripTCP(ctx, srv, conn, *bp, query, qEnd, deadline)
	if err != nil {
		return nil, err
	}
	srv.obs.Reply(TCP, time.Since(start))
	return reply, nil
}

// roundTripTCP sends query with a fresh ID on conn and reads messages
// until one matches, dropping the others (forged, or late replies to an
// earlier query on the connection). It owns conn: after a match, when
// the stream is between messages, conn goes back to the pool; after any
// failure it is closed, so a late reply to this query can never reach
// another. replied reports whether any reply byte was read.
func (f *Forwarder) roundTripTCP(ctx context.Context, srv *server, conn net.Conn, buf, query []byte, qEnd int, deadline time.Time) (reply []byte, replied bool, err error) {
	conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(aLongTimeAgo) })
	reply, replied, err = f.readTCP(ctx, srv, conn, buf, query, qEnd)
	// A connection whose AfterFunc has started could get its deadline
	// moved under its next user: not reusable.
	if stopped := stop(); err == nil && stopped {
		srv.pool.put(conn)
	} else {
		conn.Close()
	}
	return reply, replied, err
}

func (f *Forwarder) readTCP(ctx context.Context, srv *server, conn net.Conn, buf, query []byte, qEnd int) ([]byte, bool, error) {
	id := newID()
	binary.BigEndian.PutUint16(buf, uint16(len(query)))
	n := copy(buf[2:], query)
	binary.BigEndian.PutUint16(buf[2:], id)
	if _, err := conn.Write(buf[:2+n]); err != nil {
		return nil, false, err
	}
	q := query[headerLen:qEnd]
	replied := false
	for {
		m, err := io.ReadFull(conn, buf[:2])
		if replied = replied || m > 0; err != nil {
			return nil, replied, err
		}
		n := int(binary.BigEndian.Uint16(buf))
		if _, err := io.ReadFull(conn, buf[:n]); err != nil {
			return nil, true, err
		}
		if matches(buf[:n], id, q) {
			return append([]byte(nil), buf[:n]...), true, nil
		}
		srv.obs.Error(ErrorMismatch)
		if f.log.Enabled(ctx, slog.LevelDebug) {
			f.log.Debug("dropped mismatched upstream reply", "server", srv.addr, "transport", "tcp", "bytes", n)
		}
	}
}
