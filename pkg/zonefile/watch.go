package zonefile

import (
	"context"
	"crypto/sha256"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/nodedns/nodedns/pkg/zone"
)

// Watcher loads a zone file and reloads it when it changes, by polling
// (no inotify dependency; a poll every few seconds costs one stat).
//
// A poll reads the file only when its identity, size or mtime changed
// (identity: device and inode of the file the path resolves to, so the
// ConfigMap volume's atomic symlink swap is seen even if the new file has
// the same size and mtime), and reloads only when the content's hash
// changed. The content is hashed, not compared by stat alone, so that a
// rewrite with the same content (touch, ConfigMap resync) does not rebuild
// the zone.
//
// On success onLoad gets the new objects; on failure onError gets the
// error and the previous objects stay in force (onLoad is not called).
// A failure is reported once, not on every poll: the same content is not
// parsed again, nor the same stat or read error reported again.
type Watcher struct {
	path    string
	onLoad  func(zone.Objects)
	onError func(error)
	log     *slog.Logger

	mu    sync.Mutex  // serialises Check
	stat  os.FileInfo // of the content last read; nil: read next poll
	ioErr string      // last stat/read error reported, to report it once
	hash  [sha256.Size]byte
	seen  bool // hash is that of the content last parsed (good or bad)
}

// NewWatcher returns a Watcher of path. onLoad and onError are called from
// Check (so from Run's goroutine); onError may be nil. logger, if not nil,
// gets the parse notes (skipped kinds) at Info level on each load.
func NewWatcher(path string, onLoad func(zone.Objects), onError func(error), logger *slog.Logger) *Watcher {
	if onError == nil {
		onError = func(error) {}
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Watcher{path: path, onLoad: onLoad, onError: onError, log: logger}
}

// DefaultInterval is the poll interval used when none is given.
const DefaultInterval = 5 * time.Second

// Watch loads path now and then every interval (DefaultInterval if not
// positive) until ctx ends; see Watcher.
func Watch(ctx context.Context, path string, interval time.Duration, onLoad func(zone.Objects), onError func(error)) {
	NewWatcher(path, onLoad, onError, nil).Run(ctx, interval)
}

// Run calls Check now, then every interval (DefaultInterval if not
// positive) until ctx ends.
func (w *Watcher) Run(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = DefaultInterval
	}
	w.Check()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			w.Check()
		}
	}
}

// Check does one poll: it stats the file and, if that changed, reads and
// parses it. It reports whether onLoad was called, and the error given to
// onError, if any. Safe for concurrent use (calls are serialised).
func (w *Watcher) Check() (loaded bool, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()

	st, err := os.Stat(w.path)
	if err != nil {
		w.stat = nil
		return false, w.ioError(err)
	}
	if w.stat != nil && os.SameFile(st, w.stat) && st.Size() == w.stat.Size() && st.ModTime().Equal(w.stat.ModTime()) {
		return false, nil
	}
	// Stat before reading: a write after the stat changes the stat again,
	// so the next poll rereads.
	data, err := readFile(w.path)
	if err != nil {
		return false, w.ioError(err)
	}
	w.stat, w.ioErr = st, ""
	sum := sha256.Sum256(data)
	if w.seen && sum == w.hash {
		return false, nil // same content as last time, good or bad
	}
	w.hash, w.seen = sum, true
	objs, notes, err := Parse(w.path, data)
	if err != nil {
		w.onError(err)
		return false, err
	}
	for _, n := range notes {
		w.log.Info("zone file: " + n)
	}
	w.onLoad(objs)
	return true, nil
}

// ioError reports a stat or read error unless it is the one reported last.
func (w *Watcher) ioError(err error) error {
	if msg := err.Error(); msg != w.ioErr {
		w.ioErr = msg
		w.onError(err)
		return err
	}
	return nil
}
