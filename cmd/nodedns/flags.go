package main

import (
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/nodedns/nodedns/pkg/cache"
	"github.com/nodedns/nodedns/pkg/config"
	"github.com/nodedns/nodedns/pkg/zone"
)

// Config is everything the flags say; main builds the daemon from it.
type Config struct {
	Kubeconfig       string
	ZoneFile         string
	Listen           []netip.AddrPort
	ClusterDomains   []string
	Upstreams        []netip.AddrPort
	ResolvConf       string
	PodMode          zone.PodMode
	EndpointPodNames bool
	WatchList        bool
	NodeName         string
	SetupInterface   bool
	MetricsListen    string
	HealthListen     string
	TTL              uint32
	ShutdownGrace    time.Duration
	UpstreamTimeout  time.Duration
	LogFormat        string
	LogLevel         string

	// Node-local interface (pkg/iface), used when SetupInterface is set.
	InterfaceName     string
	SetupRules        bool
	SkipTeardown      bool
	ReconcileInterval time.Duration

	// Cache of forwarded answers (pkg/cache).
	CacheSize      int
	MaxTTL         time.Duration
	MaxNegativeTTL time.Duration
	ServeStale     time.Duration
	Prefetch       bool

	// Upgrade handoff (pkg/handoff, cmd/nodedns/handoff.go).
	HandoffSocket string

	// Configuration file and kube-dns ConfigMap (cmd/nodedns/config.go,
	// reload.go); upstreams per domain (pkg/route).
	ConfigFile       string
	KubeDNSConfigDir string
	StubDomains      map[string][]netip.AddrPort // domain (lowercase, no trailing dot) -> servers

	// values holds every flag's value by name, to tell what a reload
	// changed; reparse reads the arguments, environment and config file
	// again (readFile reads the config file).
	values   map[string]string
	reparse  func(readFile func(string) ([]byte, error)) (*Config, error)
	fileData []byte // the config file as read

	// Server-side search (pkg/resolver/autopath.go).
	Autopath bool

	// Per-query log (pkg/resolver/querylog.go).
	QueryLog     bool
	QueryLogRate int

	// TCP limits of the DNS listeners (pkg/server).
	TCPIdleTimeout time.Duration
	TCPMaxConns    int

	// The zone saved for a restart while the API server is unreachable
	// (pkg/lastknown, cmd/nodedns/lastknown.go).
	LastKnownZone       string
	LastKnownZoneMaxAge time.Duration
}

// listFlag is a repeatable flag that also accepts comma-separated values.
type listFlag struct {
	values []string
	set    bool // the first Set replaces the default
}

func (l *listFlag) String() string { return strings.Join(l.values, ",") }

func (l *listFlag) Set(v string) error {
	if !l.set {
		l.values, l.set = nil, true
	}
	for part := range strings.SplitSeq(v, ",") {
		if part = strings.TrimSpace(part); part != "" {
			l.values = append(l.values, part)
		}
	}
	return nil
}

// parseFlags reads args, with each flag also settable from the environment
// as NODEDNS_<FLAG_NAME> (dashes as underscores) and in the --config file
// under its name; the command line wins over the environment, which wins
// over the file. Errors about a value from the file are *config.Error.
func parseFlags(args []string, getenv func(string) string) (*Config, error) {
	return parseConfig(args, getenv, os.ReadFile)
}

// parseConfig is parseFlags with the config file read by readFile.
func parseConfig(args []string, getenv func(string) string, readFile func(string) ([]byte, error)) (*Config, error) {
	fs := flag.NewFlagSet("nodedns", flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	var (
		cfg       Config
		listen    = listFlag{values: []string{"169.254.20.10:53"}}
		domains   = listFlag{values: []string{"cluster.local"}}
		upstreams listFlag
		stubs     stubFlag
		pods      string
		ttl       uint
	)
	fs.StringVar(&cfg.Kubeconfig, "kubeconfig", "", "path to a kubeconfig; default: in-cluster config")
	fs.StringVar(&cfg.ZoneFile, "zone-file", "", "standalone mode: serve the cluster zone from this YAML file of Kubernetes objects (re-read on change) instead of the API server")
	fs.Var(&listen, "listen", "ADDR:PORT to serve DNS on, UDP and TCP; repeatable or comma-separated")
	fs.Var(&domains, "cluster-domain", "cluster zone served authoritatively; repeatable")
	fs.Var(&upstreams, "upstream", "upstream server ADDR[:PORT]; repeatable; default: nameservers of --resolv-conf")
	fs.StringVar(&cfg.ResolvConf, "resolv-conf", "/etc/resolv.conf", "resolv.conf to take upstreams from when --upstream is not given")
	fs.Var(&stubs, "stub-domain", "DOMAIN=SERVER[,SERVER...]: forward names under DOMAIN to these servers (ADDR[:PORT]) instead of the upstreams; repeatable, or several separated by spaces")
	fs.StringVar(&cfg.KubeDNSConfigDir, "kube-dns-config-dir", "", "directory of the kube-dns ConfigMap (stubDomains, upstreamNameservers), read as kube-dns reads it and re-read on change; empty: none")
	fs.StringVar(&cfg.ConfigFile, "config", "", "YAML file setting any of these flags by name (command line and NODEDNS_* win); re-read on change")
	fs.StringVar(&pods, "pods", "insecure", "pod records <a-b-c-d>.<ns>.pod.<zone>: insecure | verified | disabled")
	fs.BoolVar(&cfg.EndpointPodNames, "endpoint-pod-names", false, "also name hostname-less endpoints of headless services after their Pod")
	fs.BoolVar(&cfg.WatchList, "watch-list", true, "stream the API server's initial list and relists (client-go WatchList) instead of one response holding every object: a lower memory peak after an API server restart")
	fs.StringVar(&cfg.NodeName, "node-name", getenv("NODE_NAME"), "this node's name (default $NODE_NAME)")
	fs.BoolVar(&cfg.SetupInterface, "setup-interface", true, "create the link-local interface and addresses of --listen")
	fs.StringVar(&cfg.MetricsListen, "metrics-listen", ":9253", "ADDR:PORT for Prometheus /metrics; empty disables")
	fs.StringVar(&cfg.HealthListen, "health-listen", "169.254.20.10:8080", "ADDR:PORT for /health and /ready; empty disables")
	fs.UintVar(&ttl, "ttl", 5, "TTL in seconds of cluster records")
	fs.DurationVar(&cfg.ShutdownGrace, "shutdown-grace", 5*time.Second, "on SIGTERM, keep answering (not ready) this long before stopping")
	fs.DurationVar(&cfg.UpstreamTimeout, "upstream-timeout", 2*time.Second, "timeout of one upstream try")
	fs.StringVar(&cfg.LogFormat, "log-format", "text", "text | json")
	fs.StringVar(&cfg.LogLevel, "log-level", "info", "debug | info | warn | error")
	fs.StringVar(&cfg.InterfaceName, "interface-name", "nodelocaldns", "name of the link holding the --listen addresses (created, or adopted when it exists)")
	fs.BoolVar(&cfg.SetupRules, "setup-rules", true, "install nftables rules (table inet nodedns) so DNS to and from the --listen addresses skips conntrack")
	fs.BoolVar(&cfg.SkipTeardown, "skip-teardown", false, "on exit, leave the interface, its addresses and the rules in place")
	fs.DurationVar(&cfg.ReconcileInterval, "reconcile-interval", 5*time.Second, "how often to restore the interface, addresses and rules if someone removed them")
	fs.IntVar(&cfg.CacheSize, "cache-size", cache.DefaultSize, "most answers of the upstream kept in the cache (fresh, stale and failed names); 0 disables the cache")
	fs.DurationVar(&cfg.MaxTTL, "max-ttl", cache.DefaultMaxTTL, "cap on how long a forwarded answer is cached (at least 1s)")
	fs.DurationVar(&cfg.MaxNegativeTTL, "max-negative-ttl", cache.DefaultMaxNegativeTTL, "cap on how long an NXDOMAIN or NODATA answer is cached (at least 1s)")
	fs.DurationVar(&cfg.ServeStale, "serve-stale", cache.DefaultStaleWindow, "when the upstream fails, answer from an answer expired less than this long ago, with TTL 30s (RFC 8767); 0 disables")
	fs.BoolVar(&cfg.Prefetch, "prefetch", true, "refresh popular cached answers shortly before they expire")
	fs.StringVar(&cfg.HandoffSocket, "handoff-socket", "/run/nodedns/handoff.sock", "Unix socket over which a starting instance takes the listening sockets of the running one, so upgrades lose no query (a hostPath shared by old and new pod); empty disables")
	fs.BoolVar(&cfg.Autopath, "autopath", false, "server-side search: answer <name>.<ns>.svc.<zone> from a Pod of namespace <ns> on this node (UDP and TCP) with a CNAME to the first name of the rest of its search list that exists, in one round trip; watches this node's Pods (needs --node-name)")
	fs.BoolVar(&cfg.QueryLog, "query-log", false, "log one line per answered query (client, transport, name, type, rcode, source, duration) at level info")
	fs.IntVar(&cfg.QueryLogRate, "query-log-rate", 100, "most query log lines per second (bursts of as many); the others are dropped and counted in nodedns_query_log_dropped_total")

	fs.DurationVar(&cfg.TCPIdleTimeout, "tcp-idle-timeout", 10*time.Second, "close a DNS TCP connection that takes longer than this to send its next whole query (RFC 7766 §6.2.3)")
	fs.IntVar(&cfg.TCPMaxConns, "tcp-max-conns", 1000, "most concurrent DNS TCP connections; at the bound a new one takes the slot of the connection idle the longest, or is closed at once when none is idle")

	fs.StringVar(&cfg.LastKnownZone, "last-known-zone", "", "file to save the cluster zone's objects in, and to serve them from at the next start until the API watches sync, so that a restart while the API server is unreachable keeps cluster names answering (a hostPath); empty: none")
	fs.DurationVar(&cfg.LastKnownZoneMaxAge, "last-known-zone-max-age", 24*time.Hour, "do not serve a --last-known-zone older than this; 0: any age")

	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	cli := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { cli[f.Name] = true })
	if err := applyEnv(fs, getenv); err != nil {
		return nil, err
	}
	src := sources{env: map[string]string{}, path: cfg.ConfigFile}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) {
		given[f.Name] = true
		if !cli[f.Name] {
			src.env[f.Name] = "NODEDNS_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		}
	})
	var keyErrs error // of keys of the config file, reported with the values' errors
	if cfg.ConfigFile != "" {
		applied, data, err := applyConfigFile(fs, cfg.ConfigFile, given, readFile)
		if applied == nil {
			return nil, err // unreadable, or not YAML
		}
		src.file, cfg.fileData, keyErrs = applied, data, err
	}

	var errs []error
	for _, s := range listen.values {
		ap, err := netip.ParseAddrPort(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("--listen %q: want ADDR:PORT: %w", s, err))
			continue
		}
		cfg.Listen = append(cfg.Listen, ap)
	}
	for _, s := range upstreams.values {
		ap, err := parseUpstream(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("--upstream %q: %w", s, err))
			continue
		}
		cfg.Upstreams = append(cfg.Upstreams, ap)
	}
	for _, d := range domains.values {
		d = strings.ToLower(strings.TrimSuffix(d, "."))
		if d == "" || strings.Contains(d, "..") || len(d) > 253 {
			errs = append(errs, fmt.Errorf("--cluster-domain %q: not a domain name", d))
			continue
		}
		cfg.ClusterDomains = append(cfg.ClusterDomains, d)
	}
	mode, ok := zone.ParsePodMode(pods)
	if !ok {
		errs = append(errs, fmt.Errorf("--pods %q: want insecure, verified or disabled", pods))
	}
	cfg.PodMode = mode
	if ttl == 0 || ttl > 3600 {
		errs = append(errs, fmt.Errorf("--ttl %d: want 1..3600", ttl))
	}
	cfg.TTL = uint32(ttl)
	if cfg.LogFormat != "text" && cfg.LogFormat != "json" {
		errs = append(errs, fmt.Errorf("--log-format %q: want text or json", cfg.LogFormat))
	}
	if _, err := parseLevel(cfg.LogLevel); err != nil {
		errs = append(errs, fmt.Errorf("--log-level %q: want debug, info, warn or error", cfg.LogLevel))
	}
	if cfg.TCPIdleTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--tcp-idle-timeout %v: want > 0", cfg.TCPIdleTimeout))
	}
	if cfg.TCPMaxConns <= 0 {
		errs = append(errs, fmt.Errorf("--tcp-max-conns %d: want > 0", cfg.TCPMaxConns))
	}
	if cfg.QueryLogRate < 1 {
		errs = append(errs, fmt.Errorf("--query-log-rate %d: want at least 1", cfg.QueryLogRate))
	}
	if cfg.LastKnownZone != "" && cfg.ZoneFile != "" {
		errs = append(errs, errors.New("--last-known-zone: only with the API server, not with --zone-file (the file is the zone)"))
	}
	if cfg.LastKnownZoneMaxAge < 0 {
		errs = append(errs, fmt.Errorf("--last-known-zone-max-age %v: want >= 0", cfg.LastKnownZoneMaxAge))
	}
	stubDomains, stubErrs := parseStubDomains(stubs.values, cfg.ClusterDomains)
	cfg.StubDomains = stubDomains
	errs = append(errs, stubErrs...)
	if len(cfg.Listen) == 0 && len(errs) == 0 {
		errs = append(errs, errors.New("--listen: at least one address is needed"))
	}
	if keyErrs != nil {
		errs = append([]error{keyErrs}, errs...)
	}
	if err := src.annotate(errs); err != nil {
		return &cfg, err
	}
	cfg.values = flagValues(fs)
	cfg.reparse = func(readFile func(string) ([]byte, error)) (*Config, error) {
		return parseConfig(args, getenv, readFile)
	}
	return &cfg, nil
}

// parseUpstream accepts ADDR, ADDR:PORT and [V6]:PORT; the port defaults to 53.
func parseUpstream(s string) (netip.AddrPort, error) { return config.ParseServer(s) }

// applyEnv sets every flag not given on the command line from
// NODEDNS_<NAME>, so a DaemonSet can configure through env or args alike.
func applyEnv(fs *flag.FlagSet, getenv func(string) string) error {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] {
			return
		}
		key := "NODEDNS_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v := getenv(key); v != "" {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", key, v, err))
			}
		}
	})
	return errors.Join(errs...)
}
