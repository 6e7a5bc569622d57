package kube

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	utilnet "k8s.io/apimachinery/pkg/util/net"
)

// While the API server is down, a list or watch is retried here rather than
// handed back to the reflector. client-go's reflector backs off up to 30 s,
// doubled by jitter, and its backoff keeps growing for the whole outage; the
// zone then lags the API server by that long after it is back (7 to 40 s
// measured in test/hostile). Retrying here with a short cap bounds the lag
// at retryMax. The cost during an outage is one refused connection per
// informer every few seconds; the jitter spreads a cluster's nodes when the
// server returns.
const (
	retryInitial = 250 * time.Millisecond
	retryMax     = 4 * time.Second
)

// retryWhileDown runs call until it succeeds, fails for another reason than
// an unreachable API server, or ctx ends. Each failure it absorbs is a
// watch error (counted, hooked, logged at a rate); the others go back to
// the reflector, which has its own retries for them.
func retryWhileDown[T any](ctx context.Context, w *Watcher, resource string, call func() (T, error)) (T, error) {
	delay := w.retryInitial
	for {
		v, err := call()
		if err == nil || !apiServerDown(err) || ctx.Err() != nil {
			return v, err
		}
		w.watchError(resource, err)
		t := time.NewTimer(jitter(delay))
		select {
		case <-ctx.Done():
			t.Stop()
			return v, err
		case <-t.C:
		}
		delay = min(2*delay, w.retryMax)
	}
}

// apiServerDown reports whether err says the API server could not be
// reached or is not serving yet, as opposed to an answer it meant (403,
// 410, 429 and the like).
func apiServerDown(err error) bool {
	if utilnet.IsConnectionRefused(err) || utilnet.IsConnectionReset(err) || apierrors.IsServiceUnavailable(err) {
		return true
	}
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// jitter returns a duration in [d/2, d].
func jitter(d time.Duration) time.Duration {
	if d < 2 {
		return d
	}
	return d/2 + rand.N(d/2+1)
}
