package server

import (
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/nodedns/nodedns/internal/testproc"
	"github.com/nodedns/nodedns/pkg/resolver"
	rt "github.com/nodedns/nodedns/pkg/resolver/resolvertest"
	"github.com/nodedns/nodedns/pkg/zone"
)

// TestTCPPeerReachesResolver: a TCP connection's peer address is what the
// resolver knows the client by: autopath answers over TCP as over UDP, and
// the query log names the peer.
func TestTCPPeerReachesResolver(t *testing.T) {
	z := new(rt.Zone)
	for _, name := range []string{
		"api.example.com.default.svc.cluster.local.", "api.example.com.svc.cluster.local.", "api.example.com.cluster.local.",
	} {
		z.Set(t, name, dns.TypeA, rt.Result(t, zone.KindSearchSuffix, name, nil, []string{soa}, nil))
	}
	logs := &testproc.SyncBuffer{}
	res, err := resolver.New(resolver.Config{
		Authority: z, Upstream: rt.Static(t, "api.example.com. 60 IN A 192.0.2.10"),
		ClusterDomains: []string{"cluster.local"}, UpstreamTimeout: 2 * time.Second,
		Autopath: true,
		PodNamespace: func(a netip.Addr) (string, bool) {
			return "default", a == netip.MustParseAddr("127.0.0.1") // the test client is a Pod of default
		},
		Logger: slog.New(slog.NewTextHandler(logs, nil)), QueryLog: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	ts := start(t, nil, func(c *Config) { c.Resolver = res })
	for _, proto := range []string{"udp", "tcp"} {
		r := ts.exchange(t, proto, msg("api.example.com.default.svc.cluster.local.", dns.TypeA, 1232))
		if len(r.Answer) != 2 {
			t.Fatalf("%s: answer %v, want the CNAME to api.example.com. and its A", proto, r.Answer)
		}
		if c, ok := r.Answer[0].(*dns.CNAME); !ok || c.Target != "api.example.com." {
			t.Errorf("%s: answer %v", proto, r.Answer)
		}
	}
	var line string
	for l := range strings.SplitSeq(logs.String(), "\n") {
		if strings.Contains(l, "msg=query") && strings.Contains(l, "transport=tcp") {
			line = l
		}
	}
	if !strings.Contains(line, "client=127.0.0.1:") || strings.Contains(line, "client=127.0.0.1:0 ") {
		t.Errorf("TCP query log line %q: want the peer address", line)
	}
}
