package server

import (
	"context"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"

	"github.com/nodedns/nodedns/pkg/resolver"
	rt "github.com/nodedns/nodedns/pkg/resolver/resolvertest"
)

// dupListeners duplicates ls as another process receiving them over
// SCM_RIGHTS would hold them: new descriptors, same kernel sockets.
func dupListeners(t *testing.T, ls []Listener) []Listener {
	t.Helper()
	var out []Listener
	for _, l := range ls {
		var c syscall.Conn = l.UDP
		if l.TCP != nil {
			c = l.TCP
		}
		rc, err := c.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var nfd int
		var derr error
		rc.Control(func(fd uintptr) { nfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0) })
		if derr != nil {
			t.Fatal(derr)
		}
		f := os.NewFile(uintptr(nfd), "dup")
		d := Listener{Addr: l.Addr}
		if l.UDP != nil {
			fc, err := net.FileConn(f)
			if err != nil {
				t.Fatal(err)
			}
			d.UDP = fc.(*net.UDPConn)
		} else {
			fl, err := net.FileListener(f)
			if err != nil {
				t.Fatal(err)
			}
			d.TCP = fl.(*net.TCPListener)
		}
		f.Close()
		out = append(out, d)
	}
	return out
}

func newResolver(t *testing.T) *resolver.Resolver {
	t.Helper()
	r, err := resolver.New(resolver.Config{
		Authority: testZone(t), Upstream: rt.Failing(), ClusterDomains: []string{"cluster.local"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestInheritedSocketsKeepTheirQueue: the old server shuts down; queries
// arrive while nobody reads; the new server, started on duplicates of the
// old sockets, answers every one of them, over UDP and TCP, without binding
// anything itself.
func TestInheritedSocketsKeepTheirQueue(t *testing.T) {
	old := start(t, nil) // 2 UDP sockets and a TCP listener
	ls := old.srv.Listeners()
	if len(ls) != 3 {
		t.Fatalf("Listeners = %+v, want 2 UDP + 1 TCP", ls)
	}
	inherited := dupListeners(t, ls)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := old.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if old.srv.Listeners() != nil {
		t.Error("Listeners after Shutdown")
	}

	// Nobody reads now: these wait in the sockets' queues (several source
	// ports, so that both SO_REUSEPORT sockets get some).
	const n = 40
	var clients []*net.UDPConn
	for i := range n {
		c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(ls[0].Addr))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		m := msg(web, dns.TypeA, 0)
		m.Id = uint16(i)
		b, _ := m.Pack()
		if _, err := c.Write(b); err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
	}
	waiting := tcpConn(t, old.addr) // in the TCP backlog

	srv, err := New(Config{Addrs: []string{old.addr}, Resolver: newResolver(t), UDPSockets: 1, Inherited: inherited})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	if got := srv.Listeners(); len(got) != 3 {
		t.Errorf("new server serves %d sockets, want the 3 inherited (UDPSockets=1 must not drop one)", len(got))
	}

	buf := make([]byte, 512)
	for i, c := range clients {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		k, err := c.Read(buf)
		if err != nil {
			t.Fatalf("query %d, queued while nobody read: %v", i, err)
		}
		var r dns.Msg
		if err := r.Unpack(buf[:k]); err != nil || r.Id != uint16(i) || len(r.Answer) != 1 {
			t.Errorf("query %d: answer %v, %v", i, &r, err)
		}
	}
	waiting.Write(framed(t, msg(web, dns.TypeA, 0), 7))
	if r := readFramed(t, waiting); r.Id != 7 || len(r.Answer) != 1 {
		t.Errorf("TCP connection from the old backlog: %v", r)
	}
}

// TestInheritedPartly: an address whose UDP socket is inherited gets its
// TCP listener bound afresh (and UDP sockets up to UDPSockets).
func TestInheritedPartly(t *testing.T) {
	old := start(t, nil)
	var udpOnly []Listener
	for _, l := range old.srv.Listeners() {
		if l.UDP != nil {
			udpOnly = append(udpOnly, l)
			break
		}
	}
	inherited := dupListeners(t, udpOnly)
	srv, err := New(Config{Addrs: []string{old.addr}, Resolver: newResolver(t), UDPSockets: 2, Inherited: inherited})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(context.Background())
	var udp, tcp int
	for _, l := range srv.Listeners() {
		if l.UDP != nil {
			udp++
		} else {
			tcp++
		}
	}
	if udp != 2 || tcp != 1 {
		t.Errorf("%d UDP and %d TCP sockets, want 2 and 1", udp, tcp)
	}
}

func TestInheritedValidation(t *testing.T) {
	old := start(t, nil)
	ls := old.srv.Listeners()
	for _, c := range []struct {
		name  string
		addrs []string
		in    []Listener
		want  string
	}{
		{"address not served", []string{"127.0.0.1:0"}, ls[:1], "not one of Addrs"},
		{"neither UDP nor TCP", []string{old.addr}, []Listener{{Addr: ls[0].Addr}}, "exactly one"},
		{"both UDP and TCP", []string{old.addr}, []Listener{{Addr: ls[0].Addr, UDP: ls[0].UDP, TCP: ls[2].TCP}}, "exactly one"},
	} {
		_, err := New(Config{Addrs: c.addrs, Resolver: newResolver(t), Inherited: c.in})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: New = %v, want an error containing %q", c.name, err, c.want)
		}
	}

	// Two TCP listeners for one address: Start fails and closes what it
	// was given.
	dups := dupListeners(t, []Listener{ls[2], ls[2]})
	srv, err := New(Config{Addrs: []string{old.addr}, Resolver: newResolver(t), Inherited: dups})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Start(context.Background()); err == nil || !strings.Contains(err.Error(), "two TCP") {
		t.Fatalf("Start = %v, want an error about two TCP listeners", err)
	}
	for _, d := range dups {
		if _, err := d.TCP.Accept(); err == nil || !strings.Contains(err.Error(), "closed") {
			t.Errorf("inherited listener not closed by the failed Start: %v", err)
		}
	}
}

func TestListenersLifecycle(t *testing.T) {
	srv, err := New(Config{Addrs: []string{"127.0.0.1:0"}, Resolver: newResolver(t)})
	if err != nil {
		t.Fatal(err)
	}
	if srv.Listeners() != nil {
		t.Error("Listeners before Start")
	}
	bound, err := srv.Start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ls := srv.Listeners()
	if len(ls) != srv.cfg.UDPSockets+1 { // UDP sockets (default GOMAXPROCS) and one TCP listener
		t.Fatalf("Listeners = %+v", ls)
	}
	for _, l := range ls {
		if l.Addr != bound[0] {
			t.Errorf("listener address %v, want %v", l.Addr, bound[0])
		}
	}
	srv.Shutdown(context.Background())
	if srv.Listeners() != nil {
		t.Error("Listeners after Shutdown")
	}
}
