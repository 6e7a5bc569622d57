package upstream

import (
	"log/slog"
	"net"
	"net/netip"
	"sync/atomic"
	"time"
)

// server is one upstream and its health. A server that failed is tried
// after the healthy ones until its cooldown ends or it answers again.
type server struct {
	addr    netip.AddrPort
	udpAddr *net.UDPAddr
	tcpAddr string
	pool    connPool       // idle TCP connections
	obs     ServerObserver // never nil once New returns
	// failedUntil is the Config.Now time, in Unix nanoseconds, before which
	// the server ranks behind healthy ones; 0 when healthy.
	failedUntil atomic.Int64
}

// order appends to dst the indexes of servers in the order to try them at
// now: healthy ones in configuration order, then failed ones, the one
// whose cooldown ends first first.
func order(dst []int, servers []server, now int64) []int {
	// Read each server's state once, so a concurrent change cannot make
	// a server appear twice or not at all.
	var stack [8]int64
	until := stack[:0]
	if len(servers) > len(stack) {
		until = make([]int64, 0, len(servers))
	}
	for i := range servers {
		until = append(until, servers[i].failedUntil.Load())
	}
	for i, u := range until {
		if u <= now {
			dst = append(dst, i)
		}
	}
	healthy := len(dst)
	for i, u := range until {
		if u <= now {
			continue
		}
		// Insertion sort: there are a handful of servers at most.
		j := len(dst)
		dst = append(dst, i)
		for j > healthy && until[dst[j-1]] > u {
			dst[j] = dst[j-1]
			j--
		}
		dst[j] = i
	}
	return dst
}

// markFailed starts the server's cooldown, logging only when it was healthy.
func (s *server) markFailed(now time.Time, cooldown time.Duration, log *slog.Logger, err error) {
	prev := s.failedUntil.Swap(now.Add(cooldown).UnixNano())
	s.obs.Healthy(false)
	if prev <= now.UnixNano() {
		log.Warn("upstream failing, preferring others", "server", s.addr, "for", cooldown, "err", err)
	}
}

// markOK ends the server's cooldown. It writes only when there is one, so
// the success path does not bounce the cache line between CPUs.
func (s *server) markOK(log *slog.Logger) {
	if s.failedUntil.Load() != 0 && s.failedUntil.Swap(0) != 0 {
		s.obs.Healthy(true)
		log.Info("upstream answering again", "server", s.addr)
	}
}
