package handoff

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// old is the running instance of a test: a UDP socket and a TCP listener on
// loopback, offered by a handoff Server.
type old struct {
	udp  *net.UDPConn
	tcp  *net.TCPListener
	keys []Key // udp, tcp
	srv  *Server
	path string

	mu        sync.Mutex
	offerErr  error
	handedOff []Status
}

func startOld(t *testing.T, offers func(o *old) []Offer) *old {
	t.Helper()
	o := &old{path: filepath.Join(t.TempDir(), "run", "handoff.sock")}
	var err error
	if o.udp, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}); err != nil {
		t.Fatal(err)
	}
	if o.tcp, err = net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.udp.Close(); o.tcp.Close() })
	o.keys = []Key{
		{"udp", o.udp.LocalAddr().(*net.UDPAddr).AddrPort().String()},
		{"tcp", o.tcp.Addr().(*net.TCPAddr).AddrPort().String()},
	}
	if offers == nil {
		offers = func(o *old) []Offer { return []Offer{{o.keys[0], o.udp}, {o.keys[1], o.tcp}} }
	}
	o.srv, err = Listen(Config{
		Path: o.path,
		Offers: func() ([]Offer, error) {
			o.mu.Lock()
			defer o.mu.Unlock()
			return offers(o), o.offerErr
		},
		HandedOff: func(st Status) {
			o.mu.Lock()
			o.handedOff = append(o.handedOff, st)
			o.mu.Unlock()
		},
		Logger: testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.srv.Close() })
	return o
}

func (o *old) successors() []Status {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]Status(nil), o.handedOff...)
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return c
}

func nonblocking(t *testing.T, c syscall.Conn) bool {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var fl int
	rc.Control(func(fd uintptr) { fl, err = unix.FcntlInt(fd, unix.F_GETFL, 0) })
	if err != nil {
		t.Fatal(err)
	}
	return fl&unix.O_NONBLOCK != 0
}

// TestQueuedDatagramsAndConnectionsSurvive is the point of the package:
// datagrams queued in the old instance's UDP socket, and connections
// waiting in its TCP listener's backlog, are all there for the new
// instance after the old one has closed its copies.
func TestQueuedDatagramsAndConnectionsSurvive(t *testing.T) {
	o := startOld(t, nil)

	// Queued while nobody reads: closing the only holder would drop them.
	const queued = 50
	cl, err := net.DialUDP("udp4", nil, o.udp.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for i := range queued {
		if _, err := fmt.Fprintf(cl, "q%d", i); err != nil {
			t.Fatal(err)
		}
	}
	waiting, err := net.DialTCP("tcp4", nil, o.tcp.Addr().(*net.TCPAddr)) // in the backlog, not accepted
	if err != nil {
		t.Fatal(err)
	}
	defer waiting.Close()

	h, err := Take(ctx(t), o.path, o.keys)
	if err != nil {
		t.Fatal(err)
	}
	if h.From.ID != InstanceID() || h.From.PID != os.Getpid() {
		t.Errorf("From = %+v", h.From)
	}
	if len(h.Sockets) != 2 || h.Sockets[0].Key != o.keys[0] || h.Sockets[1].Key != o.keys[1] {
		t.Fatalf("Sockets = %+v, want %v", h.Sockets, o.keys)
	}
	uc, err := net.FileConn(h.Sockets[0].File)
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	ln, err := net.FileListener(h.Sockets[1].File)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for _, s := range h.Sockets {
		s.File.Close()
	}
	// net.FileConn must not have switched the shared description to
	// blocking mode: the old instance's reads would hang past deadlines.
	if !nonblocking(t, o.udp) || !nonblocking(t, o.tcp) {
		t.Error("the old instance's sockets became blocking")
	}

	if err := h.Serving(); err != nil {
		t.Fatal(err)
	}
	o.srv.Close() // returns once the exchange is done
	if s := o.successors(); len(s) != 1 || s[0].ID != InstanceID() || !s[0].Serves(o.keys) {
		t.Errorf("HandedOff got %+v", s)
	}

	// The old instance exits.
	o.udp.Close()
	o.tcp.Close()

	got := map[string]bool{}
	buf := make([]byte, 64)
	uc.SetReadDeadline(time.Now().Add(5 * time.Second))
	for len(got) < queued {
		n, err := uc.Read(buf)
		if err != nil {
			t.Fatalf("after %d of %d queued datagrams: %v", len(got), queued, err)
		}
		got[string(buf[:n])] = true
	}
	ln.(*net.TCPListener).SetDeadline(time.Now().Add(5 * time.Second))
	c, err := ln.Accept()
	if err != nil {
		t.Fatalf("the connection waiting in the backlog: %v", err)
	}
	defer c.Close()
	if c.RemoteAddr().String() != waiting.LocalAddr().String() {
		t.Errorf("accepted %v, want %v", c.RemoteAddr(), waiting.LocalAddr())
	}
}

// TestPartialWant: the old instance hands over what it has of what is
// asked for, and nothing else; the new one binds the rest itself.
func TestPartialWant(t *testing.T) {
	o := startOld(t, nil)
	other := Key{"udp", "127.0.0.1:1"}
	h, err := Take(ctx(t), o.path, []Key{o.keys[1], other})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Abort("test")
	if len(h.Sockets) != 1 || h.Sockets[0].Key != o.keys[1] {
		t.Fatalf("Sockets = %+v, want only %v", h.Sockets, o.keys[1])
	}
	h.Sockets[0].File.Close()
}

// TestMismatchIsDetected: a header that does not describe its descriptor
// fails the whole handoff, closes everything received, and leaves the old
// instance serving (and answering further requests).
func TestMismatchIsDetected(t *testing.T) {
	for _, c := range []struct {
		name   string
		offers func(o *old) []Offer
		want   func(o *old) []Key
	}{
		{"tcp listener sent as udp", func(o *old) []Offer {
			return []Offer{{o.keys[0], o.tcp}}
		}, nil},
		{"udp socket sent as tcp", func(o *old) []Offer {
			return []Offer{{o.keys[1], o.udp}}
		}, nil},
		{"wrong port", func(o *old) []Offer {
			return []Offer{{Key{"udp", "127.0.0.1:1"}, o.udp}}
		}, func(o *old) []Key { return []Key{{"udp", "127.0.0.1:1"}} }},
		{"wrong address", func(o *old) []Offer {
			k := o.keys[0]
			k.Addr = strings.Replace(k.Addr, "127.0.0.1", "127.0.0.2", 1)
			return []Offer{{k, o.udp}}
		}, func(o *old) []Key {
			k := o.keys[0]
			k.Addr = strings.Replace(k.Addr, "127.0.0.1", "127.0.0.2", 1)
			return []Key{k}
		}},
		{"one good, one bad", func(o *old) []Offer {
			return []Offer{{o.keys[0], o.udp}, {o.keys[1], o.udp}}
		}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := startOld(t, c.offers)
			want := o.keys
			if c.want != nil {
				want = c.want(o)
			}
			fdsBefore := openFDs(t)
			h, err := Take(ctx(t), o.path, want)
			if !errors.Is(err, ErrMismatch) {
				t.Fatalf("Take = %v, %v; want ErrMismatch", h, err)
			}
			t.Logf("detected: %v", err)
			// The old instance heard the abort and still answers.
			if _, err := Query(ctx(t), o.path); err != nil {
				t.Errorf("Query after the mismatch: %v", err)
			}
			// Nothing received stays open. The old side (in this same
			// process) closes its end of the exchanges a moment after
			// answering, hence the polling.
			deadline := time.Now().Add(5 * time.Second)
			for n := openFDs(t); n > fdsBefore; n = openFDs(t) {
				if time.Now().After(deadline) {
					t.Fatalf("%d descriptors open after a failed Take, %d before", n, fdsBefore)
				}
				time.Sleep(5 * time.Millisecond)
			}
			if s := o.successors(); len(s) != 0 {
				t.Errorf("HandedOff called: %+v", s)
			}
		})
	}
}

// openFDs counts this process's open descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(ents)
}

func TestVerify(t *testing.T) {
	udp4, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer udp4.Close()
	any, err := net.ListenTCP("tcp", &net.TCPAddr{})
	if err != nil {
		t.Fatal(err)
	}
	defer any.Close()
	up := udp4.LocalAddr().(*net.UDPAddr).Port
	tp := any.Addr().(*net.TCPAddr).Port
	for _, c := range []struct {
		conn syscall.Conn
		key  Key
		ok   bool
	}{
		{udp4, Key{"udp", fmt.Sprintf("127.0.0.1:%d", up)}, true},
		{udp4, Key{"udp", fmt.Sprintf("[::ffff:127.0.0.1]:%d", up)}, true},
		{udp4, Key{"udp", fmt.Sprintf("localhost:%d", up)}, true}, // a name: the port is all we can check
		{udp4, Key{"udp", fmt.Sprintf(":%d", up)}, false},
		{udp4, Key{"udp", fmt.Sprintf("127.0.0.1:%d", up+1)}, false},
		{udp4, Key{"tcp", fmt.Sprintf("127.0.0.1:%d", up)}, false},
		{udp4, Key{"sctp", fmt.Sprintf("127.0.0.1:%d", up)}, false},
		{any, Key{"tcp", fmt.Sprintf(":%d", tp)}, true},
		{any, Key{"tcp", fmt.Sprintf("[::]:%d", tp)}, true},
		{any, Key{"tcp", fmt.Sprintf("127.0.0.1:%d", tp)}, false},
		{any, Key{"udp", fmt.Sprintf(":%d", tp)}, false},
	} {
		fd, err := dup(c.conn)
		if err != nil {
			t.Fatal(err)
		}
		err = verify(fd, c.key)
		unix.Close(fd)
		if (err == nil) != c.ok {
			t.Errorf("verify(%T, %v) = %v, want ok=%v", c.conn, c.key, err, c.ok)
		}
	}

	// A connected TCP socket is not a listener.
	conn, err := net.DialTCP("tcp", nil, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: tp})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fd, err := dup(conn)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	k := Key{"tcp", conn.LocalAddr().String()}
	if err := verify(fd, k); err == nil || !strings.Contains(err.Error(), "listening") {
		t.Errorf("verify(connected TCP socket) = %v, want not a listening socket", err)
	}
}

// TestNoInstance: no socket file, and a stale one (its process is gone):
// both ErrNoInstance, at once; Listen replaces the stale file and answers.
func TestNoInstance(t *testing.T) {
	path := filepath.Join(t.TempDir(), "handoff.sock")
	if _, err := Take(ctx(t), path, nil); !errors.Is(err, ErrNoInstance) {
		t.Fatalf("Take without a socket file = %v, want ErrNoInstance", err)
	}

	// What a SIGKILLed instance leaves: the file, and no listener.
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = Take(ctx(t), path, nil)
	if !errors.Is(err, ErrNoInstance) || !strings.Contains(err.Error(), "stale") {
		t.Fatalf("Take on a stale socket file = %v, want ErrNoInstance (stale)", err)
	}
	if _, err := Query(ctx(t), path); !errors.Is(err, ErrNoInstance) {
		t.Fatalf("Query on a stale socket file = %v, want ErrNoInstance", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("noticing the stale file took %v", d)
	}

	srv, err := Listen(Config{Path: path, Offers: func() ([]Offer, error) { return nil, nil }, Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("Listen over a stale socket file: %v", err)
	}
	defer srv.Close()
	st, err := Query(ctx(t), path)
	if err != nil || st.ID != InstanceID() || !st.Ready {
		t.Fatalf("Query = %+v, %v", st, err)
	}
	if m, _ := filepath.Glob(path + ".*"); len(m) != 0 {
		t.Errorf("temporary files left: %v", m)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket file: %v, %v; want mode 0600", fi.Mode(), err)
	}

	// Close leaves the file (it may be a successor's by then): stale again.
	srv.Close()
	if _, err := Query(ctx(t), path); !errors.Is(err, ErrNoInstance) {
		t.Fatalf("Query after Close = %v, want ErrNoInstance", err)
	}
}

// TestNewestOwnsThePath: a second Listen on the same path takes it over;
// the first keeps running but is no longer reached.
func TestNewestOwnsThePath(t *testing.T) {
	o := startOld(t, nil)
	srv, err := Listen(Config{Path: o.path, Offers: func() ([]Offer, error) { return nil, nil }, Ready: func() bool { return false }})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	st, err := Query(ctx(t), o.path)
	if err != nil || st.Ready || len(st.Serving) != 0 {
		t.Fatalf("Query = %+v, %v; want the newer, not-ready instance", st, err)
	}
}

// TestRefusedWhileStopping: an instance whose Offers fail hands nothing
// over, yet still tells its status.
func TestRefusedWhileStopping(t *testing.T) {
	o := startOld(t, nil)
	o.mu.Lock()
	o.offerErr = errors.New("shutting down")
	o.mu.Unlock()
	if _, err := Take(ctx(t), o.path, o.keys); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "shutting down") {
		t.Fatalf("Take = %v, want ErrRefused naming the reason", err)
	}
	st, err := Query(ctx(t), o.path)
	if err != nil || len(st.Serving) != 0 {
		t.Fatalf("Query = %+v, %v", st, err)
	}
}

// TestStatusServes: Query reports the offered keys; Serves matches sets.
func TestStatusServes(t *testing.T) {
	o := startOld(t, nil)
	st, err := Query(ctx(t), o.path)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Serves(o.keys) || !st.Serves(o.keys[:1]) || st.Serves(append(o.keys, Key{"udp", "127.0.0.1:1"})) {
		t.Errorf("Serves wrong for %+v", st.Serving)
	}
	if st.NetNS == "" || st.PID != os.Getpid() {
		t.Errorf("status %+v", st)
	}
}

// TestOtherVersionRefused: a request of another protocol version gets a
// refusal, not sockets.
func TestOtherVersionRefused(t *testing.T) {
	o := startOld(t, nil)
	c, err := dial(ctx(t), o.path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var rep reply
	fds, err := exchange(c, request{V: 2, Op: opHandoff, NetNS: netNS(), Want: o.keys}, &rep)
	if err != nil {
		t.Fatal(err)
	}
	closeFDs(fds)
	if len(fds) != 0 || !errors.Is(replyErr(rep, netNS()), ErrRefused) {
		t.Errorf("reply %+v with %d descriptors, want a refusal", rep, len(fds))
	}
}

// TestOtherNetNSRefused: a new instance in another network namespace gets
// no sockets (they would serve the old namespace), and its status query
// does not count the old one as serving its addresses.
func TestOtherNetNSRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates a network namespace")
	}
	o := startOld(t, nil)
	type result struct{ take, query error }
	res := make(chan result, 1)
	go func() {
		// This thread moves to a new namespace and is never moved back:
		// the goroutine ends locked, and the runtime discards the thread.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			res <- result{err, err}
			return
		}
		h, err := Take(context.Background(), o.path, o.keys)
		if h != nil {
			h.Abort("test")
		}
		_, qerr := Query(context.Background(), o.path)
		res <- result{err, qerr}
	}()
	r := <-res
	if !errors.Is(r.take, ErrOtherNetNS) {
		t.Errorf("Take from another namespace = %v, want ErrOtherNetNS", r.take)
	}
	if !errors.Is(r.query, ErrOtherNetNS) {
		t.Errorf("Query from another namespace = %v, want ErrOtherNetNS", r.query)
	}
	if s := o.successors(); len(s) != 0 {
		t.Errorf("HandedOff called: %+v", s)
	}
}

// TestCloseWaitsForExchange: Close during a handoff returns only once the
// successor has confirmed (or the exchange ended), so that an instance
// stopping right then knows whether it has a successor.
func TestCloseWaitsForExchange(t *testing.T) {
	o := startOld(t, nil)
	h, err := Take(ctx(t), o.path, o.keys)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range h.Sockets {
		s.File.Close()
	}
	closed := make(chan struct{})
	go func() { o.srv.Close(); close(closed) }()
	select {
	case <-closed:
		t.Fatal("Close returned while the successor had not answered")
	case <-time.After(50 * time.Millisecond): // a negative check: Close must still be waiting
	}
	h.Serving()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close still waiting after Serving")
	}
	if len(o.successors()) != 1 {
		t.Error("HandedOff not called before Close returned")
	}
}

// testLogger logs through t.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}
