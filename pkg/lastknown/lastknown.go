// Package lastknown keeps the cluster zone's objects on disk, so that a
// nodedns restarting while the API server is unreachable serves the zone
// it last knew instead of SERVFAIL for every cluster name (see
// zone.Builder.LoadLastKnown).
//
// The file is JSON: format, version, when it was written, and the slimmed
// objects. (Not gob: its decoder is not hardened against damaged input,
// and a bad file must never cost more than an error.) It is written to a
// temporary file, synced and renamed over the old one, so a reader never
// sees half a file; a damaged or foreign file is an error, never a partial
// zone.
package lastknown

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/nodedns/nodedns/pkg/zone"
)

const (
	format  = "nodedns last known zone"
	version = 1
)

type file struct {
	Format  string       `json:"format"`
	Version int          `json:"version"`
	Written time.Time    `json:"written"`
	Objects zone.Objects `json:"objects"`
}

// Save writes objs to path atomically, stamped with written.
func Save(path string, objs zone.Objects, written time.Time) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("last known zone: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after a successful rename there is nothing to remove
	w := bufio.NewWriter(f)
	err = errors.Join(
		json.NewEncoder(w).Encode(file{Format: format, Version: version, Written: written.UTC(), Objects: objs}),
		w.Flush(),
		f.Sync(),
		f.Close(),
	)
	if err != nil {
		return fmt.Errorf("last known zone: writing %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("last known zone: %w", err)
	}
	return nil
}

// Load reads a file written by Save and returns its objects and when they
// were written. A missing file is an error satisfying
// errors.Is(err, fs.ErrNotExist).
func Load(path string) (zone.Objects, time.Time, error) {
	var objs zone.Objects
	f, err := os.Open(path)
	if err != nil {
		return objs, time.Time{}, fmt.Errorf("last known zone: %w", err)
	}
	defer f.Close()
	objs, written, err := decode(bufio.NewReader(f))
	if err != nil {
		return objs, written, fmt.Errorf("last known zone %s: %w", path, err)
	}
	return objs, written, nil
}

// decode reads what Save wrote.
func decode(r io.Reader) (zone.Objects, time.Time, error) {
	var v file
	if err := json.NewDecoder(r).Decode(&v); err != nil {
		return zone.Objects{}, time.Time{}, fmt.Errorf("damaged or not a last known zone file: %w", err)
	}
	if v.Format != format || v.Version != version {
		return zone.Objects{}, time.Time{}, fmt.Errorf("format %q version %d, want %q version %d", v.Format, v.Version, format, version)
	}
	return v.Objects, v.Written, nil
}
