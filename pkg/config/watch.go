package config

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
)

// Version tells whether a file's content changed since the last look, by
// polling: no inotify dependency, and a poll costs one stat. As in
// pkg/zonefile: the file is read only when the identity (device and inode
// of what the path resolves to, so a ConfigMap volume's symlink swap
// counts), size or mtime changed, and counts as changed only when the hash
// of its content did (a touch or an identical rewrite is no change).
// Not safe for concurrent use.
type Version struct {
	stat os.FileInfo
	sum  [sha256.Size]byte
	seen bool
}

// Changed stats path and returns its content when it differs from the
// content seen last (always on the first call). After an error (a missing
// file, say) the file is read again on the next call, and counts as
// changed if its content differs from the one seen before the error.
func (v *Version) Changed(path string) (data []byte, changed bool, err error) {
	st, err := os.Stat(path)
	if err != nil {
		v.stat = nil
		return nil, false, err
	}
	if v.stat != nil && os.SameFile(st, v.stat) && st.Size() == v.stat.Size() && st.ModTime().Equal(v.stat.ModTime()) {
		return nil, false, nil
	}
	// Stat before reading: a write after the stat changes the stat
	// again, so the next poll reads again.
	data, err = readSmall(path)
	if err != nil {
		v.stat = nil
		return nil, false, err
	}
	v.stat = st
	return data, v.Seen(data), nil
}

// Seen records data as the content seen last and reports whether it
// differs from the one before (true the first time).
func (v *Version) Seen(data []byte) bool {
	sum := sha256.Sum256(data)
	if v.seen && sum == v.sum {
		return false
	}
	v.sum, v.seen = sum, true
	return true
}

// Forget makes the next look count as a change.
func (v *Version) Forget() { *v = Version{} }

// readSmall reads a file of at most MaxFileSize bytes.
func readSmall(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(io.LimitReader(f, MaxFileSize+1)); err != nil {
		return nil, err
	}
	if b.Len() > MaxFileSize {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, MaxFileSize)
	}
	return b.Bytes(), nil
}
