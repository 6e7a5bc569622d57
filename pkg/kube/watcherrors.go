package kube

import (
	"errors"
	"io"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// watchErrorLogEvery is the least time between two warnings about the same
// resource's list/watch failures; failures in between are counted and the
// count goes with the next warning.
const watchErrorLogEvery = 30 * time.Second

// watchError is every informer's WatchErrorHandler: count, hook, and log
// without flooding. The reflector retries by itself afterwards.
func (w *Watcher) watchError(resource string, err error) {
	w.watchErrors.Add(1)
	if w.cfg.OnWatchError != nil {
		w.cfg.OnWatchError(resource, err)
	}
	// A closed or expired watch is routine: the reflector rewatches or
	// relists; the defaults in client-go log these below warning too.
	if errors.Is(err, io.EOF) || apierrors.IsResourceExpired(err) || apierrors.IsGone(err) {
		w.log.Debug("kube: watch closed", "resource", resource, "err", err)
		return
	}
	if ok, suppressed := w.warn.allow(resource); ok {
		w.log.Warn("kube: list/watch failed, retrying; serving the last known zone",
			"resource", resource, "err", err, "suppressed", suppressed)
	}
}

// warnLimiter allows one log line per key per interval and counts the
// others.
type warnLimiter struct {
	every time.Duration
	now   func() time.Time

	mu         sync.Mutex
	last       map[string]time.Time
	suppressed map[string]int
}

// allow reports whether to log for key now, and how many were suppressed
// since the last allowed one.
func (l *warnLimiter) allow(key string) (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if last, ok := l.last[key]; ok && now.Sub(last) < l.every {
		l.suppressed[key]++
		return false, 0
	}
	if l.last == nil {
		l.last = make(map[string]time.Time)
		l.suppressed = make(map[string]int)
	}
	n := l.suppressed[key]
	l.last[key] = now
	l.suppressed[key] = 0
	return true, n
}
