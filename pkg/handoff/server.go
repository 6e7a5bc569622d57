package handoff

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// Config configures the running instance's side.
type Config struct {
	// Path of the Unix socket, e.g. /run/nodedns/handoff.sock. Its
	// directory is created (0700) if missing.
	Path string
	// Offers returns the sockets this instance serves; called per request.
	// An error refuses the handoff (e.g. the instance is shutting down).
	Offers func() ([]Offer, error)
	// Ready reports readiness in Status; nil means ready.
	Ready func() bool
	// HandedOff is called, from the Server's goroutine, once a successor
	// confirmed it serves the sockets it received. The Server then stops
	// listening: the path is the successor's.
	HandedOff func(successor Status)
	// Logger; nil discards.
	Logger *slog.Logger
	// Timeout bounds one exchange; default DefaultTimeout.
	Timeout time.Duration
	// ServingTimeout bounds the wait, once the sockets are sent, for the
	// successor to confirm it serves them (it may first wait for its zone
	// to sync); default DefaultServingTimeout.
	ServingTimeout time.Duration
}

// Server answers handoff and status requests at Config.Path, one at a time
// (a second new instance waits for the first: they would get the same
// sockets anyway). Close is safe for concurrent use and to call twice.
type Server struct {
	cfg   Config
	log   *slog.Logger
	ln    *net.UnixListener
	netns string
	done  chan struct{}
	once  sync.Once
}

// Listen binds cfg.Path (replacing any socket file there, live or stale:
// the newest instance owns the path) and starts answering.
func Listen(cfg Config) (*Server, error) {
	if cfg.Path == "" || cfg.Offers == nil {
		return nil, errors.New("handoff: Path and Offers are required")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.ServingTimeout <= 0 {
		cfg.ServingTimeout = DefaultServingTimeout
	}
	s := &Server{cfg: cfg, log: cfg.Logger, netns: netNS(), done: make(chan struct{})}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(filepath.Dir(cfg.Path), 0o700); err != nil {
		return nil, fmt.Errorf("handoff socket %s: %w", cfg.Path, err)
	}
	// Bound under a name of our own, then renamed over the path: rename(2)
	// is atomic, so the path always leads to a live socket or a stale
	// file, never to nothing, and two instances starting together cannot
	// delete each other's socket.
	tmp := fmt.Sprintf("%s.%d.tmp", cfg.Path, os.Getpid())
	os.Remove(tmp) // left by an earlier process with our PID, killed here
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: tmp, Net: "unixpacket"})
	if err != nil {
		return nil, fmt.Errorf("handoff socket %s: %w", cfg.Path, err)
	}
	// Never unlink: by the time we close, the path may be a successor's.
	ln.SetUnlinkOnClose(false)
	if err := os.Chmod(tmp, 0o600); err == nil {
		err = os.Rename(tmp, cfg.Path)
	}
	if err != nil {
		ln.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("handoff socket %s: %w", cfg.Path, err)
	}
	s.ln = ln
	go s.loop()
	return s, nil
}

// Close stops answering. An exchange in progress finishes first (bounded
// by Config.Timeout), so that a successor that received the sockets is
// known before Close returns. The socket file stays (see the package doc).
func (s *Server) Close() error {
	s.once.Do(func() { s.ln.Close() })
	<-s.done
	return nil
}

func (s *Server) loop() {
	defer close(s.done)
	var wait time.Duration
	for {
		c, err := s.ln.AcceptUnix()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Warn("handoff: accept failed", "err", err)
			wait = min(max(2*wait, 10*time.Millisecond), time.Second)
			time.Sleep(wait) // e.g. EMFILE: do not spin
			continue
		}
		wait = 0
		handedOff := s.serve(c)
		c.Close()
		if handedOff {
			s.once.Do(func() { s.ln.Close() })
			return
		}
	}
}

func (s *Server) status() Status {
	st := Status{ID: InstanceID(), PID: os.Getpid(), NetNS: s.netns, Ready: true}
	if s.cfg.Ready != nil {
		st.Ready = s.cfg.Ready()
	}
	if offers, err := s.cfg.Offers(); err == nil {
		for _, o := range offers {
			if !slices.Contains(st.Serving, o.Key) {
				st.Serving = append(st.Serving, o.Key)
			}
		}
	}
	return st
}

// serve answers one connection and reports whether it took our sockets
// and confirmed serving them.
func (s *Server) serve(c *net.UnixConn) bool {
	c.SetDeadline(time.Now().Add(s.cfg.Timeout))
	var req request
	if _, err := readMsg(c, &req); err != nil { // descriptors from the peer: closed, never used
		s.log.Warn("handoff: bad request", "err", err)
		return false
	}
	st := s.status()
	refuse := func(code, msg string) bool {
		s.log.Warn("handoff: refused", "op", req.Op, "peer_id", req.ID, "peer_pid", req.PID, "reason", msg)
		writeMsg(c, reply{V: version, Status: st, Code: code, Error: msg}, nil)
		return false
	}
	if uid, err := peerUID(c); err != nil {
		return refuse(codeRefused, fmt.Sprintf("peer credentials: %v", err))
	} else if uid != 0 && int(uid) != os.Geteuid() {
		return refuse(codeRefused, fmt.Sprintf("peer uid %d is neither root nor ours", uid))
	}
	if req.V != version {
		return refuse(codeRefused, fmt.Sprintf("protocol version %d, want %d", req.V, version))
	}
	switch req.Op {
	case opStatus:
		if err := writeMsg(c, reply{V: version, Status: st}, nil); err != nil {
			s.log.Debug("handoff: status reply", "err", err)
		}
		return false
	case opHandoff:
	default:
		return refuse(codeRefused, fmt.Sprintf("unknown op %q", req.Op))
	}
	if st.NetNS == "" || req.NetNS != st.NetNS {
		return refuse(codeNetNS, fmt.Sprintf("peer in network namespace %q, we are in %q", req.NetNS, st.NetNS))
	}
	offers, err := s.cfg.Offers()
	if err != nil {
		return refuse(codeRefused, err.Error())
	}
	var keys []Key
	var fds []int
	defer func() { closeFDs(fds) }() // our duplicates: the message carries its own
	for _, o := range offers {
		if !slices.Contains(req.Want, o.Key) {
			continue
		}
		fd, err := dup(o.Conn)
		if err != nil {
			return refuse(codeRefused, fmt.Sprintf("%s: %v", o.Key, err))
		}
		fds = append(fds, fd)
		keys = append(keys, o.Key)
	}
	if err := writeMsg(c, reply{V: version, Status: st, Sockets: keys}, fds); err != nil {
		s.log.Warn("handoff: sending sockets", "peer_pid", req.PID, "err", err)
		return false
	}
	// The successor may take a while to start serving (its zone syncs
	// first); our sockets keep being served by us meanwhile, so waiting
	// costs nothing but a slot.
	c.SetDeadline(time.Now().Add(s.cfg.ServingTimeout))
	var ack request
	if _, err := readMsg(c, &ack); err != nil {
		s.log.Warn("handoff: sockets sent, no confirmation; still serving them ourselves",
			"peer_pid", req.PID, "err", err)
		return false
	}
	if ack.Op != opServing {
		s.log.Warn("handoff: successor aborted; still serving the sockets ourselves",
			"peer_pid", req.PID, "reason", ack.Error)
		return false
	}
	succ := Status{ID: req.ID, PID: req.PID, NetNS: req.NetNS, Ready: false, Serving: keys}
	s.log.Info("handoff: successor serves our sockets", "successor_pid", req.PID, "successor_id", req.ID,
		"sockets", len(keys))
	if s.cfg.HandedOff != nil {
		s.cfg.HandedOff(succ)
	}
	return true
}
