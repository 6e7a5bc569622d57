package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sync/atomic"
	"time"

	"github.com/nodedns/nodedns/pkg/admin"
	"github.com/nodedns/nodedns/pkg/handoff"
	"github.com/nodedns/nodedns/pkg/server"
	"github.com/nodedns/nodedns/pkg/zone"
)

// upgrade is this instance's side of the socket handoff (pkg/handoff) that
// makes a rolling update lose no query:
//
//  1. At start, takeOver asks the running instance (if any answers on
//     --handoff-socket) for the sockets of our DNS and HTTP addresses; the
//     server starts on them, and binds afresh only what it did not get.
//  2. listen then serves the handoff socket for our own successor, and
//     tells the previous instance we serve its sockets.
//  3. At SIGTERM, successor asks whoever now owns the handoff socket
//     whether it serves our addresses: if so we skip the grace period and
//     leave the interface and rules to it.
//
// Why both instances keep serving after a handoff, until the old one gets
// SIGTERM, rather than the old one stopping (or exiting) at once: they read
// the same kernel sockets, so two readers lose nothing, and the old one is
// still there if the new one crashes while starting. Exiting on its own
// would make kubelet restart the old container (DaemonSet pods always
// restart), which would take the sockets back, and so on. In a DaemonSet
// surge update the controller deletes the old pod once the new one is
// ready; that SIGTERM ends the overlap.
type upgrade struct {
	path     string // "" disables
	log      *slog.Logger
	from     *handoff.Handoff                   // the previous instance's handoff; nil if none
	dns      []server.Listener                  // inherited DNS sockets, for server.Config.Inherited
	http     map[handoff.Key][]*net.TCPListener // inherited HTTP listeners, taken by listenHTTP
	srv      *handoff.Server
	stopping atomic.Bool // no handoff once we drain: our sockets are closing
	ours     []handoff.Key
}

// handoffTimeout bounds asking the previous instance, at start, and asking
// for a successor, at shutdown. A wedged peer costs this much, then we
// bind afresh (or stop as if alone).
const handoffTimeout = 2 * time.Second

func dnsKeys(listen []netip.AddrPort) []handoff.Key {
	var keys []handoff.Key
	for _, ap := range listen {
		keys = append(keys, handoff.Key{Proto: "udp", Addr: ap.String()}, handoff.Key{Proto: "tcp", Addr: ap.String()})
	}
	return keys
}

// httpKey names an HTTP listener by its flag value: the old and the new
// instance's flags say the same string for the same listener.
func httpKey(addr string) handoff.Key { return handoff.Key{Proto: "tcp", Addr: addr} }

// takeOver receives the running instance's sockets for our addresses. Any
// failure is logged and leaves us binding afresh, as without a handoff.
func takeOver(ctx context.Context, cfg *Config, log *slog.Logger) *upgrade {
	u := &upgrade{path: cfg.HandoffSocket, log: log, ours: dnsKeys(cfg.Listen)}
	if u.path == "" {
		return u
	}
	want := slices.Clone(u.ours)
	for _, a := range []string{cfg.HealthListen, cfg.MetricsListen} {
		if a != "" {
			want = append(want, httpKey(a))
		}
	}
	ctx, cancel := context.WithTimeout(ctx, handoffTimeout)
	defer cancel()
	start := time.Now()
	h, err := handoff.Take(ctx, u.path, want)
	switch {
	case errors.Is(err, handoff.ErrNoInstance):
		log.Info("handoff: no running instance; binding afresh", "reason", err)
		return u
	case err != nil:
		log.Warn("handoff: not taking over; binding afresh", "err", err)
		return u
	}
	if len(h.Sockets) == 0 {
		// Another nodedns, serving other addresses (another config, or a
		// test's). Nothing to take; it keeps running, unaffected.
		log.Info("handoff: the running instance serves none of our addresses; binding afresh", "its_pid", h.From.PID)
		h.Abort("no address in common")
		return u
	}
	if err := u.adopt(h.Sockets); err != nil {
		log.Warn("handoff: received sockets unusable; binding afresh", "err", err)
		h.Abort(err.Error())
		u.dns, u.http = nil, nil
		return u
	}
	u.from = h
	log.Info("handoff: received the running instance's sockets", "from_pid", h.From.PID, "from_id", h.From.ID,
		"dns_sockets", len(u.dns), "http_listeners", len(u.http), "took", time.Since(start).Round(time.Microsecond))
	return u
}

// adopt turns received sockets into listeners; on error all are closed.
func (u *upgrade) adopt(socks []handoff.Socket) (err error) {
	u.http = map[handoff.Key][]*net.TCPListener{}
	defer func() {
		for _, s := range socks {
			s.File.Close() // FileConn and FileListener made their own copies
		}
		if err != nil {
			for _, l := range u.dns {
				l.UDP.Close()
				l.TCP.Close()
			}
			for _, ls := range u.http {
				for _, l := range ls {
					l.Close()
				}
			}
		}
	}()
	for _, s := range socks {
		if s.Proto == "udp" {
			c, err := net.FileConn(s.File)
			if err != nil {
				return fmt.Errorf("%s: %w", s.Key, err)
			}
			uc, ok := c.(*net.UDPConn)
			if !ok {
				c.Close()
				return fmt.Errorf("%s: not UDP", s.Key)
			}
			u.dns = append(u.dns, server.Listener{Addr: netip.MustParseAddrPort(s.Addr), UDP: uc})
			continue
		}
		l, err := net.FileListener(s.File)
		if err != nil {
			return fmt.Errorf("%s: %w", s.Key, err)
		}
		tl, ok := l.(*net.TCPListener)
		if !ok {
			l.Close()
			return fmt.Errorf("%s: not TCP", s.Key)
		}
		if slices.Contains(u.ours, s.Key) {
			u.dns = append(u.dns, server.Listener{Addr: netip.MustParseAddrPort(s.Addr), TCP: tl})
		} else {
			u.http[s.Key] = append(u.http[s.Key], tl)
		}
	}
	return nil
}

// httpServer is one HTTP listener, inherited or bound here, and the
// server on it.
type httpServer struct {
	*admin.Server
	ln  *net.TCPListener
	key handoff.Key
}

// listenHTTP serves h on addr: on the listener the previous instance
// handed over, else on a new one. New ones get SO_REUSEPORT, like the DNS
// sockets, so that an instance that could not take the listener over
// (--handoff-socket empty, or the old instance refused) still starts
// while the old one runs; the kernel then spreads probes over both.
func (u *upgrade) listenHTTP(addr string, h http.Handler, log *slog.Logger) (*httpServer, error) {
	k := httpKey(addr)
	var ln *net.TCPListener
	if ls := u.http[k]; len(ls) > 0 {
		ln, u.http[k] = ls[0], ls[1:]
	} else {
		lc := net.ListenConfig{Control: server.ReusePort}
		l, err := lc.Listen(context.Background(), "tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("http listen %s: %w", addr, err)
		}
		ln = l.(*net.TCPListener)
	}
	return &httpServer{Server: admin.Serve(ln, h, log), ln: ln, key: k}, nil
}

// listen serves the handoff socket for our successor, then tells the
// previous instance (if any) that we serve its sockets: by then the path
// leads to us, so there is always an instance to hand over from.
func (u *upgrade) listen(srv *server.Server, https []*httpServer, ready func() error) {
	if u.path == "" {
		return
	}
	var err error
	u.srv, err = handoff.Listen(handoff.Config{
		Path: u.path,
		Offers: func() ([]handoff.Offer, error) {
			ls := srv.Listeners()
			if u.stopping.Load() || ls == nil {
				return nil, errors.New("shutting down")
			}
			var offers []handoff.Offer
			for _, l := range ls {
				if l.UDP != nil {
					offers = append(offers, handoff.Offer{Key: handoff.Key{Proto: "udp", Addr: l.Addr.String()}, Conn: l.UDP})
				} else {
					offers = append(offers, handoff.Offer{Key: handoff.Key{Proto: "tcp", Addr: l.Addr.String()}, Conn: l.TCP})
				}
			}
			for _, h := range https {
				offers = append(offers, handoff.Offer{Key: h.key, Conn: h.ln})
			}
			return offers, nil
		},
		Ready: func() bool { return ready() == nil },
		HandedOff: func(st handoff.Status) {
			u.log.Info("handoff: a successor serves our sockets too; we keep serving until SIGTERM",
				"successor_pid", st.PID, "successor_id", st.ID)
		},
		Logger:  u.log,
		Timeout: handoffTimeout,
	})
	if err != nil {
		u.log.Warn("handoff: cannot listen; our successor will bind afresh", "err", err)
	}
	if u.from != nil {
		if err := u.from.Serving(); err != nil {
			u.log.Warn("handoff: telling the previous instance we serve", "err", err)
		}
		u.log.Info("handoff: serving on the previous instance's sockets", "from_pid", u.from.From.PID)
	}
}

// close aborts a handoff we never confirmed (start-up failed after
// takeOver: the previous instance keeps its sockets) and closes inherited
// HTTP listeners nobody took. Safe after listen.
func (u *upgrade) close() {
	if u.from != nil {
		u.from.Abort("the new instance failed to start")
	}
	for _, ls := range u.http {
		for _, l := range ls {
			l.Close()
		}
	}
	u.http = nil
}

// successor stops our handoff socket and asks who serves our addresses
// now. found: another instance in our network namespace serves at least
// one of them (so the interface and rules must stay). takesOver: it is
// ready and serves all of them (so there is nothing to wait for: what
// reaches our sockets, it reads).
func (u *upgrade) successor() (found, takesOver bool) {
	u.stopping.Store(true)
	if u.srv != nil {
		u.srv.Close() // lets a handoff in progress finish first
	}
	if u.path == "" {
		return false, false
	}
	ctx, cancel := context.WithTimeout(context.Background(), handoffTimeout)
	defer cancel()
	st, err := handoff.Query(ctx, u.path)
	if err != nil {
		u.log.Info("handoff: no successor", "reason", err)
		return false, false
	}
	if st.ID == handoff.InstanceID() {
		return false, false
	}
	for _, k := range u.ours {
		if slices.Contains(st.Serving, k) {
			found = true
		}
	}
	takesOver = found && st.Ready && st.Serves(u.ours)
	u.log.Info("handoff: successor", "pid", st.PID, "id", st.ID, "ready", st.Ready,
		"serves_our_addresses", found, "serves_all", st.Serves(u.ours))
	return found, takesOver
}

// handoffSyncWait bounds how long a new instance that took over the
// running one's sockets waits for its zone to sync from its sources before
// it reads them (the running one answers meanwhile). Within the running
// instance's wait for our confirmation (handoff.DefaultServingTimeout).
const handoffSyncWait = 30 * time.Second

// waitSourcesSynced waits until the published zone is built from synced
// sources (not unsynced, not a last known zone), at most max.
func waitSourcesSynced(ctx context.Context, store *zone.Store, max time.Duration, log *slog.Logger) {
	start := time.Now()
	synced := func() bool { s := store.Load(); return s.Synced() && !s.LastKnown() }
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for !synced() {
		if time.Since(start) >= max {
			log.Warn("handoff: zone not synced yet; serving the inherited sockets anyway", "waited", max)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
	log.Info("handoff: zone synced; serving the inherited sockets", "waited", time.Since(start).Round(time.Millisecond))
}
