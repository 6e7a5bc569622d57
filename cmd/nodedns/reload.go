package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/nodedns/nodedns/pkg/cache"
	"github.com/nodedns/nodedns/pkg/config"
	"github.com/nodedns/nodedns/pkg/metrics"
	"github.com/nodedns/nodedns/pkg/route"
	"github.com/nodedns/nodedns/pkg/upstream"
)

// liveKeys are the flags a config file change applies at once; a change
// of any other is logged as waiting for a restart. Where forwarded names
// go changes by swapping the route table (pkg/route), so no query is
// dropped; the log level is a slog.LevelVar; the query log is swapped
// atomically in the resolver.
var liveKeys = map[string]bool{
	"upstream":            true,
	"resolv-conf":         true,
	"stub-domain":         true,
	"kube-dns-config-dir": true,
	"log-level":           true,
	"query-log":           true,
	"query-log-rate":      true,
}

// reloadInterval is how often the config file, the kube-dns ConfigMap and
// resolv.conf are polled: a stat or two, and two small reads.
const reloadInterval = time.Second

// reloader applies changes of the config file, the kube-dns ConfigMap
// directory and resolv.conf while nodedns runs. After start, its
// goroutine owns it.
type reloader struct {
	log     *slog.Logger
	level   *slog.LevelVar
	metrics *metrics.ConfigReloads
	ups     *upstreams
	now     func() time.Time
	// setQueryLog turns the resolver's query log on or off; set before
	// start.
	setQueryLog func(on bool, rate int) error
	stop        context.CancelFunc // of start's goroutine
	wg          sync.WaitGroup

	// cfg is the running configuration: live keys as last applied, the
	// others as at start.
	cfg     *Config
	file    config.Version
	fileErr string // last read error of the config file, reported once

	kd        *config.KubeDNS // in force; nil: none
	kdVersion config.Version  // of the ConfigMap's content last parsed, good or bad
	kdErr     string          // last read error of the directory, reported once

	// resolv.conf files giving the default upstreams (none when
	// --upstream or upstreamNameservers do), and their versions.
	resolvPaths []string
	resolv      []config.Version
}

// newReloader loads the kube-dns ConfigMap and builds the route table for
// cfg, as at start. A bad or unreadable ConfigMap is logged and left out
// (a later fix is applied when it comes), as NodeLocal DNSCache does: it
// is shared with the cluster's DNS, and a typo there should not stop DNS
// on every node that restarts. The config file was read by parseFlags.
func newReloader(cfg *Config, log *slog.Logger, level *slog.LevelVar, m *metrics.Metrics,
	newFwd func([]netip.AddrPort) (*upstream.Forwarder, error)) (*reloader, error) {
	r := &reloader{
		log: log, level: level, metrics: m.NewConfigReloads(), now: time.Now, cfg: cfg,
		ups: &upstreams{log: log, newFwd: newFwd, listen: cfg.Listen},
	}
	if cfg.ConfigFile != "" {
		// What parseFlags read: the first poll reads the file again and
		// reloads only if it differs.
		r.file.Seen(cfg.fileData)
	}
	if cfg.KubeDNSConfigDir != "" {
		r.kd, r.kdVersion, r.kdErr = r.readKubeDNS(cfg.KubeDNSConfigDir, cfg.ClusterDomains)
	}
	if err := r.ups.apply(r.ups.compute(cfg, r.kd)); err != nil {
		return nil, err
	}
	r.watchResolvConf()
	r.metrics.Loaded(r.now())
	return r, nil
}

// router is the resolver's Upstream.
func (r *reloader) router() *route.Router { return r.ups.router }

// setCache gives the cache to purge when routes change.
func (r *reloader) setCache(c *cache.Cache) { r.ups.cache = c }

// start polls in the background until close.
func (r *reloader) start() {
	ctx, cancel := context.WithCancel(context.Background())
	r.stop = cancel
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.run(ctx)
	}()
}

// close stops polling, then closes the forwarders.
func (r *reloader) close() {
	if r.stop != nil {
		r.stop()
		r.wg.Wait()
	}
	r.ups.close()
}

// run polls until ctx ends.
func (r *reloader) run(ctx context.Context) {
	t := time.NewTicker(reloadInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.poll()
		}
	}
}

// poll does one round: config file, kube-dns ConfigMap, resolv.conf.
func (r *reloader) poll() {
	if path := r.cfg.ConfigFile; path != "" {
		data, changed, err := r.file.Changed(path)
		switch {
		case err != nil:
			if msg := err.Error(); msg != r.fileErr {
				r.fileErr = msg
				r.log.Error("config file unreadable; the running configuration stays", "path", path, "err", err)
				r.metrics.Reloaded(r.now(), err)
			}
		case changed:
			r.fileErr = ""
			r.reloadFile(data)
		}
	}
	r.pollKubeDNS()
	r.pollResolvConf()
}

// reloadFile parses the whole configuration again with data as the config
// file and applies the live keys that changed, all or nothing.
func (r *reloader) reloadFile(data []byte) {
	path := r.cfg.ConfigFile
	next, err := r.cfg.reparse(func(string) ([]byte, error) { return data, nil })
	if err != nil {
		r.log.Error("config file rejected; the running configuration stays", "path", path, "err", err)
		r.metrics.Reloaded(r.now(), err)
		return
	}
	changed := changedKeys(r.cfg.values, next.values)
	running := *r.cfg
	running.values = make(map[string]string, len(r.cfg.values))
	for k, v := range r.cfg.values {
		running.values[k] = v
	}
	var live, restart []string
	for _, k := range changed {
		if !liveKeys[k] {
			restart = append(restart, k)
			continue
		}
		live = append(live, k)
		running.values[k] = next.values[k]
	}
	running.Upstreams, running.ResolvConf, running.StubDomains = next.Upstreams, next.ResolvConf, next.StubDomains
	running.KubeDNSConfigDir, running.LogLevel = next.KubeDNSConfigDir, next.LogLevel
	running.QueryLog, running.QueryLogRate = next.QueryLog, next.QueryLogRate

	var level slog.Level
	level.UnmarshalText([]byte(running.LogLevel)) // checked by parseFlags
	kd, kdVersion, kdErr := r.kd, r.kdVersion, r.kdErr
	if dir := running.KubeDNSConfigDir; dir != r.cfg.KubeDNSConfigDir {
		// Read the new directory first, so that no query sees a table
		// with neither directory's stub domains.
		kd, kdVersion, kdErr = nil, config.Version{}, ""
		if dir != "" {
			kd, kdVersion, kdErr = r.readKubeDNS(dir, running.ClusterDomains)
		}
	}
	routes := r.ups.compute(&running, kd)
	if !routes.equal(r.ups.cur) {
		if err := r.ups.apply(routes); err != nil {
			r.log.Error("config file rejected; the running configuration stays", "path", path, "err", err)
			r.metrics.Reloaded(r.now(), err)
			return
		}
		r.log.Info("upstreams changed", routes.logAttrs()...)
	}
	r.level.Set(level)
	if r.setQueryLog != nil && (running.QueryLog != r.cfg.QueryLog || running.QueryLogRate != r.cfg.QueryLogRate) {
		// Cannot fail: parseFlags checked the rate.
		r.setQueryLog(running.QueryLog, running.QueryLogRate)
	}
	r.kd, r.kdVersion, r.kdErr = kd, kdVersion, kdErr
	r.cfg = &running
	r.watchResolvConf()
	for _, k := range restart {
		r.log.Warn("config file: this key changed but takes effect only at a restart", "path", path, "key", k,
			"running", r.cfg.values[k], "file", next.values[k])
	}
	r.log.Info("config file reloaded", "path", path, "applied", live, "needs_restart", restart)
	r.metrics.Reloaded(r.now(), nil)
}

// readKubeDNS reads and parses a kube-dns ConfigMap directory not read
// before, logging what is wrong with it: nil then.
func (r *reloader) readKubeDNS(dir string, clusterDomains []string) (*config.KubeDNS, config.Version, string) {
	var v config.Version
	files, err := config.ReadKubeDNSDir(dir)
	if err != nil {
		r.log.Error("kube-dns ConfigMap unreadable; going without it", "dir", dir, "err", err)
		r.metrics.Reloaded(r.now(), err)
		return nil, v, err.Error()
	}
	v.Seen(kubeDNSContent(files))
	kd, err := config.ParseKubeDNS(dir, files, clusterDomains)
	if err != nil {
		r.log.Error("kube-dns ConfigMap rejected; going without it", "dir", dir, "err", err)
		r.metrics.Reloaded(r.now(), err)
		return nil, v, ""
	}
	r.log.Info("kube-dns ConfigMap loaded", "dir", dir, "stub_domains", len(kd.StubDomains), "upstream_nameservers", kd.UpstreamNameservers)
	return kd, v, ""
}

// kubeDNSContent is what tells one version of the ConfigMap's keys from
// another.
func kubeDNSContent(files map[string][]byte) []byte {
	var b bytes.Buffer
	for _, k := range []string{config.KeyStubDomains, config.KeyUpstreamNameservers} {
		if data, ok := files[k]; ok {
			fmt.Fprintf(&b, "%s=%d:", k, len(data))
			b.Write(data)
		}
	}
	return b.Bytes()
}

// pollKubeDNS reads the kube-dns ConfigMap directory and, when its content
// changed, applies it.
func (r *reloader) pollKubeDNS() {
	dir := r.cfg.KubeDNSConfigDir
	if dir == "" {
		return
	}
	files, err := config.ReadKubeDNSDir(dir)
	if err != nil {
		if msg := err.Error(); msg != r.kdErr {
			r.kdErr = msg
			r.log.Error("kube-dns ConfigMap unreadable; the running configuration stays", "dir", dir, "err", err)
			r.metrics.Reloaded(r.now(), err)
		}
		return
	}
	r.kdErr = ""
	if !r.kdVersion.Seen(kubeDNSContent(files)) {
		return // as last time, good or bad: reported then
	}
	kd, err := config.ParseKubeDNS(dir, files, r.cfg.ClusterDomains)
	if err != nil {
		r.log.Error("kube-dns ConfigMap rejected; the running configuration stays", "dir", dir, "err", err)
		r.metrics.Reloaded(r.now(), err)
		return
	}
	if kd.Equal(r.kd) {
		return
	}
	routes := r.ups.compute(r.cfg, kd)
	if !routes.equal(r.ups.cur) {
		if err := r.ups.apply(routes); err != nil {
			r.log.Error("kube-dns ConfigMap rejected; the running configuration stays", "dir", dir, "err", err)
			r.metrics.Reloaded(r.now(), err)
			return
		}
		r.log.Info("upstreams changed", routes.logAttrs()...)
	}
	r.kd = kd
	r.watchResolvConf()
	r.log.Info("kube-dns ConfigMap reloaded", "dir", dir, "stub_domains", len(kd.StubDomains), "upstream_nameservers", kd.UpstreamNameservers)
	r.metrics.Reloaded(r.now(), nil)
}

// watchResolvConf starts watching resolv.conf when it gives the default
// upstreams, and stops when it does not.
func (r *reloader) watchResolvConf() {
	var paths []string
	if len(r.cfg.Upstreams) == 0 && (r.kd == nil || len(r.kd.UpstreamNameservers) == 0) {
		paths = resolvConfPaths(r.cfg.ResolvConf)
	}
	if slices.Equal(paths, r.resolvPaths) {
		return
	}
	r.resolvPaths, r.resolv = paths, make([]config.Version, len(paths))
	for i, p := range paths {
		r.resolv[i].Changed(p) // the content compute just read, most likely
	}
}

// pollResolvConf recomputes the routes when a resolv.conf giving the
// default upstreams changed (DHCP, systemd-resolved): not a reload of our
// configuration, so not counted as one.
func (r *reloader) pollResolvConf() {
	changed := false
	for i, p := range r.resolvPaths {
		if _, c, _ := r.resolv[i].Changed(p); c {
			changed = true
		}
	}
	if !changed {
		return
	}
	routes := r.ups.compute(r.cfg, r.kd)
	if routes.equal(r.ups.cur) {
		return
	}
	if err := r.ups.apply(routes); err != nil {
		r.log.Error("resolv.conf changed, but its servers cannot be used; the running upstreams stay", "err", err)
		return
	}
	r.log.Info("upstreams changed", routes.logAttrs()...)
}
