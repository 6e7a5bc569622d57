package main

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/nodedns/nodedns/pkg/kube"
	"github.com/nodedns/nodedns/pkg/lastknown"
	"github.com/nodedns/nodedns/pkg/zone"
)

// The last known zone (--last-known-zone) is saved at most this often while
// the zone changes, and at least this often while the API server answers
// and nothing changes, so that its age says how old its content may be.
const (
	lastKnownSaveEvery    = 30 * time.Second
	lastKnownRefreshEvery = 10 * time.Minute
)

// loadLastKnown serves the zone saved by a previous run until the API
// watches sync, if the file is there and younger than maxAge (0: any age).
// Anything wrong with the file is logged; nodedns then starts as without
// one (cluster names SERVFAIL until the watches sync).
func loadLastKnown(path string, maxAge time.Duration, builder *zone.Builder, log *slog.Logger) {
	objs, written, err := lastknown.Load(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		log.Info("no last known zone yet; cluster names get SERVFAIL until the API watches sync", "path", path)
		return
	case err != nil:
		log.Warn("last known zone unusable; cluster names get SERVFAIL until the API watches sync", "err", err)
		return
	}
	age := time.Since(written)
	if maxAge > 0 && age > maxAge {
		log.Warn("last known zone too old to serve; cluster names get SERVFAIL until the API watches sync",
			"path", path, "written", written, "age", age.Round(time.Second), "max_age", maxAge)
		return
	}
	builder.LoadLastKnown(objs)
	builder.Flush()
	log.Info("serving the last known zone until the API watches sync", "path", path, "written", written,
		"age", age.Round(time.Second), "services", len(objs.Services), "endpointslices", len(objs.EndpointSlices), "pods", len(objs.Pods))
}

// keepLastKnown saves the zone's objects to path once the watches have
// synced: when the published zone changed (at most every
// lastKnownSaveEvery), every lastKnownRefreshEvery while no watch failed,
// and a last time when ctx ends.
func keepLastKnown(ctx context.Context, path string, builder *zone.Builder, store *zone.Store, w *kube.Watcher, log *slog.Logger) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		log.Error("last known zone: cannot create its directory; not saved", "err", err)
		return
	}
	select {
	case <-ctx.Done():
		return
	case <-w.Synced():
	}
	var (
		saved     *zone.Snapshot
		savedAt   time.Time
		errsSeen  = w.WatchErrors()
		lastError string
	)
	save := func() {
		snap := store.Load()
		if err := lastknown.Save(path, builder.Objects(), time.Now()); err != nil {
			if msg := err.Error(); msg != lastError { // once per distinct error, not every period
				lastError = msg
				log.Error("last known zone not saved", "err", err)
			}
			return
		}
		lastError = ""
		saved, savedAt = snap, time.Now()
	}
	save()
	t := time.NewTicker(lastKnownSaveEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			if store.Load() != saved {
				save()
			}
			return
		case <-t.C:
		}
		errs := w.WatchErrors()
		healthy := errs == errsSeen
		errsSeen = errs
		if store.Load() != saved || (healthy && time.Since(savedAt) >= lastKnownRefreshEvery) {
			save()
		}
	}
}
