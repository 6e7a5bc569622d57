package upstream

import (
	"context"
	"crypto/rand"
	"encoding/binary"
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
	conn, err := net.DialUDP("udp", nil, srv.udpAddr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	conn.SetDeadline(f.deadline(ctx))
	defer context.AfterFunc(ctx, func() { conn.SetDeadline(aLongTimeAgo) })()

	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
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
			return append([]byte(nil), buf[:n]...), nil
		}
		if f.log.Enabled(ctx, slog.LevelDebug) {
			f.log.Debug("dropped mismatched upstream reply", "server", srv.addr, "transport", "udp", "bytes", n)
		}
	}
}

// exchangeTCP is exchangeUDP over a new TCP connection (RFC 1035 4.2.2
// framing). Mismatched messages on the stream are dropped likewise.
func (f *Forwarder) exchangeTCP(ctx context.Context, srv *server, query []byte, qEnd int) ([]byte, error) {
	deadline := f.deadline(ctx)
	d := net.Dialer{Deadline: deadline}
	conn, err := d.DialContext(ctx, "tcp", srv.tcpAddr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	conn.SetDeadline(deadline)
	defer context.AfterFunc(ctx, func() { conn.SetDeadline(aLongTimeAgo) })()

	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	id := newID()
	binary.BigEndian.PutUint16(buf, uint16(len(query)))
	n := copy(buf[2:], query)
	binary.BigEndian.PutUint16(buf[2:], id)
	if _, err := conn.Write(buf[:2+n]); err != nil {
		return nil, err
	}
	q := query[headerLen:qEnd]
	for {
		if _, err := io.ReadFull(conn, buf[:2]); err != nil {
			return nil, err
		}
		n := int(binary.BigEndian.Uint16(buf))
		if _, err := io.ReadFull(conn, buf[:n]); err != nil {
			return nil, err
		}
		if matches(buf[:n], id, q) {
			return append([]byte(nil), buf[:n]...), nil
		}
		if f.log.Enabled(ctx, slog.LevelDebug) {
			f.log.Debug("dropped mismatched upstream reply", "server", srv.addr, "transport", "tcp", "bytes", n)
		}
	}
}
