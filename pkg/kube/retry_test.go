package kube

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

func retryTestWatcher(initial time.Duration, hook func(string, error)) *Watcher {
	return &Watcher{
		cfg:          Config{OnWatchError: hook},
		log:          discardLogger(),
		warn:         warnLimiter{every: watchErrorLogEvery, now: time.Now},
		retryInitial: initial,
		retryMax:     2 * initial,
	}
}

// refused is what a list or watch returns while nothing listens on the
// API server's port.
func refused() error {
	return fmt.Errorf("Get \"https://127.0.0.1:6443/api/v1/services\": %w",
		&net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)})
}

func TestRetryWhileDownRetriesUntilTheServerAnswers(t *testing.T) {
	var hooked []string
	w := retryTestWatcher(time.Millisecond, func(resource string, err error) { hooked = append(hooked, resource) })
	calls := 0
	got, err := retryWhileDown(t.Context(), w, "services", func() (string, error) {
		calls++
		if calls <= 3 {
			return "", refused()
		}
		return "list", nil
	})
	if err != nil || got != "list" {
		t.Fatalf("got %q, %v; want the fourth call's answer", got, err)
	}
	if calls != 4 || w.WatchErrors() != 3 || len(hooked) != 3 || hooked[0] != "services" {
		t.Errorf("calls %d, WatchErrors %d, hooked %q; want 4 calls and 3 errors counted", calls, w.WatchErrors(), hooked)
	}
}

// Answers the API server meant go back to the reflector at once: a 410
// must make it relist, a 429 asks it to slow down, a 403 is a broken
// identity that retrying here would only hide.
func TestRetryWhileDownReturnsOtherErrors(t *testing.T) {
	gr := schema.GroupResource{Resource: "services"}
	for _, want := range []error{
		apierrors.NewGone("too old resource version"),
		apierrors.NewTooManyRequests("slow down", 1),
		apierrors.NewForbidden(gr, "", errors.New("no RBAC")),
		io.EOF,
	} {
		w := retryTestWatcher(time.Hour, nil)
		calls := 0
		_, err := retryWhileDown(t.Context(), w, "services", func() (int, error) { calls++; return 0, want })
		if err != want || calls != 1 || w.WatchErrors() != 0 {
			t.Errorf("%v: got %v after %d calls, %d counted; want it returned after 1 call, uncounted", want, err, calls, w.WatchErrors())
		}
	}
}

func TestRetryWhileDownStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	// The wait before the second call would be an hour; the hook, called
	// on the first failure, ends the context instead.
	w := retryTestWatcher(time.Hour, func(string, error) { cancel() })
	calls := 0
	_, err := retryWhileDown(ctx, w, "pods", func() (int, error) { calls++; return 0, refused() })
	if err == nil || calls != 1 {
		t.Errorf("got %v after %d calls; want the refusal after 1 call", err, calls)
	}
}

func TestAPIServerDown(t *testing.T) {
	for _, c := range []struct {
		err  error
		down bool
	}{
		{refused(), true},
		{&net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, true},
		{&net.OpError{Op: "dial", Net: "tcp", Err: errors.New("i/o timeout")}, true},
		{apierrors.NewServiceUnavailable("starting"), true},
		{apierrors.NewGone("expired"), false},
		{apierrors.NewTooManyRequests("slow down", 1), false},
		{apierrors.NewInternalError(errors.New("boom")), false},
		{io.EOF, false},
		{context.Canceled, false},
	} {
		if got := apiServerDown(c.err); got != c.down {
			t.Errorf("apiServerDown(%v) = %v, want %v", c.err, got, c.down)
		}
	}
}

func TestJitter(t *testing.T) {
	for range 1000 {
		if d := jitter(time.Second); d < 500*time.Millisecond || d > time.Second {
			t.Fatalf("jitter(1s) = %v, outside [0.5s, 1s]", d)
		}
	}
	if d := jitter(1); d != 1 {
		t.Errorf("jitter(1ns) = %v", d)
	}
}
