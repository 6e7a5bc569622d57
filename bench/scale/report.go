package main

import (
	"fmt"
	"strings"
	"time"
)

type report struct {
	ChurnRate         float64
	Started, Finished time.Time
	Host, Tree        string
	Options           string
	LoadStart         string
	LoadEnd           string
	Servers           []string
	Sizes             []*sizeResult
}

func (r *report) churnRate() string { return fmt.Sprintf("%g", r.ChurnRate) }

// metric reads one figure of a server's round.
type metric func(*serverRound) float64

func (r *report) markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "### bench/scale, %s – %s UTC\n\n", r.Started.Format("2006-01-02 15:04"), r.Finished.Format("15:04"))
	fmt.Fprintf(&b, "- tree %s; %s; load average %s at the start, %s at the end\n", r.Tree, r.Host, r.LoadStart, r.LoadEnd)
	fmt.Fprintf(&b, "- `go run ./bench/scale %s`\n\n", r.Options)
	for _, s := range r.Sizes {
		r.sizeMarkdown(&b, s)
	}
	return b.String()
}

func (r *report) sizeMarkdown(b *strings.Builder, s *sizeResult) {
	fmt.Fprintf(b, "#### %d Services × %d endpoints (%d endpoints in %d EndpointSlices, %d namespaces)\n\n",
		s.Services, s.PerService, s.Endpoints, s.Slices, s.Namespaces)
	fmt.Fprintf(b, "Loaded in %.0f s. CoreDNS's published sizing for this cluster (0.86 MB per 1,000 Pods+Services + 49 MB, every endpoint a Pod): %.0f MB.\n\n",
		s.LoadSeconds, s.CoreDNSPublishedSizing)
	if len(s.Rounds) == 0 {
		b.WriteString("No complete round.\n\n")
		return
	}
	ref := ""
	for _, name := range r.Servers {
		if name == "coredns" {
			ref = name
		}
	}
	rss := func(x *serverRound) float64 { return mib(x.SteadyRSS) }
	heap := func(x *serverRound) float64 { return mib(x.SteadyHeap) }
	peak := func(x *serverRound) float64 { return mib(x.RelistPeakRSS) }
	peakRatio := func(x *serverRound) float64 { return float64(x.RelistPeakRSS) / float64(x.SteadyRSS) }
	anon := func(x *serverRound) float64 { return mib(x.SteadyAnon) }
	b.WriteString("| server | steady RSS MiB | ×CoreDNS | of which anonymous MiB | ×CoreDNS | Go heap in use MiB | ×CoreDNS | relist peak RSS MiB | ×own steady | time to ready s | write→answer p50 ms | p99 ms | CPU s per 1,000 changes | ×CoreDNS |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, name := range r.Servers {
		fmt.Fprintf(b, "| %s | %.1f | %s | %.1f | %s | %.1f | %s | %.1f | %.2f× | %.2f | %.0f | %.0f | %.3f | %s |\n", name,
			s.median(name, rss), s.ratio(name, ref, rss),
			s.median(name, anon), s.ratio(name, ref, anon),
			s.median(name, heap), s.ratio(name, ref, heap),
			s.median(name, peak), s.median(name, peakRatio),
			s.median(name, func(x *serverRound) float64 { return x.ReadySeconds }),
			s.median(name, func(x *serverRound) float64 { return x.P50Ms }),
			s.median(name, func(x *serverRound) float64 { return x.P99Ms }),
			s.median(name, func(x *serverRound) float64 { return x.CPUPer1000 }),
			s.ratio(name, ref, func(x *serverRound) float64 { return x.CPUPer1000 }))
	}
	fmt.Fprintf(b, "\nMedians over %d rounds; ×CoreDNS is the median of the per-round ratios. Steady: sampled every second while %s endpoint changes per second churn; \"after start\" below: once every server is ready, before any churn.\n\n", len(s.Rounds), r.churnRate())

	b.WriteString("<details><summary>Every round</summary>\n\n")
	b.WriteString("| round | server | ready s | after start: RSS / anon / heap MiB | steady: RSS / anon / heap MiB | relist peak RSS MiB | peak heap MiB | relist→fresh s | idle CPU ms/s | CPU s/1000 | p50 ms | p99 ms | max ms | missed | churn (CPU window) | churn (latency window) | API LISTs / watch events after restart | API down s | probe write ms | load |\n")
	b.WriteString("|---:|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|---:|---:|---|\n")
	for _, rr := range s.Rounds {
		for _, name := range rr.Order {
			x := rr.Servers[name]
			if x == nil {
				continue
			}
			fmt.Fprintf(b, "| %d | %s | %.2f | %.1f / %.1f / %.1f | %.1f / %.1f / %.1f | %.1f | %.1f | %.2f | %.1f | %.3f | %.0f | %.0f | %.0f | %d | %s | %s | %d/%d | %.1f | %.1f | %s |\n",
				rr.Round, name, x.ReadySeconds, mib(x.StartRSS), mib(x.StartAnon), mib(x.StartHeap),
				mib(x.SteadyRSS), mib(x.SteadyAnon), mib(x.SteadyHeap), mib(x.RelistPeakRSS), mib(x.RelistPeakHeap),
				x.RelistSeconds, x.IdleCPUPerSec*1000, x.CPUPer1000, x.P50Ms, x.P99Ms, x.MaxMs, x.Missed,
				rr.CPUChurn.String(), rr.LatencyChurn.String(), rr.APILists, rr.APIWatchEvents, rr.APIDownSeconds, rr.ProbeWriteMs, rr.LoadAvg)
		}
	}
	b.WriteString("\n</details>\n\n")
}

func (c churnSummary) String() string {
	s := fmt.Sprintf("%d in %.0f s (%.1f/s)", c.Changes, c.Seconds, c.Rate)
	if c.Errors > 0 {
		s += fmt.Sprintf(", %d errors", c.Errors)
	}
	if c.Late > 0 {
		s += fmt.Sprintf(", %d late", c.Late)
	}
	return s
}

// median is the median over rounds of m for server name.
func (s *sizeResult) median(name string, m metric) float64 {
	var v []float64
	for _, rr := range s.Rounds {
		if x := rr.Servers[name]; x != nil && x.ReadySeconds > 0 {
			v = append(v, m(x))
		}
	}
	return median(v)
}

// ratio is the median over rounds of m(name)/m(ref), or "" without ref.
func (s *sizeResult) ratio(name, ref string, m metric) string {
	if ref == "" {
		return ""
	}
	var v []float64
	for _, rr := range s.Rounds {
		x, y := rr.Servers[name], rr.Servers[ref]
		if x == nil || y == nil || m(y) == 0 {
			continue
		}
		v = append(v, m(x)/m(y))
	}
	if len(v) == 0 {
		return ""
	}
	return fmt.Sprintf("%.2f×", median(v))
}
