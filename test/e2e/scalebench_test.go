package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestScaleBenchSmoke runs the large-cluster benchmark (bench/scale, see
// BENCHMARKS.md "Large clusters") end to end at 200 Services × 5
// endpoints, so the generator, the loader, the churn and every measurement
// keep working: its own API server, load, time to ready, steady memory,
// relist across an API server restart, CPU per change, write-to-answer
// latency. CoreDNS is measured too when its cached build is there
// (bench/compare.sh or bench/scale builds it); the test never builds it.
func TestScaleBenchSmoke(t *testing.T) {
	if os.Getenv("NODEDNS_SKIP_E2E") == "1" {
		t.Skip("NODEDNS_SKIP_E2E=1")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "scale")
	build := exec.Command("go", "build", "-o", bin, "github.com/nodedns/nodedns/bench/scale")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building bench/scale: %v\n%s", err, out)
	}
	servers := "nodedns,nodedns-list"
	home, _ := os.UserHomeDir()
	cache := os.Getenv("NODEDNS_CACHE")
	if cache == "" {
		cache = filepath.Join(home, ".cache", "nodedns")
	}
	if _, err := os.Stat(filepath.Join(cache, "bin", "coredns-v1.15.0")); err == nil {
		servers += ",coredns"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	out := filepath.Join(dir, "scale.json")
	cmd := exec.CommandContext(ctx, bin, "-quick", "-servers", servers, "-nodedns", nodednsBin, "-no-build",
		"-dir", filepath.Join(dir, "work"), "-json", out)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("bench/scale -quick: %v\n%s", err, stderr.String())
	}
	t.Logf("bench/scale -quick (%s) took %v", servers, time.Since(start).Round(time.Second))

	var rep struct {
		Sizes []struct {
			Endpoints int
			Rounds    []struct {
				APILists, APIWatchEvents int
				Servers                  map[string]struct {
					ReadySeconds             float64
					SteadyRSS, SteadyHeap    uint64
					RelistPeakRSS            uint64
					CPUPer1000, P50Ms, P99Ms float64
					Missed                   int
				}
			}
		}
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Sizes) != 1 || rep.Sizes[0].Endpoints != 1000 || len(rep.Sizes[0].Rounds) != 1 {
		t.Fatalf("report: %s", b)
	}
	r := rep.Sizes[0].Rounds[0]
	if r.APILists == 0 && r.APIWatchEvents == 0 {
		t.Errorf("no relist seen by the restarted API server: %s", b)
	}
	for name, s := range r.Servers {
		if s.ReadySeconds <= 0 || s.SteadyRSS == 0 || s.SteadyHeap == 0 || s.RelistPeakRSS < s.SteadyRSS/2 ||
			s.CPUPer1000 <= 0 || s.P50Ms <= 0 || s.P99Ms < s.P50Ms || s.Missed > 0 {
			t.Errorf("%s: implausible figures %+v\n%s", name, s, stderr.String())
		}
	}
	if len(r.Servers) < 2 {
		t.Errorf("servers measured: %v", r.Servers)
	}
}
