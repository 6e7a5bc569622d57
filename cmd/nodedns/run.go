package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"k8s.io/klog/v2"

	"github.com/nodedns/nodedns/pkg/admin"
	"github.com/nodedns/nodedns/pkg/cache"
	"github.com/nodedns/nodedns/pkg/kube"
	"github.com/nodedns/nodedns/pkg/metrics"
	"github.com/nodedns/nodedns/pkg/resolver"
	"github.com/nodedns/nodedns/pkg/server"
	"github.com/nodedns/nodedns/pkg/upstream"
	"github.com/nodedns/nodedns/pkg/zone"
	"github.com/nodedns/nodedns/pkg/zonefile"
)

// run starts everything in dependency order, serves until ctx ends, then
// drains: not ready first, answering through the grace period, then stop.
func run(ctx context.Context, cfg *Config, log *slog.Logger) error {
	// Sources get their own context: they stop after the listeners, so
	// the zone keeps its last state while draining.
	srcCtx, stopSources := context.WithCancel(context.Background())
	var saving sync.WaitGroup // the last known zone's saver, which saves once more when the sources stop
	defer func() {
		stopSources()
		saving.Wait()
	}()

	m := metrics.New()
	m.Registry().MustRegister(ifaceRepairs)

	// Set at shutdown when another instance serves our addresses: the
	// interface and rules are then its, and stay.
	var succeeded atomic.Bool
	// Set once we serve: a start that fails before it must not remove a
	// link it adopted, which the instance we meant to replace serves on.
	var served atomic.Bool
	if cfg.SetupInterface {
		teardown, err := setupInterface(ctx, cfg, log, succeeded.Load, served.Load)
		if err != nil {
			return err
		}
		defer teardown()
	}

	store := &zone.Store{}
	builder, err := zone.NewBuilder(zone.Config{
		Domains:          cfg.ClusterDomains,
		TTL:              cfg.TTL,
		PodMode:          cfg.PodMode,
		EndpointPodNames: cfg.EndpointPodNames,
		NSAddrs:          nsAddrs(cfg.Listen),
	}, store)
	if err != nil {
		return err
	}
	builder.OnPublish(m.ZonePublished)
	go builder.Run(srcCtx)

	if err := startSource(srcCtx, cfg, builder, store, &saving, m, log); err != nil {
		return err
	}

	// Where forwarded names go (--upstream or the kube-dns ConfigMap or
	// resolv.conf, and stub domains), kept up to date with the config
	// file and the ConfigMap by rl (reload.go).
	rl, err := newReloader(cfg, log, logLevel, m, func(servers []netip.AddrPort) (*upstream.Forwarder, error) {
		return newForwarder(cfg, servers, log, m)
	})
	if err != nil {
		return err
	}
	defer rl.close()
	up := rl.router()
	var answers resolver.Cache // an interface nil when disabled, not a nil *cache.Cache
	if cfg.CacheSize != 0 {
		c, err := cache.New(cache.Config{Size: cfg.CacheSize, MaxTTL: cfg.MaxTTL, MaxNegativeTTL: cfg.MaxNegativeTTL,
			StaleWindow: cfg.ServeStale, Prefetch: cfg.Prefetch})
		if err != nil {
			return fmt.Errorf("--cache-size, --max-ttl, --max-negative-ttl, --serve-stale: %w", err)
		}
		answers = c
		rl.setCache(c)
		m.RegisterCache(c.Stats)
	}
	// The node's search domains: autopath candidates, and what forwarded
	// NXDOMAINs are counted under (search_suffix_answers_total).
	var search []string
	if rc, err := upstream.ReadResolvConf(cfg.ResolvConf); rc != nil {
		search = rc.Search
	} else if cfg.Autopath {
		// A missing search domain would make autopath answer a name the
		// client's own walk would not reach: no guessing.
		return fmt.Errorf("--autopath: the node's search domains: %w", err)
	}
	res, err := resolver.New(resolver.Config{
		Autopath:        cfg.Autopath,
		SearchDomains:   search,
		PodNamespace:    func(a netip.Addr) (string, bool) { return store.Load().PodNamespace(a) },
		Authority:       resolver.StoreAuthority{Store: store},
		Upstream:        up,
		Cache:           answers,
		Metrics:         m,
		ClusterDomains:  cfg.ClusterDomains,
		Logger:          log,
		UpstreamTimeout: 2*cfg.UpstreamTimeout + time.Second,
		QueryLog:        cfg.QueryLog,
		QueryLogRate:    cfg.QueryLogRate,
	})
	if err != nil {
		return err
	}
	rl.setQueryLog = res.SetQueryLog
	addrs := make([]string, len(cfg.Listen))
	for i, ap := range cfg.Listen {
		addrs[i] = ap.String()
	}
	// Taken over from the running instance, if one answers on
	// --handoff-socket; the server binds afresh whatever is not.
	upg := takeOver(ctx, cfg, log)
	defer upg.close()
	if len(upg.dns) > 0 {
		// The previous instance answers on these very sockets until we
		// read them too: let it, until our zone is as fresh as its.
		waitSourcesSynced(ctx, store, handoffSyncWait, log)
	}
	srv, err := server.New(server.Config{Addrs: addrs, Resolver: res, Logger: log, Inherited: upg.dns,
		TCPIdleTimeout: cfg.TCPIdleTimeout, TCPMaxConns: cfg.TCPMaxConns})
	if err != nil {
		return err
	}
	bound, err := srv.Start(ctx)
	if err != nil {
		return err
	}

	var draining atomic.Bool
	checks := admin.Checks{
		Alive: func(ctx context.Context) error { return selfQuery(ctx, bound[0], cfg.ClusterDomains[0]) },
		Ready: func() error {
			switch {
			case draining.Load():
				return errors.New("draining")
			case !store.Load().Synced():
				// The published snapshot, not the informers: ready only
				// once queries really get cluster answers.
				return errors.New("cluster zone not synced")
			case store.Load().LastKnown():
				// Answering, but from a previous run's zone: not ready, so
				// that a rollout waits for the API server.
				return errors.New("cluster zone not synced (answering from the last known zone)")
			}
			return nil
		},
	}
	var https []*httpServer
	for _, addr := range []string{cfg.HealthListen, cfg.MetricsListen} {
		if addr == "" {
			continue
		}
		h, err := upg.listenHTTP(addr, admin.Handler(checks, m.Registry()), log)
		if err != nil {
			srv.Shutdown(context.Background())
			return err
		}
		https = append(https, h)
	}
	upg.listen(srv, https, checks.Ready)
	served.Store(true)
	log.Info("nodedns started", "dns", bound, "health", cfg.HealthListen, "metrics", cfg.MetricsListen,
		"zones", cfg.ClusterDomains, "upstreams", rl.ups.cur.def, "stub_domains", len(rl.ups.cur.stubs))
	rl.start()

	<-ctx.Done()
	draining.Store(true)
	stopCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	found, takesOver := upg.successor()
	succeeded.Store(found)
	if takesOver {
		// It is ready on all our addresses, normally reading the very
		// sockets we read (handed over): nothing to wait for. (Had it
		// bound its own, say after the one we handed to crashed, a grace
		// period would not save what queues in ours either: SO_REUSEPORT
		// hashes flows to our socket until it closes.) HTTP first, so
		// probes stop reaching our "draining" answer.
		log.Info("shutting down: a successor serves our sockets; no grace period")
		for _, h := range https {
			h.Shutdown(stopCtx)
		}
	} else {
		log.Info("shutting down: not ready, still answering", "grace", cfg.ShutdownGrace)
		sleepCtx(context.Background(), cfg.ShutdownGrace)
	}
	err = srv.Shutdown(stopCtx)
	for _, h := range https {
		h.Shutdown(stopCtx)
	}
	stopSources()
	saving.Wait()
	log.Info("stopped")
	return err
}

// startSource feeds builder from the zone file or the API server. An
// unreachable API server is not an error: the informers retry, and cluster
// names get SERVFAIL until they sync.
func startSource(ctx context.Context, cfg *Config, builder *zone.Builder, store *zone.Store, saving *sync.WaitGroup, m *metrics.Metrics, log *slog.Logger) error {
	if cfg.ZoneFile != "" {
		w := zonefile.NewWatcher(cfg.ZoneFile, func(objs zone.Objects) {
			builder.ReplaceAll(objs)
			builder.SetSynced()
			builder.Flush()
			log.Info("zone file loaded", "path", cfg.ZoneFile, "services", len(objs.Services),
				"endpointslices", len(objs.EndpointSlices), "pods", len(objs.Pods))
		}, func(err error) {
			log.Error("zone file rejected; the previous zone keeps serving", "err", err)
		}, log)
		// The first load must work: there is no previous zone to keep.
		if _, err := w.Check(); err != nil {
			return err
		}
		go w.Run(ctx, time.Second)
		return nil
	}

	klog.SetSlogLogger(log) // client-go logs through klog: one log stream, one format
	// Before the first client-go client is made (see kube.SetWatchList).
	kube.SetWatchList(cfg.WatchList)
	rc, err := kube.RESTConfig(cfg.Kubeconfig)
	if err != nil {
		return err
	}
	client, err := kube.NewClient(rc)
	if err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	scope := kube.PodsNone
	if cfg.Autopath {
		if cfg.NodeName == "" {
			return errors.New("--autopath needs --node-name (or NODE_NAME): it watches the Pods of this node")
		}
		scope = kube.PodsNode // source IP -> namespace of this node's Pods
	}
	if cfg.PodMode == zone.PodsVerified {
		scope = kube.PodsAll // a Pod's IP may be asked for from any node
	}
	w, err := kube.New(kube.Config{
		Client: client, PodScope: scope, NodeName: cfg.NodeName, Logger: log, OnWatchError: m.WatchError,
		DropPodNames: !cfg.EndpointPodNames,
	}, builder)
	if err != nil {
		return err
	}
	if cfg.LastKnownZone != "" {
		loadLastKnown(cfg.LastKnownZone, cfg.LastKnownZoneMaxAge, builder, log)
		saving.Go(func() { keepLastKnown(ctx, cfg.LastKnownZone, builder, store, w, log) })
	}
	return w.Start(ctx)
}

// systemdResolvConf lists the servers systemd-resolved forwards to; used
// when /etc/resolv.conf names only its loopback stub (127.0.0.53).
const systemdResolvConf = "/run/systemd/resolve/resolv.conf"

// errNoUpstream answers every forwarded query when no upstream is known:
// SERVFAIL for names outside the zone, while the zone keeps answering.
var errNoUpstream = errors.New("no upstream server configured")

type noUpstream struct{}

func (noUpstream) Exchange(context.Context, []byte) ([]byte, error) { return nil, errNoUpstream }

// newForwarder is the one place forwarders are made, for the default
// upstreams and every stub domain alike.
func newForwarder(cfg *Config, servers []netip.AddrPort, log *slog.Logger, obs upstream.Observer) (*upstream.Forwarder, error) {
	return upstream.New(upstream.Config{Servers: servers, Timeout: cfg.UpstreamTimeout, Logger: log, Observer: obs})
}

// nsAddrs are the addresses published for ns.dns.<zone>: our listen IPs,
// unless they are unspecified.
func nsAddrs(listen []netip.AddrPort) []netip.Addr {
	var out []netip.Addr
	for _, ap := range listen {
		if a := ap.Addr(); !a.IsUnspecified() && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

// selfQuery proves the DNS listener answers: it asks the zone's version
// record, which needs no upstream and no sync (SERVFAIL is an answer too).
func selfQuery(ctx context.Context, addr netip.AddrPort, zoneName string) error {
	c := dns.Client{Net: "udp", Timeout: time.Second}
	m := new(dns.Msg)
	m.SetQuestion("dns-version."+zoneName+".", dns.TypeTXT)
	_, _, err := c.ExchangeContext(ctx, m, addr.String())
	if err != nil {
		return fmt.Errorf("DNS listener %s does not answer: %w", addr, err)
	}
	return nil
}
