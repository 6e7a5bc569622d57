package zonefile

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nodedns/nodedns/pkg/zone"
)

func sprint(v any) string {
	rv := reflect.ValueOf(v)
	if rv.Kind() == reflect.Pointer && !rv.IsNil() {
		v = rv.Elem().Interface()
	}
	return fmt.Sprintf("%+v", v)
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func svcDoc(name, ip string) string {
	return fmt.Sprintf("apiVersion: v1\nkind: Service\nmetadata: {name: %s}\nspec: {clusterIP: %s}\n", name, ip)
}

// recorder collects a Watcher's callbacks.
type recorder struct {
	loads  []zone.Objects
	errors []error
}

func (r *recorder) watcher(path string) *Watcher {
	return NewWatcher(path, func(o zone.Objects) { r.loads = append(r.loads, o) }, func(err error) { r.errors = append(r.errors, err) }, nil)
}

// step runs one Check and verifies what it did.
func step(t *testing.T, w *Watcher, r *recorder, wantLoaded, wantErr bool) {
	t.Helper()
	nl, ne := len(r.loads), len(r.errors)
	loaded, err := w.Check()
	if loaded != wantLoaded || (err != nil) != wantErr {
		t.Fatalf("Check() = %v, %v; want loaded=%v err=%v", loaded, err, wantLoaded, wantErr)
	}
	if got := len(r.loads) - nl; got != map[bool]int{true: 1}[wantLoaded] {
		t.Fatalf("onLoad called %d times", got)
	}
	if got := len(r.errors) - ne; got != map[bool]int{true: 1}[wantErr] {
		t.Fatalf("onError called %d times", got)
	}
}

// write replaces path's content and gives it a distinct mtime, so the
// test does not depend on the file system's timestamp granularity.
func write(t *testing.T, path, content string, mtime time.Time) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}

func TestWatcherCheck(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "zone.yaml")
	r := &recorder{}
	w := r.watcher(path)
	t0 := time.Unix(1_700_000_000, 0)

	// Missing file: reported once.
	step(t, w, r, false, true)
	step(t, w, r, false, false)
	if !errors.Is(r.errors[0], os.ErrNotExist) {
		t.Errorf("missing file error %v", r.errors[0])
	}

	write(t, path, svcDoc("web", "10.96.0.50"), t0)
	step(t, w, r, true, false)
	if s := r.loads[0].Services; len(s) != 1 || s[0].Name != "web" {
		t.Fatalf("loaded %s", dump(r.loads[0]))
	}
	step(t, w, r, false, false) // unchanged

	// Same content, new mtime (touch): read, but not reloaded.
	write(t, path, svcDoc("web", "10.96.0.50"), t0.Add(time.Second))
	step(t, w, r, false, false)

	// New content.
	write(t, path, svcDoc("web", "10.96.0.51"), t0.Add(2*time.Second))
	step(t, w, r, true, false)
	if got := r.loads[1].Services[0].ClusterIPs[0].String(); got != "10.96.0.51" {
		t.Errorf("reloaded IP %s", got)
	}

	// Bad content: onError once, no onLoad; the zone keeps the last load.
	write(t, path, "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {clusterIP: nope}\n", t0.Add(3*time.Second))
	step(t, w, r, false, true)
	var ze *Error
	if !errors.As(r.errors[len(r.errors)-1], &ze) || ze.File != path || ze.Line != 4 {
		t.Errorf("parse error %v", r.errors[len(r.errors)-1])
	}
	step(t, w, r, false, false)
	write(t, path, "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {clusterIP: nope}\n", t0.Add(4*time.Second))
	step(t, w, r, false, false) // same bad content: not reported again

	// Fixed.
	write(t, path, svcDoc("web", "10.96.0.52"), t0.Add(5*time.Second))
	step(t, w, r, true, false)

	// Deleted, then back with other content.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	step(t, w, r, false, true)
	step(t, w, r, false, false)
	write(t, path, svcDoc("api", "10.96.0.53"), t0.Add(6*time.Second))
	step(t, w, r, true, false)
	if r.loads[len(r.loads)-1].Services[0].Name != "api" {
		t.Error("did not load the recreated file")
	}
}

// A ConfigMap volume updates a file by swapping a symlink to a new
// directory. The new file is detected even with the same size and mtime.
func TestWatcherConfigMapSwap(t *testing.T) {
	dir := t.TempDir()
	mtime := time.Unix(1_700_000_000, 0)
	mkdata := func(name, content string) {
		if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		write(t, filepath.Join(dir, name, "zone.yaml"), content, mtime)
	}
	swap := func(target string) {
		tmp := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink(target, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	a, b := svcDoc("web", "10.96.0.50"), svcDoc("web", "10.96.0.59")
	if len(a) != len(b) {
		t.Fatal("test contents must have the same size")
	}
	mkdata("..2024_01", a)
	mkdata("..2024_02", b)
	swap("..2024_01")
	if err := os.Symlink(filepath.Join("..data", "zone.yaml"), filepath.Join(dir, "zone.yaml")); err != nil {
		t.Fatal(err)
	}

	r := &recorder{}
	w := r.watcher(filepath.Join(dir, "zone.yaml"))
	step(t, w, r, true, false)
	step(t, w, r, false, false)
	swap("..2024_02")
	step(t, w, r, true, false)
	if got := r.loads[1].Services[0].ClusterIPs[0].String(); got != "10.96.0.59" {
		t.Errorf("after swap: %s", got)
	}
}

func TestWatchRunLoadsAtStart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "zone.yaml")
	write(t, path, svcDoc("web", "10.96.0.50"), time.Unix(1_700_000_000, 0))
	ctx, cancel := context.WithCancel(context.Background())
	loaded := make(chan zone.Objects, 1)
	done := make(chan struct{})
	go func() {
		Watch(ctx, path, time.Hour, func(o zone.Objects) { loaded <- o }, func(err error) { t.Errorf("onError: %v", err) })
		close(done)
	}()
	select {
	case o := <-loaded:
		if len(o.Services) != 1 {
			t.Errorf("loaded %s", dump(o))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no load at start")
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Watch did not return after cancel")
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Load(filepath.Join(dir, "missing.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing: %v", err)
	}
	defer func(n int64) { maxSize = n }(maxSize)
	maxSize = 1024
	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, []byte(strings.Repeat("#", 1025)), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(big); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("too big: %v", err)
	}
}
