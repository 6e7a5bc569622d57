package kubeenv

import (
	"os"
	"testing"
	"time"
)

// StartForTest starts an Env in t.TempDir() and stops it when the test ends,
// logging the server logs' tails if the test failed. Missing binaries fail
// the test with the hint to run hack/testenv.sh build; NODEDNS_SKIP_E2E=1
// skips instead.
func StartForTest(t testing.TB) *Env {
	t.Helper()
	if os.Getenv("NODEDNS_SKIP_E2E") == "1" {
		t.Skip("NODEDNS_SKIP_E2E=1")
	}
	if _, _, err := Binaries(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	env, err := Start(t.Context(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("kubeenv: %s ready in %v (dir %s)", env.APIServerURL, time.Since(start).Round(time.Millisecond), env.Dir)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("kubeenv logs:\n%s", env.LogTails())
		}
		if err := env.Stop(); err != nil {
			t.Errorf("kubeenv stop: %v", err)
		}
	})
	return env
}
