// Command scale measures nodedns and CoreDNS v1.15.0's kubernetes plugin on
// large clusters (issue #8), side by side, on the same API data in the same
// run:
//
//	go run ./bench/scale                       # 1k/10 and 10k/10, 3 rounds (~15 min, +6 to load 10k/10)
//	go run ./bench/scale -sizes 1000x10 -rounds 1 -cpu-window 10s -probes 50
//
// For each size (Services × endpoints per Service) it starts a real
// kube-apiserver + etcd (package kubeenv), loads the data made by package
// gen with concurrent client-go workers, and then, in each round, starts
// every server (nodedns, nodedns with --watch-list=false, CoreDNS; one
// after the other, the order rotating per round) and measures:
//
//   - time to ready from process start (nodedns /ready, CoreDNS's ready
//     plugin): the initial list and, for nodedns, the first snapshot;
//   - steady RSS (/proc/PID/status VmRSS) and Go heap in use
//     (go_memstats_heap_inuse_bytes from each server's /metrics);
//   - peak RSS while the API server restarts and every server relists:
//     VmHWM reset through /proc/PID/clear_refs before the restart, VmRSS
//     sampled every 5 ms across it, the larger of the two;
//   - CPU seconds (utime+stime) per 1,000 endpoint changes while a Churner
//     writes -churn-rate changes per second;
//   - time from an EndpointSlice write (the Update call) to the new answer,
//     p50 and p99, with the same churn in the background: one poller per
//     server asks for the changed endpoint's name every 2 ms over UDP, the
//     same way for every server.
//
// The report (Markdown) goes to stdout and -out, every figure to -json,
// progress to stderr. Everything listens on 127.0.0.1 only. Children are
// stopped by PID on exit, and killed by the kernel if the driver dies.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type size struct{ services, perService int }

func (s size) String() string { return fmt.Sprintf("%dx%d", s.services, s.perService) }

type options struct {
	sizes        []size
	rounds       int
	servers      []variant
	churnRate    float64
	churnWorkers int
	cpuWindow    time.Duration
	idleWindow   time.Duration
	probes       int
	settle       time.Duration
	loadWorkers  int
	dir          string
	keep         bool
	out, jsonOut string
	nodedns      string
	coredns      string
	noBuild      bool
	// sampleEvery spaces the 5 steady-state memory samples.
	sampleEvery time.Duration
	hold        bool
	holdChurn   float64
}

func main() {
	var o options
	var sizes, servers string
	flag.StringVar(&sizes, "sizes", "1000x10,10000x10", "comma-separated SERVICESxENDPOINTS sizes")
	flag.IntVar(&o.rounds, "rounds", 3, "rounds per size; medians are reported")
	flag.StringVar(&servers, "servers", "nodedns,nodedns-list,coredns", "servers to measure: nodedns (as built: --watch-list on), nodedns-list (--watch-list=false), nodedns-gogc50 (GOGC=50), coredns, coredns-watchlist (KUBE_FEATURE_WatchListClient=true)")
	flag.Float64Var(&o.churnRate, "churn-rate", 100, "endpoint changes per second in the churn windows")
	flag.IntVar(&o.churnWorkers, "churn-workers", 16, "concurrent writers of the churn")
	flag.DurationVar(&o.cpuWindow, "cpu-window", 30*time.Second, "length of the churn window that measures CPU per change")
	flag.DurationVar(&o.idleWindow, "idle-window", 5*time.Second, "length of the idle window that measures background CPU")
	flag.IntVar(&o.probes, "probes", 200, "write-to-answer probes per round (under churn)")
	flag.DurationVar(&o.settle, "settle", 5*time.Second, "pause after every server is ready, before steady memory is sampled")
	flag.IntVar(&o.loadWorkers, "load-workers", 16, "concurrent API writers when loading")
	flag.StringVar(&o.dir, "dir", "", "work directory (logs, kubeenv state); default a new temporary one")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory")
	flag.StringVar(&o.out, "out", "", "also write the Markdown report here")
	flag.StringVar(&o.jsonOut, "json", "", "write every figure as JSON here")
	flag.StringVar(&o.nodedns, "nodedns", "", "nodedns binary; default: built from this tree")
	flag.StringVar(&o.coredns, "coredns", "", "CoreDNS binary; default ${NODEDNS_CACHE:-~/.cache/nodedns}/bin/coredns-"+corednsVersion+", built when missing")
	flag.BoolVar(&o.noBuild, "no-build", false, "never build CoreDNS (fail when it is missing)")
	flag.BoolVar(&o.hold, "hold", false, "load the first size, print the kubeconfigs, and keep the API server up until interrupted (for profiling by hand); measure nothing")
	flag.Float64Var(&o.holdChurn, "hold-churn", 0, "with -hold: endpoint changes per second meanwhile")
	quick := flag.Bool("quick", false, "smoke run (the CI test's): -sizes 200x5 -rounds 1 -cpu-window 3s -idle-window 1s -probes 10 -settle 500ms, unless given")
	o.sampleEvery = time.Second
	flag.Parse()
	if *quick {
		set := map[string]bool{}
		flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
		for name, v := range map[string]string{"sizes": "200x5", "rounds": "1", "cpu-window": "3s", "idle-window": "1s", "probes": "10", "settle": "500ms"} {
			if !set[name] {
				flag.Set(name, v)
			}
		}
		o.sampleEvery = 200 * time.Millisecond
	}
	var err error
	if o.sizes, err = parseSizes(sizes); err != nil {
		fatal(err)
	}
	for _, name := range strings.Split(servers, ",") {
		v, ok := variants[strings.TrimSpace(name)]
		if !ok {
			fatal(fmt.Errorf("-servers: unknown server %q", name))
		}
		o.servers = append(o.servers, v)
	}
	if len(o.servers) == 0 || o.rounds < 1 || o.probes < 1 || o.churnRate <= 0 {
		fatal(errors.New("need at least one server, -rounds >= 1, -probes >= 1, -churn-rate > 0"))
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "scale:", err)
	os.Exit(1)
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s scale: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func parseSizes(s string) ([]size, error) {
	var out []size
	for _, part := range strings.Split(s, ",") {
		a, b, ok := strings.Cut(strings.TrimSpace(part), "x")
		n, err1 := strconv.Atoi(a)
		m, err2 := strconv.Atoi(b)
		if !ok || err1 != nil || err2 != nil || n < 1 || m < 1 {
			return nil, fmt.Errorf("-sizes: %q is not SERVICESxENDPOINTS", part)
		}
		out = append(out, size{n, m})
	}
	return out, nil
}

func run(ctx context.Context, o options) error {
	if o.dir == "" {
		d, err := os.MkdirTemp("", "nodedns-scale-")
		if err != nil {
			return err
		}
		o.dir = d
		if !o.keep {
			defer os.RemoveAll(d)
		}
	}
	if err := os.MkdirAll(o.dir, 0o755); err != nil {
		return err
	}
	bins, err := prepareBinaries(ctx, &o)
	if err != nil {
		return err
	}
	rep := &report{
		ChurnRate: o.churnRate,
		Started:   time.Now().UTC(),
		Host:      hostInfo(),
		Tree:      treeInfo(),
		Options:   o.describe(),
		LoadStart: loadAvg(),
	}
	for _, v := range o.servers {
		rep.Servers = append(rep.Servers, v.name)
	}
	if o.hold {
		_, err := runSize(ctx, o, o.sizes[0], bins)
		return err
	}
	for _, sz := range o.sizes {
		res, err := runSize(ctx, o, sz, bins)
		if res != nil {
			rep.Sizes = append(rep.Sizes, res)
		}
		if err != nil {
			return fmt.Errorf("%v: %w (work directory %s)", sz, err, o.dir)
		}
	}
	rep.LoadEnd = loadAvg()
	rep.Finished = time.Now().UTC()
	md := rep.markdown()
	fmt.Print(md)
	if o.out != "" {
		if err := os.WriteFile(o.out, []byte(md), 0o644); err != nil {
			return err
		}
	}
	if o.jsonOut != "" {
		b, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(o.jsonOut, b, 0o644); err != nil {
			return err
		}
	}
	if o.keep {
		logf("work directory kept: %s", o.dir)
	}
	return nil
}

func (o options) describe() string {
	var sizes, servers []string
	for _, s := range o.sizes {
		sizes = append(sizes, s.String())
	}
	for _, v := range o.servers {
		servers = append(servers, v.name)
	}
	return fmt.Sprintf("-sizes %s -rounds %d -servers %s -churn-rate %g -churn-workers %d -cpu-window %v -idle-window %v -probes %d -settle %v -load-workers %d",
		strings.Join(sizes, ","), o.rounds, strings.Join(servers, ","), o.churnRate, o.churnWorkers, o.cpuWindow, o.idleWindow, o.probes, o.settle, o.loadWorkers)
}

// prepareBinaries builds nodedns from this tree and finds (or builds)
// CoreDNS when a CoreDNS server is measured.
func prepareBinaries(ctx context.Context, o *options) (binaries, error) {
	var b binaries
	if o.nodedns == "" {
		b.nodedns = filepath.Join(o.dir, "nodedns")
		logf("building nodedns from this tree")
		cmd := exec.CommandContext(ctx, "go", "build", "-o", b.nodedns, "github.com/nodedns/nodedns/cmd/nodedns")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return b, fmt.Errorf("building nodedns: %w", err)
		}
	} else {
		b.nodedns = o.nodedns
	}
	need := false
	for _, v := range o.servers {
		need = need || v.coredns
	}
	if !need {
		return b, nil
	}
	b.coredns = o.coredns
	if b.coredns == "" {
		var err error
		if b.coredns, err = coreDNS(ctx, !o.noBuild); err != nil {
			return b, err
		}
	}
	if _, err := os.Stat(b.coredns); err != nil {
		return b, fmt.Errorf("CoreDNS: %w", err)
	}
	return b, nil
}

func hostInfo() string {
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return fmt.Sprintf("%d CPUs, %s, kernel %s, %s", runtime.NumCPU(), memTotal(), strings.TrimSpace(string(kernel)), runtime.Version())
}

func memTotal() string {
	m, err := procMeminfo("MemTotal")
	if err != nil {
		return "memory unknown"
	}
	return fmt.Sprintf("%.1f GiB", float64(m)/(1<<30))
}

func procMeminfo(field string) (uint64, error) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n * 1024, err
		}
	}
	return 0, fmt.Errorf("no %s in /proc/meminfo", field)
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// treeInfo names the measured tree: HEAD, and "+dirty" when the work tree
// differs from it (git is only read).
func treeInfo() string {
	head, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	s := strings.TrimSpace(string(head))
	if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(st) > 0 {
		s += "+dirty"
	}
	return s
}
