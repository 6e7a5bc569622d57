package main

import (
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"github.com/nodedns/nodedns/pkg/cache"
	"github.com/nodedns/nodedns/pkg/config"
	"github.com/nodedns/nodedns/pkg/route"
	"github.com/nodedns/nodedns/pkg/upstream"
)

// routes is where forwarded names go: the default servers and those of
// each stub domain.
type routes struct {
	def     []netip.AddrPort
	defFrom string // "--upstream", "upstreamNameservers", the resolv.conf path, or "" for none
	stubs   map[string][]netip.AddrPort
}

// upstreams keeps the route table of a Router in step with the
// configuration. Forwarders are kept per server list across updates (their
// health state and idle TCP connections with them); the Router closes the
// ones that leave the table once their last exchange ends. Not safe for
// concurrent use: the reloader's goroutine owns it after start.
type upstreams struct {
	log    *slog.Logger
	router *route.Router
	cache  *cache.Cache // purged of answers whose route changed; nil when disabled
	newFwd func(servers []netip.AddrPort) (*upstream.Forwarder, error)
	listen []netip.AddrPort // never an upstream: that would loop

	fwds map[string]*upstream.Forwarder // by serverKey
	cur  routes
}

func serverKey(servers []netip.AddrPort) string {
	parts := make([]string, len(servers))
	for i, s := range servers {
		parts[i] = s.String()
	}
	return strings.Join(parts, ",")
}

// compute works out the routes from the flags (cfg), the kube-dns
// ConfigMap (kd, nil when none) and resolv.conf: --upstream, else
// upstreamNameservers, else resolv.conf; stub domains of --stub-domain
// over those of the ConfigMap. Our own listen addresses are left out.
func (u *upstreams) compute(cfg *Config, kd *config.KubeDNS) routes {
	r := routes{def: cfg.Upstreams, defFrom: "--upstream", stubs: map[string][]netip.AddrPort{}}
	if kd != nil {
		maps.Copy(r.stubs, kd.StubDomains)
		if len(r.def) == 0 {
			r.def, r.defFrom = kd.UpstreamNameservers, config.KeyUpstreamNameservers
		}
	}
	maps.Copy(r.stubs, cfg.StubDomains)
	if len(r.def) == 0 {
		r.def, r.defFrom = u.fromResolvConf(cfg.ResolvConf)
	}
	r.def = u.notOurs(r.def, "")
	if len(r.def) == 0 {
		r.defFrom = ""
	}
	for d, servers := range r.stubs {
		r.stubs[d] = u.notOurs(servers, d)
	}
	return r
}

// resolvConfPaths are the files default upstreams come from, in order.
func resolvConfPaths(path string) []string {
	if path == "/etc/resolv.conf" {
		return []string{path, systemdResolvConf}
	}
	return []string{path}
}

func (u *upstreams) fromResolvConf(path string) ([]netip.AddrPort, string) {
	for _, p := range resolvConfPaths(path) {
		rc, err := upstream.ReadResolvConf(p)
		if rc != nil {
			for _, s := range rc.Skipped {
				u.log.Warn("resolv.conf: nameserver skipped", "path", p, "server", s.Server, "reason", s.Reason)
			}
		}
		if err == nil {
			return rc.Servers, p
		}
		u.log.Warn("no upstream from resolv.conf", "path", p, "err", err)
	}
	return nil, ""
}

func (u *upstreams) notOurs(servers []netip.AddrPort, domain string) []netip.AddrPort {
	return slices.DeleteFunc(slices.Clone(servers), func(s netip.AddrPort) bool {
		if slices.Contains(u.listen, s) {
			u.log.Warn("upstream skipped: it is our own listen address", "server", s, "stub_domain", domain)
			return true
		}
		return false
	})
}

// apply makes r the route table. Forwarders are made for new server
// lists only; answers cached for names whose route changed are purged. A
// failure leaves the table as it was.
func (u *upstreams) apply(r routes) error {
	next := map[string]*upstream.Forwarder{}
	var made []*upstream.Forwarder
	get := func(servers []netip.AddrPort) (route.Upstream, error) {
		if len(servers) == 0 {
			return noUpstream{}, nil
		}
		key := serverKey(servers)
		if f, ok := next[key]; ok {
			return f, nil
		}
		f, ok := u.fwds[key]
		if !ok {
			var err error
			if f, err = u.newFwd(servers); err != nil {
				return nil, err
			}
			made = append(made, f)
		}
		next[key] = f
		return f, nil
	}
	fail := func(err error) error {
		for _, f := range made {
			f.Close()
		}
		return err
	}
	if len(r.def) == 0 {
		u.log.Error("no usable upstream server: names outside the cluster zone get SERVFAIL; give --upstream")
	}
	def, err := get(r.def)
	if err != nil {
		return fail(err)
	}
	stubs := make(map[string]route.Upstream, len(r.stubs))
	for d, servers := range r.stubs {
		if len(servers) == 0 {
			u.log.Error("stub domain has no usable server: its names get SERVFAIL", "stub_domain", d)
		}
		if stubs[d], err = get(servers); err != nil {
			return fail(err)
		}
	}
	if u.router == nil {
		u.router, err = route.New(def, stubs)
	} else {
		err = u.router.Update(def, stubs)
	}
	if err != nil {
		return fail(err)
	}
	// The router closes what left the table, once idle.
	u.fwds = next
	u.purge(u.cur, r)
	u.cur = r
	return nil
}

// purge drops cached answers whose route differs between old and r: every
// answer when the default changed, else those under the stub domains that
// were added, removed or changed. (An exchange in flight on the old route
// may still store its answer; it lives at most --max-ttl.)
func (u *upstreams) purge(old, r routes) {
	if u.cache == nil {
		return
	}
	if !slices.Equal(old.def, r.def) {
		if n := u.cache.Purge(nil); n > 0 {
			u.log.Info("cache emptied: the default upstream changed", "entries", n)
		}
		return
	}
	var changed []string
	for d := range r.stubs {
		if !slices.Equal(old.stubs[d], r.stubs[d]) {
			changed = append(changed, d)
		}
	}
	for d := range old.stubs {
		if _, ok := r.stubs[d]; !ok {
			changed = append(changed, d)
		}
	}
	if len(changed) == 0 {
		return
	}
	if n := u.cache.Purge(route.Under(changed)); n > 0 {
		u.log.Info("cache entries of changed stub domains dropped", "stub_domains", changed, "entries", n)
	}
}

// equal reports whether two route sets send every name to the same servers.
func (r routes) equal(o routes) bool {
	return slices.Equal(r.def, o.def) && maps.EqualFunc(r.stubs, o.stubs, slices.Equal)
}

// logAttrs describe r for the log.
func (r routes) logAttrs() []any {
	stubs := make([]string, 0, len(r.stubs))
	for _, d := range slices.Sorted(maps.Keys(r.stubs)) {
		stubs = append(stubs, d+"="+serverKey(r.stubs[d]))
	}
	return []any{"upstreams", r.def, "upstreams_from", r.defFrom, "stub_domains", stubs}
}

// close closes every forwarder in the table, at exit.
func (u *upstreams) close() {
	for _, f := range u.fwds {
		f.Close()
	}
}
