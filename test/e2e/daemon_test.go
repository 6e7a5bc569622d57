package e2e

import (
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/nodedns/nodedns/internal/testproc"
)

// nodednsBin is the daemon built once by TestMain.
var nodednsBin string

func TestMain(m *testing.M) {
	code := testproc.RunWithNodedns(m, &nodednsBin)
	stopSharedEnv()
	os.Exit(code)
}

// daemon is one running nodedns process on loopback ports.
type daemon struct{ *testproc.Daemon }

// startDaemon runs nodedns with the given extra flags. It does not wait
// for readiness.
func startDaemon(t testing.TB, args ...string) *daemon {
	t.Helper()
	return &daemon{testproc.StartDaemon(t, nodednsBin, args...)}
}

var waitFor = testproc.WaitFor

// waitListening waits until the DNS port answers anything at all.
func (d *daemon) waitListening(timeout time.Duration) {
	d.T.Helper()
	waitFor(d.T, "nodedns to answer DNS", timeout, func() bool {
		select {
		case <-d.Done:
			d.T.Fatalf("nodedns exited early: %v\n%s", d.Err, d.Logs.String())
		default:
		}
		_, err := d.query("udp", "dns-version.cluster.local.", dns.TypeTXT)
		return err == nil
	})
}

// query sends one question over net ("udp" or "tcp") with EDNS0 4096.
func (d *daemon) query(net, name string, qtype uint16) (*dns.Msg, error) {
	return d.queryBuf(net, name, qtype, 4096)
}

// queryBuf sends one question; bufsize 0 sends no OPT record.
func (d *daemon) queryBuf(net, name string, qtype uint16, bufsize uint16) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	if bufsize > 0 {
		m.SetEdns0(bufsize, false)
	}
	c := dns.Client{Net: net, Timeout: 3 * time.Second, UDPSize: 65535}
	r, _, err := c.Exchange(m, d.DNS)
	return r, err
}

func (d *daemon) dnsAddr() netip.AddrPort { return netip.MustParseAddrPort(d.DNS) }

// rrStrings renders records without TTLs, lowercased, for
// order-independent comparison.
func rrStrings(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		if rr.Header().Rrtype == dns.TypeOPT {
			continue
		}
		s := rr.String()
		f := strings.Fields(s)
		if len(f) > 1 {
			f = append(f[:1], f[2:]...) // drop TTL
		}
		out = append(out, strings.ToLower(strings.Join(f, " ")))
	}
	return out
}
