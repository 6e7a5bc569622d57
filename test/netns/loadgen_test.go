package netns

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"

	"github.com/nodedns/nodedns/pkg/iface/ifacetest"
)

// inNetNS runs f on a thread moved into ns, so the sockets f creates
// belong to ns (a socket stays in the namespace it was created in, from
// whichever thread it is used later). The thread is never moved back: the
// goroutine ends locked to it, and the runtime discards it.
func inNetNS(ns *ifacetest.NetNS, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		fd, err := unix.Open(ns.Path(), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- err
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", ns.Name, err)
			return
		}
		errc <- f()
	}()
	return <-errc
}

// loadgen sends A queries for web at a fixed rate from a pod namespace,
// over several sockets (so that SO_REUSEPORT spreads them over every
// socket bound to the address), each query with an ID unique on its
// socket, and counts the answers.
type loadgen struct {
	t     *testing.T
	rate  int
	conns []*net.UDPConn
	query []byte

	start    time.Time
	sent     atomic.Int64
	sentAt   []time.Duration // by query number, since start; written by the sender only
	got      []atomic.Bool   // by query number
	answered atomic.Int64
	dups     atomic.Int64
	bad      atomic.Int64

	stopSend chan struct{}
	senderWG sync.WaitGroup
	readerWG sync.WaitGroup
}

const maxQueries = 1 << 20

// startLoad starts sending rate queries a second to server from ns over
// nsock sockets.
func startLoad(t *testing.T, ns *ifacetest.NetNS, server netip.AddrPort, rate, nsock int) *loadgen {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(webName+".", dns.TypeA)
	q, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	lg := &loadgen{
		t: t, rate: rate, query: q,
		sentAt:   make([]time.Duration, maxQueries),
		got:      make([]atomic.Bool, maxQueries),
		stopSend: make(chan struct{}),
	}
	if err := inNetNS(ns, func() error {
		for range nsock {
			c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(server))
			if err != nil {
				return err
			}
			c.SetReadBuffer(4 << 20) // answers must not be lost on our side
			lg.conns = append(lg.conns, c)
		}
		return nil
	}); err != nil {
		t.Fatalf("load generator sockets in %s: %v", ns.Name, err)
	}
	t.Cleanup(func() {
		for _, c := range lg.conns {
			c.Close()
		}
	})
	lg.start = time.Now()
	for i, c := range lg.conns {
		lg.readerWG.Add(1)
		go lg.read(i, c)
	}
	lg.senderWG.Add(1)
	go lg.send()
	return lg
}

// query number n goes out on socket n%nsock with ID n/nsock.
func (lg *loadgen) send() {
	defer lg.senderWG.Done()
	nsock := len(lg.conns)
	buf := slices.Clone(lg.query)
	n := 0
	tick := time.NewTicker(time.Millisecond) // pacing, not synchronisation
	defer tick.Stop()
	for {
		due := min(int(time.Since(lg.start).Seconds()*float64(lg.rate)), maxQueries, nsock*65536)
		for ; n < due; n++ {
			binary.BigEndian.PutUint16(buf, uint16(n/nsock))
			lg.sentAt[n] = time.Since(lg.start)
			if _, err := lg.conns[n%nsock].Write(buf); err != nil {
				lg.t.Errorf("sending query %d: %v", n, err)
				return
			}
			lg.sent.Store(int64(n + 1))
		}
		select {
		case <-lg.stopSend:
			return
		case <-tick.C:
		}
	}
}

func (lg *loadgen) read(sock int, c *net.UDPConn) {
	defer lg.readerWG.Done()
	nsock := len(lg.conns)
	buf := make([]byte, 1500)
	for {
		k, err := c.Read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // e.g. ECONNREFUSED from an ICMP error: the query counts as lost
		}
		if k < 12 {
			lg.bad.Add(1)
			continue
		}
		id := int(binary.BigEndian.Uint16(buf))
		flags := binary.BigEndian.Uint16(buf[2:])
		ancount := binary.BigEndian.Uint16(buf[6:])
		n := id*nsock + sock
		if flags&0x8000 == 0 || flags&0xf != dns.RcodeSuccess || ancount == 0 || n >= maxQueries {
			lg.bad.Add(1)
			continue
		}
		if lg.got[n].Swap(true) {
			lg.dups.Add(1)
			continue
		}
		lg.answered.Add(1)
	}
}

// waitSent polls until n queries in all have been sent.
func (lg *loadgen) waitSent(n int64) {
	lg.t.Helper()
	ifacetest.Eventually(lg.t, time.Duration(n/int64(lg.rate)+5)*time.Second, func() string {
		if s := lg.sent.Load(); s < n {
			return fmt.Sprintf("load generator sent %d of %d queries", s, n)
		}
		return ""
	})
}

// sendFor lets the load run for d more (counted in queries sent).
func (lg *loadgen) sendFor(d time.Duration) {
	lg.t.Helper()
	lg.waitSent(lg.sent.Load() + int64(d.Seconds()*float64(lg.rate)))
}

// loadResult is what a run of the load generator saw.
type loadResult struct {
	sent, answered, dups, bad int64
	elapsed                   time.Duration
	lost                      []time.Duration // send times of the queries never answered
}

func (r loadResult) String() string {
	return fmt.Sprintf("%d queries in %v (%.0f/s), %d answered, %d lost, %d duplicate and %d bad answers",
		r.sent, r.elapsed.Round(time.Millisecond), float64(r.sent)/r.elapsed.Seconds(),
		r.answered, len(r.lost), r.dups, r.bad)
}

// stop stops sending, waits up to drain for the last answers, and counts.
func (lg *loadgen) stop(drain time.Duration) loadResult {
	lg.t.Helper()
	close(lg.stopSend)
	lg.senderWG.Wait()
	elapsed := time.Since(lg.start)
	sent := lg.sent.Load()
	deadline := time.Now().Add(drain)
	for lg.answered.Load() < sent && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond) // polling for late answers, bounded by drain
	}
	for _, c := range lg.conns {
		c.Close()
	}
	lg.readerWG.Wait()
	r := loadResult{sent: sent, answered: lg.answered.Load(), dups: lg.dups.Load(), bad: lg.bad.Load(), elapsed: elapsed}
	for n := range int(sent) {
		if !lg.got[n].Load() {
			r.lost = append(r.lost, lg.sentAt[n])
		}
	}
	return r
}

// since converts a wall-clock instant to the load generator's timeline.
func (lg *loadgen) since(t time.Time) time.Duration { return t.Sub(lg.start) }

// udpRcvbufErrors reads the UDP receive-buffer drop counters (IPv4 and
// IPv6) of ns: datagrams the kernel dropped because a socket's queue was
// full, which would be lost queries that no handoff can save.
func udpRcvbufErrors(t *testing.T, ns *ifacetest.NetNS) int64 {
	t.Helper()
	var total int64
	if err := inNetNS(ns, func() error {
		// /proc/thread-self/net shows this thread's namespace.
		for _, f := range []string{"/proc/thread-self/net/snmp", "/proc/thread-self/net/snmp6"} {
			b, err := os.ReadFile(f)
			if err != nil {
				return err
			}
			total += snmpCounter(string(b))
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return total
}

// snmpCounter extracts RcvbufErrors from /proc/net/snmp (a header line and
// a value line per protocol) or /proc/net/snmp6 ("Udp6RcvbufErrors N").
func snmpCounter(s string) int64 {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		f := strings.Fields(l)
		if len(f) == 2 && f[0] == "Udp6RcvbufErrors" {
			var v int64
			fmt.Sscan(f[1], &v)
			return v
		}
		if len(f) > 1 && f[0] == "Udp:" && i+1 < len(lines) {
			vals := strings.Fields(lines[i+1])
			for j, name := range f {
				if name == "RcvbufErrors" && j < len(vals) {
					var v int64
					fmt.Sscan(vals[j], &v)
					return v
				}
			}
		}
	}
	return 0
}
