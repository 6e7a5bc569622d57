package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/nodedns/nodedns/bench/scale/gen"
	"github.com/nodedns/nodedns/test/e2e/kubeenv"
)

// probe is an endpoint with a hostname whose address the driver changes
// and then asks every server for.
type probe struct {
	slot int    // index into the Churner's slices
	name string // <hostname>.<svc>.<ns>.svc.cluster.local.
}

// serverRound is what one round measured of one server.
type serverRound struct {
	ReadySeconds float64
	// After start: once every server is ready, no churn yet.
	StartRSS, StartAnon, StartHeap uint64 // bytes, medians of 5 samples
	// Steady: every second of the CPU window (-churn-rate changes/s), the
	// state of a cluster that changes all the time.
	SteadyRSS, SteadyAnon, SteadyHeap uint64 // bytes, medians
	// Relist: the API server stopped and started again.
	RelistPeakRSS  uint64  // max(VmHWM after the reset, every VmRSS sample)
	RelistPeakHeap uint64  // highest heap-in-use sample (every 250 ms)
	RelistSeconds  float64 // API server ready -> the server answers a write made then
	IdleCPUPerSec  float64 // CPU seconds per second, no churn
	CPUPer1000     float64 // CPU seconds per 1,000 endpoint changes (churn window)
	LatencyMs      []float64
	P50Ms, P99Ms   float64
	MaxMs          float64
	Missed         int // probes not answered within 10 s
}

type roundResult struct {
	Round   int
	Order   []string
	Servers map[string]*serverRound
	// The API server's endpointslices LIST requests after its restart (the
	// relists of servers without WatchList) and the watch events it sent
	// (with WatchList a relist is a watch that streams every slice first).
	APILists, APIWatchEvents int
	APIDownSeconds           float64 // StopAPIServer to ready again
	CPUChurn                 churnSummary
	LatencyChurn             churnSummary
	ProbeWriteMs             float64 // median API write (Update) round trip of the probes
	LoadAvg                  string
}

type churnSummary struct {
	Changes, Errors, Late int
	Seconds, Rate         float64
	FirstErr              string `json:",omitempty"`
}

func summarize(s gen.ChurnStats) churnSummary {
	c := churnSummary{Changes: s.Changes, Errors: s.Errors, Late: s.Late, Seconds: s.Duration.Seconds(), Rate: s.Rate()}
	if s.FirstErr != nil {
		c.FirstErr = s.FirstErr.Error()
	}
	return c
}

type sizeResult struct {
	Services, PerService   int
	Namespaces, Endpoints  int
	Slices                 int
	LoadSeconds            float64
	CoreDNSPublishedSizing float64
	Rounds                 []*roundResult
}

func runSize(ctx context.Context, o options, sz size, bins binaries) (*sizeResult, error) {
	dir := filepath.Join(o.dir, sz.String())
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	spec := gen.ScaleSpec(sz.services, sz.perService, netip.MustParsePrefix(kubeenv.ServiceCIDR))
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	objs := spec.Objects()
	res := &sizeResult{
		Services: sz.services, PerService: sz.perService, Namespaces: len(objs.Namespaces),
		Endpoints: objs.Endpoints, Slices: len(objs.Slices),
		// CoreDNS's scaling guide: 0.86 MB per 1,000 Pods+Services + 49 MB
		// (every endpoint is a Pod here).
		CoreDNSPublishedSizing: 0.86*float64(objs.Endpoints+sz.services)/1000 + 49,
	}
	logf("%v: starting kube-apiserver + etcd", sz)
	env, err := kubeenv.Start(ctx, filepath.Join(dir, "kubeenv"))
	if err != nil {
		return nil, err
	}
	defer func() {
		if err := env.Stop(); err != nil {
			logf("stopping kube-apiserver + etcd: %v", err)
		}
	}()
	client, err := gen.LoadClient(env.AdminConfig)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	stored, err := gen.Stored(ctx, client, &objs)
	if err != nil {
		return nil, err
	}
	if stored != nil {
		logf("%v: reusing the %d EndpointSlices stored by an earlier run in %s", sz, len(stored), dir)
	} else {
		last := time.Now()
		stored, err = gen.Load(ctx, client, objs, o.loadWorkers, func(done, total int) {
			if time.Since(last) > 10*time.Second || done == total {
				logf("%v: %d/%d objects written", sz, done, total)
				last = time.Now()
			}
		})
		if err != nil {
			return nil, err
		}
		res.LoadSeconds = time.Since(start).Seconds()
		logf("%v: %d namespaces, %d Services, %d EndpointSlices, %d endpoints stored in %.1f s",
			sz, len(objs.Namespaces), len(objs.Services), len(objs.Slices), objs.Endpoints, res.LoadSeconds)
	}

	ch := gen.NewChurner(client, spec, objs, stored)
	if o.hold {
		fmt.Printf("ADMIN_KUBECONFIG=%s\nDNS_KUBECONFIG=%s\n", env.AdminKubeconfig, env.DNSKubeconfig)
		logf("%v: holding the API server until interrupted, churning %g endpoint changes/s", sz, o.holdChurn)
		if o.holdChurn > 0 {
			st := ch.Run(ctx, o.holdChurn, o.churnWorkers, nil, 1)
			logf("%d changes at %.1f/s", st.Changes, st.Rate())
		}
		<-ctx.Done()
		return nil, nil
	}
	probes, pick := pickProbes(spec, stored)
	for r := range o.rounds {
		rr, err := runRound(ctx, o, r, env, ch, probes, pick, bins, dir)
		if rr != nil {
			res.Rounds = append(res.Rounds, rr)
		}
		if err != nil {
			return res, err
		}
	}
	return res, nil
}

// pickProbes chooses up to 16 endpoints with hostnames, each in another
// namespace, and returns them with the other slices (the churn's).
func pickProbes(spec gen.Spec, stored []*discoveryv1.EndpointSlice) ([]probe, []int) {
	var probes []probe
	seen := map[string]bool{}
	isProbe := map[int]bool{}
	for i, es := range stored {
		if len(probes) == 16 || seen[es.Namespace] || len(es.Endpoints) == 0 || es.Endpoints[0].Hostname == nil {
			continue
		}
		seen[es.Namespace] = true
		isProbe[i] = true
		svc := es.Labels[discoveryv1.LabelServiceName]
		probes = append(probes, probe{slot: i, name: fmt.Sprintf("%s.%s.%s.svc.cluster.local.", *es.Endpoints[0].Hostname, svc, es.Namespace)})
	}
	var pick []int
	for i := range stored {
		if !isProbe[i] {
			pick = append(pick, i)
		}
	}
	return probes, pick
}

func runRound(ctx context.Context, o options, r int, env *kubeenv.Env, ch *gen.Churner, probes []probe, pick []int, bins binaries, sizeDir string) (*roundResult, error) {
	dir := filepath.Join(sizeDir, fmt.Sprintf("round%d", r+1))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	rr := &roundResult{Round: r + 1, Servers: map[string]*serverRound{}, LoadAvg: loadAvg()}
	// Rotate the start order so no server always starts first (first
	// finds the API server's watch cache cold, last competes with nobody).
	order := slices.Clone(o.servers)
	for range r % len(order) {
		order = append(order[1:], order[0])
	}
	var servers []*server
	defer func() {
		for _, s := range servers {
			s.p.Stop(syscall.SIGTERM, 10*time.Second)
		}
	}()
	for _, v := range order {
		rr.Order = append(rr.Order, v.name)
		s, err := startServer(v, bins, env.DNSKubeconfig, dir)
		if err != nil {
			return rr, err
		}
		servers = append(servers, s)
		d, err := s.waitReady(ctx, 10*time.Minute)
		if err != nil {
			return rr, err
		}
		rr.Servers[v.name] = &serverRound{ReadySeconds: d.Seconds()}
		logf("round %d: %s ready in %.2f s", r+1, v.name, d.Seconds())
	}
	conns := make([]*dnsConn, len(servers))
	for i, s := range servers {
		c, err := dialDNS(s.dns)
		if err != nil {
			return rr, err
		}
		defer c.Close()
		conns[i] = c
	}
	// Every server must answer every probe name with the current address
	// before anything is measured: same data, same answers.
	for _, p := range probes {
		a := netip.MustParseAddr(ch.Slice(p.slot).Endpoints[0].Addresses[0])
		if err := waitAll(ctx, servers, conns, p.name, a, 60*time.Second, nil); err != nil {
			return rr, fmt.Errorf("round %d: before measuring: %w", r+1, err)
		}
	}

	if err := pause(ctx, o.settle); err != nil {
		return rr, err
	}
	start, err := sampleMemory(ctx, servers, 5, o.sampleEvery)
	if err != nil {
		return rr, err
	}
	for i, s := range servers {
		sr := rr.Servers[s.name]
		sr.StartRSS, sr.StartAnon, sr.StartHeap = start[i].median()
	}
	if err := cpuWindow(ctx, o, ch, pick, servers, rr, uint64(r)); err != nil {
		return rr, err
	}
	if err := relist(ctx, env, ch, probes[0], servers, conns, rr); err != nil {
		return rr, err
	}
	if err := latencyWindow(ctx, o, ch, probes, pick, servers, conns, rr, uint64(r)); err != nil {
		return rr, err
	}
	for _, s := range servers {
		sr := rr.Servers[s.name]
		logf("round %d: %-18s ready %.2fs  RSS %.1f MiB  heap %.1f MiB  relist peak %.1f MiB (%.2f×)  CPU %.3f s/1000  p50 %.0f ms  p99 %.0f ms",
			r+1, s.name, sr.ReadySeconds, mib(sr.SteadyRSS), mib(sr.SteadyHeap), mib(sr.RelistPeakRSS),
			float64(sr.RelistPeakRSS)/float64(sr.SteadyRSS), sr.CPUPer1000, sr.P50Ms, sr.P99Ms)
	}
	return rr, nil
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

// pause waits d; a measurement interval, not synchronisation.
func pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

type memSamples struct{ rss, anon, heap []uint64 }

func (m memSamples) median() (rss, anon, heap uint64) {
	return medianU(m.rss), medianU(m.anon), medianU(m.heap)
}

// sampleMemory takes n samples of every server's VmRSS, RssAnon and heap
// in use, every apart (n < 0: until ctx ends).
func sampleMemory(ctx context.Context, servers []*server, n int, every time.Duration) ([]memSamples, error) {
	out := make([]memSamples, len(servers))
	for k := 0; n < 0 || k < n; k++ {
		if k > 0 {
			if err := pause(ctx, every); err != nil {
				if n < 0 {
					return out, nil
				}
				return nil, err
			}
		}
		for i, s := range servers {
			st, err := procStatus(s.p.Pid(), "VmRSS", "RssAnon")
			if err != nil {
				return nil, err
			}
			h, err := s.heapInUse(ctx)
			if err != nil {
				if n < 0 && ctx.Err() != nil {
					return out, nil
				}
				return nil, err
			}
			out[i].rss = append(out[i].rss, st["VmRSS"])
			out[i].anon = append(out[i].anon, st["RssAnon"])
			out[i].heap = append(out[i].heap, h)
		}
	}
	return out, nil
}

// waitAll polls every server until it answers name with a (or timeout);
// seen, if not nil, gets the time each server first did.
func waitAll(ctx context.Context, servers []*server, conns []*dnsConn, name string, a netip.Addr, timeout time.Duration, seen []time.Time) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	errs := make([]error, len(servers))
	var wg sync.WaitGroup
	for i := range servers {
		wg.Go(func() {
			t, err := conns[i].waitA(ctx, name, a)
			if err != nil {
				errs[i] = fmt.Errorf("%s: %s A %s: %w", servers[i].name, name, a, err)
			}
			if seen != nil {
				seen[i] = t
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// relist stops and starts the API server, samples every server's memory
// across it, and waits until each answers a change written afterwards.
func relist(ctx context.Context, env *kubeenv.Env, ch *gen.Churner, p probe, servers []*server, conns []*dnsConn, rr *roundResult) error {
	for _, s := range servers {
		if err := resetHWM(s.p.Pid()); err != nil {
			return fmt.Errorf("reset VmHWM of %s: %w", s.name, err)
		}
	}
	smp := startSampler(ctx, servers)
	stopAt := time.Now()
	if err := env.StopAPIServer(); err != nil {
		smp.stop()
		return err
	}
	if err := env.StartAPIServer(ctx); err != nil {
		smp.stop()
		return err
	}
	up := time.Now()
	rr.APIDownSeconds = up.Sub(stopAt).Seconds()
	a, err := ch.Change(ctx, p.slot, 0, nil)
	if err != nil {
		smp.stop()
		return err
	}
	seen := make([]time.Time, len(servers))
	err = waitAll(ctx, servers, conns, p.name, a, 5*time.Minute, seen)
	if err == nil {
		// The relists are over once the change is answered; what they
		// left behind is collected in the next seconds.
		err = pause(ctx, 3*time.Second)
	}
	peaks, heaps := smp.stop()
	if err != nil {
		return fmt.Errorf("after the API server restart: %w", err)
	}
	for i, s := range servers {
		st, err := procStatus(s.p.Pid(), "VmHWM")
		if err != nil {
			return err
		}
		sr := rr.Servers[s.name]
		sr.RelistPeakRSS = max(st["VmHWM"], peaks[i])
		sr.RelistPeakHeap = heaps[i]
		sr.RelistSeconds = seen[i].Sub(up).Seconds()
	}
	rr.APILists, rr.APIWatchEvents, err = apiRequests(ctx, env)
	if err != nil {
		logf("API server metrics: %v", err)
	}
	return nil
}

type sampler struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	peaks  []uint64
	heaps  []uint64
}

// startSampler reads every server's VmRSS every 5 ms and its heap in use
// every 250 ms until stop.
func startSampler(ctx context.Context, servers []*server) *sampler {
	ctx, cancel := context.WithCancel(ctx)
	s := &sampler{cancel: cancel, peaks: make([]uint64, len(servers)), heaps: make([]uint64, len(servers))}
	s.wg.Go(func() {
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			for i, sv := range servers {
				if v, err := rss(sv.p.Pid()); err == nil {
					s.peaks[i] = max(s.peaks[i], v)
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	})
	for i, sv := range servers {
		s.wg.Go(func() {
			t := time.NewTicker(250 * time.Millisecond)
			defer t.Stop()
			for {
				if h, err := sv.heapInUse(ctx); err == nil {
					s.heaps[i] = max(s.heaps[i], h)
				}
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
			}
		})
	}
	return s
}

func (s *sampler) stop() (peaks, heaps []uint64) {
	s.cancel()
	s.wg.Wait()
	return s.peaks, s.heaps
}

// apiRequests counts the endpointslices LIST requests the API server has
// served since it started, and the watch events it has sent.
func apiRequests(ctx context.Context, env *kubeenv.Env) (lists, events int, err error) {
	body, err := env.Admin.Discovery().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return 0, 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.Contains(line, `resource="endpointslices"`) {
			continue
		}
		f := strings.Fields(line)
		n, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			continue
		}
		switch {
		case strings.HasPrefix(line, "apiserver_request_total{") && strings.Contains(line, `verb="LIST"`):
			lists += int(n)
		case strings.HasPrefix(line, "apiserver_watch_events_total{"):
			events += int(n)
		}
	}
	return lists, events, sc.Err()
}

func cpuAll(servers []*server) ([]float64, error) {
	out := make([]float64, len(servers))
	for i, s := range servers {
		v, err := cpuSeconds(s.p.Pid())
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}

// cpuWindow measures background CPU with no churn, then CPU per change
// under churn.
func cpuWindow(ctx context.Context, o options, ch *gen.Churner, pick []int, servers []*server, rr *roundResult, seed uint64) error {
	c0, err := cpuAll(servers)
	if err != nil {
		return err
	}
	t0 := time.Now()
	if err := pause(ctx, o.idleWindow); err != nil {
		return err
	}
	c1, err := cpuAll(servers)
	if err != nil {
		return err
	}
	idle := time.Since(t0).Seconds()
	for i, s := range servers {
		rr.Servers[s.name].IdleCPUPerSec = (c1[i] - c0[i]) / idle
	}

	wctx, cancel := context.WithTimeout(ctx, o.cpuWindow)
	type memResult struct {
		m   []memSamples
		err error
	}
	memc := make(chan memResult, 1)
	go func() {
		m, err := sampleMemory(wctx, servers, -1, time.Second)
		memc <- memResult{m, err}
	}()
	stats := ch.Run(wctx, o.churnRate, o.churnWorkers, pick, 2*seed)
	cancel()
	mem := <-memc
	if mem.err != nil {
		return mem.err
	}
	for i, s := range servers {
		sr := rr.Servers[s.name]
		sr.SteadyRSS, sr.SteadyAnon, sr.SteadyHeap = mem.m[i].median()
	}
	// The last changes are still on their way through the watches.
	if err := pause(ctx, time.Second); err != nil {
		return err
	}
	c2, err := cpuAll(servers)
	if err != nil {
		return err
	}
	rr.CPUChurn = summarize(stats)
	if stats.Changes == 0 {
		return fmt.Errorf("churn wrote nothing: %v", stats.FirstErr)
	}
	for i, s := range servers {
		rr.Servers[s.name].CPUPer1000 = (c2[i] - c1[i]) / float64(stats.Changes) * 1000
	}
	logf("churn: %d changes in %.1f s (%.1f/s, %d errors, %d late)", stats.Changes, stats.Duration.Seconds(), stats.Rate(), stats.Errors, stats.Late)
	return nil
}

// latencyWindow writes o.probes probe changes, one at a time, under churn,
// and times each server from the write to the new answer.
func latencyWindow(ctx context.Context, o options, ch *gen.Churner, probes []probe, pick []int, servers []*server, conns []*dnsConn, rr *roundResult, seed uint64) error {
	cctx, cancel := context.WithCancel(ctx)
	statsCh := make(chan gen.ChurnStats, 1)
	go func() { statsCh <- ch.Run(cctx, o.churnRate, o.churnWorkers, pick, 2*seed+1) }()
	defer func() {
		cancel()
		rr.LatencyChurn = summarize(<-statsCh)
	}()
	const timeout = 10 * time.Second
	var writes []float64
	for k := range o.probes {
		p := probes[k%len(probes)]
		var t0 time.Time
		a, err := ch.Change(ctx, p.slot, 0, func() { t0 = time.Now() })
		if err != nil {
			return err
		}
		writes = append(writes, ms(time.Since(t0)))
		seen := make([]time.Time, len(servers))
		err = waitAll(ctx, servers, conns, p.name, a, timeout, seen)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		for i, s := range servers {
			sr := rr.Servers[s.name]
			if seen[i].IsZero() {
				sr.Missed++
				sr.LatencyMs = append(sr.LatencyMs, ms(timeout))
				continue
			}
			sr.LatencyMs = append(sr.LatencyMs, ms(seen[i].Sub(t0)))
		}
		if err != nil {
			logf("probe %d: %v", k, err)
		}
		// Space the probes so they sample the churn, not each other.
		if err := pause(ctx, 50*time.Millisecond+time.Duration(k%5)*20*time.Millisecond); err != nil {
			return err
		}
	}
	rr.ProbeWriteMs = median(writes)
	for _, s := range servers {
		sr := rr.Servers[s.name]
		sr.P50Ms, sr.P99Ms = percentile(sr.LatencyMs, 50), percentile(sr.LatencyMs, 99)
		sr.MaxMs = slices.Max(sr.LatencyMs)
	}
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// percentile is the nearest-rank percentile.
func percentile(v []float64, p float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	k := int(p/100*float64(len(s))+0.999999) - 1
	return s[min(max(k, 0), len(s)-1)]
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func medianU(v []uint64) uint64 {
	f := make([]float64, len(v))
	for i, x := range v {
		f[i] = float64(x)
	}
	return uint64(median(f))
}
