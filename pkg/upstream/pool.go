package upstream

import (
	"net"
	"sync"
	"time"
)

// connPool keeps a server's idle TCP connections for reuse (RFC 7766 6.2.1:
// clients should reuse connections). At most max are kept; each is closed
// after timeout unused, before servers usually close theirs (CoreDNS and
// other miekg/dns servers: 8 s). All methods are safe for concurrent use.
type connPool struct {
	max     int
	timeout time.Duration

	mu     sync.Mutex
	idle   []idleConn  // oldest first
	timer  *time.Timer // runs reap; created by the first put
	armed  bool        // timer is scheduled
	closed bool
}

type idleConn struct {
	conn  net.Conn
	since time.Time // real clock, as network deadlines
}

func newConnPool(max int, timeout time.Duration) connPool {
	return connPool{max: max, timeout: timeout, idle: make([]idleConn, 0, max)}
}

// get returns the most recently used idle connection, or nil. Taking the
// newest keeps one warm connection busy and lets surplus ones expire.
func (p *connPool) get() net.Conn {
	now := time.Now()
	p.mu.Lock()
	n := len(p.idle)
	if n == 0 {
		p.mu.Unlock()
		return nil
	}
	last := p.idle[n-1]
	if now.Sub(last.since) < p.timeout {
		p.idle[n-1] = idleConn{}
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		return last.conn
	}
	// The newest has expired (the reaper is late): so have the rest.
	stale := p.takeAll()
	p.mu.Unlock()
	closeAll(stale)
	return nil
}

// put returns a connection that is between messages, so fit for another
// query, to the pool; the oldest idle one is closed if the pool is full,
// and conn itself if the pool is closed or keeps nothing.
func (p *connPool) put(conn net.Conn) {
	p.mu.Lock()
	if p.closed || p.max <= 0 {
		p.mu.Unlock()
		conn.Close()
		return
	}
	var evicted net.Conn
	if len(p.idle) == p.max {
		evicted = p.idle[0].conn
		copy(p.idle, p.idle[1:])
		p.idle = p.idle[:len(p.idle)-1]
	}
	p.idle = append(p.idle, idleConn{conn: conn, since: time.Now()})
	if !p.armed {
		p.armed = true
		if p.timer == nil {
			p.timer = time.AfterFunc(p.timeout, p.reap)
		} else {
			p.timer.Reset(p.timeout)
		}
	}
	p.mu.Unlock()
	if evicted != nil {
		evicted.Close()
	}
}

// reap closes the connections idle for timeout, and runs again when the
// oldest left expires.
func (p *connPool) reap() {
	now := time.Now()
	p.mu.Lock()
	i := 0
	for i < len(p.idle) && now.Sub(p.idle[i].since) >= p.timeout {
		i++
	}
	stale := make([]net.Conn, i)
	for j := range i {
		stale[j] = p.idle[j].conn
	}
	n := copy(p.idle, p.idle[i:])
	clear(p.idle[n:])
	p.idle = p.idle[:n]
	p.armed = n > 0 && !p.closed
	if p.armed {
		p.timer.Reset(p.idle[0].since.Add(p.timeout).Sub(now))
	}
	p.mu.Unlock()
	closeAll(stale)
}

// close closes the idle connections; connections put later are closed at
// once. Safe to call more than once.
func (p *connPool) close() {
	p.mu.Lock()
	p.closed = true
	if p.timer != nil {
		p.timer.Stop()
	}
	p.armed = false
	stale := p.takeAll()
	p.mu.Unlock()
	closeAll(stale)
}

// len returns the number of idle connections.
func (p *connPool) len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle)
}

// takeAll empties the pool and returns its connections; p.mu is held.
func (p *connPool) takeAll() []net.Conn {
	out := make([]net.Conn, len(p.idle))
	for i := range p.idle {
		out[i] = p.idle[i].conn
	}
	clear(p.idle)
	p.idle = p.idle[:0]
	return out
}

func closeAll(conns []net.Conn) {
	for _, c := range conns {
		c.Close()
	}
}
