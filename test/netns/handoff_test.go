package netns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nodedns/nodedns/pkg/iface/ifacetest"
)

const (
	// loadRate is the steady query rate of the rolling-restart tests, the
	// rate at which issue 5 saw overlapping CoreDNS instances lose queries.
	loadRate    = 4000
	loadSockets = 16
)

// rollout is one run of rollingRestart; instants are on the load
// generator's timeline.
type rollout struct {
	tp         topology
	a, b       *daemon
	load       *loadgen
	bStart     time.Duration
	bServing   time.Duration
	aSIGTERM   time.Duration
	aExited    time.Duration
	rcvbufDrop int64
}

// rollingRestart runs the DaemonSet surge sequence under load: instance A
// serves, B starts beside it (waitB returns once B serves), A gets SIGTERM,
// B carries on alone. It returns what the load generator saw.
func rollingRestart(t *testing.T, flagsA, flagsB []string, waitB func(b *daemon)) (*rollout, loadResult) {
	t.Helper()
	r := &rollout{tp: newTopology(t)}
	r.a = startDaemon(t, r.tp.node, flagsA...)
	r.a.waitAnswer(r.tp.pod, localV4)
	drops := udpRcvbufErrors(t, r.tp.node)

	r.load = startLoad(t, r.tp.pod, netip.MustParseAddrPort(localV4+":53"), loadRate, loadSockets)
	r.load.sendFor(time.Second)

	r.bStart = r.load.since(time.Now())
	r.b = startDaemon(t, r.tp.node, flagsB...)
	waitB(r.b)
	r.bServing = r.load.since(time.Now())
	r.load.sendFor(time.Second) // both instances serve

	r.aSIGTERM = r.load.since(time.Now())
	exitedCleanly(t, r.a.stop(syscall.SIGTERM))
	r.aExited = r.load.since(time.Now())
	r.load.sendFor(3 * time.Second) // B alone

	res := r.load.stop(2 * time.Second)
	r.rcvbufDrop = udpRcvbufErrors(t, r.tp.node) - drops
	t.Logf("load: %v", res)
	t.Logf("timeline: B started at %v, serving at %v; A got SIGTERM at %v, exited at %v; kernel receive-buffer drops in the node namespace: %d",
		r.bStart.Round(time.Millisecond), r.bServing.Round(time.Millisecond),
		r.aSIGTERM.Round(time.Millisecond), r.aExited.Round(time.Millisecond), r.rcvbufDrop)
	if len(res.lost) > 0 {
		t.Logf("lost queries were sent at %v", roundAll(res.lost))
	}
	return r, res
}

func roundAll(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, 0, min(len(ds), 20))
	for _, d := range ds[:min(len(ds), 20)] {
		out = append(out, d.Round(time.Millisecond))
	}
	return out
}

// waitLog polls d's log until it contains s.
func (d *daemon) waitLog(s string) {
	d.t.Helper()
	ifacetest.Eventually(d.t, 10*time.Second, func() string {
		if d.exited() {
			d.t.Fatalf("nodedns exited early: %v\n%s", d.err, d.logs)
		}
		if !strings.Contains(d.logs.String(), s) {
			return fmt.Sprintf("no %q in the log yet", s)
		}
		return ""
	})
}

// TestRollingRestartLosesNoQuery: A serves under a steady load; B starts
// and takes A's sockets over --handoff-socket; A gets SIGTERM and stops at
// once, leaving the interface and rules to B. Not one query is lost.
func TestRollingRestartLosesNoQuery(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "handoff.sock")
	flags := []string{"--handoff-socket", sock}
	r, res := rollingRestart(t, flags, flags, func(b *daemon) {
		b.waitLog("handoff: serving on the previous instance's sockets")
	})

	if res.sent < loadRate*5 {
		t.Errorf("only %d queries sent; the load did not run", res.sent)
	}
	if len(res.lost) != 0 || res.bad != 0 {
		t.Errorf("rolling restart with handoff: %v; want 0 lost, 0 bad", res)
	}
	if r.rcvbufDrop != 0 {
		t.Logf("note: the kernel dropped %d datagrams for full receive queues (CPU starvation, not the handoff)", r.rcvbufDrop)
	}

	// B really served A's sockets: all DNS sockets (IPv4 and IPv6, one UDP
	// socket per P, server.Config.UDPSockets, and a TCP listener each) and
	// both HTTP listeners were handed over. The daemons run on this test's
	// CPUs, so with as many Ps.
	dns := 2 * (runtime.GOMAXPROCS(0) + 1)
	if logs := r.b.logs.String(); !strings.Contains(logs, fmt.Sprintf("dns_sockets=%d http_listeners=2", dns)) || !strings.Contains(logs, fmt.Sprintf("inherited_sockets=%d", dns)) {
		t.Errorf("B did not take all of A's sockets:\n%s", logs)
	}
	alogs := r.a.logs.String()
	for _, want := range []string{
		"handoff: successor serves our sockets",
		"a successor serves our sockets; no grace period",
		"node-local interface and rules left to the instance that serves them now",
	} {
		if !strings.Contains(alogs, want) {
			t.Errorf("A's log lacks %q", want)
		}
	}
	if strings.Contains(alogs, "node-local interface removed") {
		t.Error("A tore the interface down under B")
	}
	if !linkExists(t, r.tp.node) || !tableExists(t, r.tp.node) {
		t.Fatal("link or rules gone after A stopped")
	}

	// B answers alone, over UDP and TCP (its TCP listener is A's), and its
	// readiness endpoint (A's listener too) says ready.
	for _, extra := range [][]string{nil, {"+tcp"}} {
		if out, err := dig(r.tp.pod, localV4, extra...); err != nil || out != webIP {
			t.Errorf("dig %v after A stopped: %q %v", extra, out, err)
		}
	}
	if code, err := podGet(r.tp.pod, "http://"+localV4+":8080/ready"); code != http.StatusOK {
		t.Errorf("/ready after A stopped: %d %v", code, err)
	}

	// With nobody after it, B tears down on SIGTERM.
	exitedCleanly(t, r.b.stop(syscall.SIGTERM))
	if linkExists(t, r.tp.node) || tableExists(t, r.tp.node) {
		t.Error("link or rules still there after the last instance stopped")
	}
}

// TestRollingRestartWithoutHandoff is the same sequence with
// --handoff-socket= (two SO_REUSEPORT sockets, each instance its own): A
// closes its socket and whatever is queued in it is lost. Logged, not
// asserted: how much is lost depends on timing. A keeps the interface
// (--skip-teardown) so that only the sockets differ.
func TestRollingRestartWithoutHandoff(t *testing.T) {
	r, res := rollingRestart(t,
		[]string{"--handoff-socket=", "--skip-teardown"},
		[]string{"--handoff-socket="},
		func(b *daemon) { b.waitLog("nodedns started") }) // bound its own sockets beside A's
	t.Logf("without handoff: %d of %d queries lost at %d/s", len(res.lost), res.sent, loadRate)
	if res.sent < loadRate*5 {
		t.Errorf("only %d queries sent; the load did not run", res.sent)
	}
	if strings.Contains(r.b.logs.String(), "handoff: received") {
		t.Error("B took sockets over with --handoff-socket empty")
	}
	if out, err := dig(r.tp.pod, localV4); err != nil || out != webIP {
		t.Errorf("B does not answer after A stopped: %q %v", out, err)
	}
	exitedCleanly(t, r.b.stop(syscall.SIGTERM))
}

// TestRestartAfterSIGKILLWithStaleHandoffSocket: a killed instance leaves
// its handoff socket file behind, with nobody listening. The restarted
// instance finds it stale at once (ECONNREFUSED), binds afresh, answers
// within 2 s of its start, and owns a live handoff socket again.
func TestRestartAfterSIGKILLWithStaleHandoffSocket(t *testing.T) {
	tp := newTopology(t)
	sock := filepath.Join(t.TempDir(), "handoff.sock")
	first := startDaemon(t, tp.node, "--handoff-socket", sock)
	first.waitAnswer(tp.pod, localV4)
	first.stop(syscall.SIGKILL)
	killed := time.Now()

	if _, err := os.Stat(sock); err != nil {
		t.Fatalf("no handoff socket file after SIGKILL: %v", err)
	}
	if c, err := net.Dial("unixpacket", sock); err == nil {
		c.Close()
		t.Fatal("the killed instance's handoff socket still accepts")
	} else if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dialing the stale handoff socket: %v, want ECONNREFUSED", err)
	}

	second := startDaemon(t, tp.node, "--handoff-socket", sock)
	answered := second.waitAnswer(tp.pod, localV4)
	var ready time.Duration
	ifacetest.Eventually(t, 10*time.Second, func() string {
		if code, err := podGet(tp.pod, "http://"+localV4+":8080/ready"); code != http.StatusOK {
			return fmt.Sprintf("/ready: %d %v", code, err)
		}
		ready = time.Since(second.start)
		return ""
	})
	t.Logf("after SIGKILL: first answer %v after the restart (%v after the kill), ready %v after the restart",
		answered.Round(time.Millisecond), (second.start.Sub(killed) + answered).Round(time.Millisecond),
		ready.Round(time.Millisecond))
	if answered > 2*time.Second {
		t.Errorf("first answer %v after restart, want within 2s", answered)
	}
	if logs := second.logs.String(); !strings.Contains(logs, "stale socket file") {
		t.Errorf("the restarted instance did not report the stale handoff socket:\n%s", logs)
	}
	if c, err := net.Dial("unixpacket", sock); err != nil {
		t.Errorf("handoff socket not live after the restart: %v", err)
	} else {
		c.Close()
	}
	exitedCleanly(t, second.stop(syscall.SIGTERM))
}

// podGet does GET url from the pod namespace; 0 when nothing answers.
func podGet(pod *ifacetest.NetNS, url string) (int, error) {
	c := http.Client{
		Timeout: time.Second,
		Transport: &http.Transport{
			DisableKeepAlives: true,
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				var conn net.Conn
				err := inNetNS(pod, func() error {
					var d net.Dialer
					var err error
					conn, err = d.DialContext(ctx, network, addr)
					return err
				})
				return conn, err
			},
		},
	}
	resp, err := c.Get(url)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}
