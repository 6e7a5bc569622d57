package lastknown

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/nodedns/nodedns/pkg/zone"
)

func sample() zone.Objects {
	return zone.Objects{
		Namespaces: []string{"default", "db"},
		Services: []*zone.Service{
			{Namespace: "default", Name: "web", ClusterIPs: []netip.Addr{netip.MustParseAddr("10.96.0.10"), netip.MustParseAddr("fd00::10")},
				Ports: []zone.Port{{Name: "http", Protocol: "TCP", Port: 80}}},
			{Namespace: "db", Name: "pg", Headless: true, PublishNotReady: true},
			{Namespace: "default", Name: "ext", ExternalName: "example.com"},
		},
		EndpointSlices: []*zone.EndpointSlice{{
			Namespace: "db", Name: "pg-1", ServiceName: "pg", AddressType: "IPv4",
			Ports: []zone.Port{{Name: "pg", Port: 5432}},
			Endpoints: []zone.Endpoint{
				{Addresses: []netip.Addr{netip.MustParseAddr("10.244.1.10")}, Hostname: "pg-0", Ready: true, PodName: "pg-0"},
				{Addresses: []netip.Addr{netip.MustParseAddr("10.244.1.11")}, Terminating: true},
			},
		}},
		Pods: []*zone.Pod{{Namespace: "default", Name: "web-1", IPs: []netip.Addr{netip.MustParseAddr("10.244.0.5")}, HostNetwork: false}},
	}
}

func TestSaveLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "zone.gob")
	written := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	if err := Save(path, sample(), written); err != nil {
		t.Fatal(err)
	}
	got, at, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if !at.Equal(written) {
		t.Errorf("written %v, want %v", at, written)
	}
	if !reflect.DeepEqual(got, sample()) {
		t.Errorf("loaded %+v\nwant %+v", got, sample())
	}
	// Saving again replaces the file and leaves no temporary behind.
	if err := Save(path, zone.Objects{Namespaces: []string{"only"}}, written); err != nil {
		t.Fatal(err)
	}
	if got, _, err := Load(path); err != nil || !reflect.DeepEqual(got.Namespaces, []string{"only"}) || len(got.Services) != 0 {
		t.Errorf("after the second save: %+v, %v", got, err)
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
		t.Errorf("directory holds %d entries, want the file only", len(entries))
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	if _, _, err := Load(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v, want fs.ErrNotExist", err)
	}
	good := filepath.Join(dir, "good")
	if err := Save(good, sample(), time.Now()); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	foreign, _ := json.Marshal(file{Format: "something else", Version: 1})
	future, _ := json.Marshal(file{Format: format, Version: version + 1})
	for name, content := range map[string][]byte{
		"empty":     nil,
		"text":      []byte("services: []\n"),
		"truncated": data[:len(data)/2],
		"foreign":   foreign,
		"future":    future,
	} {
		path := filepath.Join(dir, name)
		os.WriteFile(path, content, 0o600)
		if objs, _, err := Load(path); err == nil {
			t.Errorf("%s: loaded %+v, want an error", name, objs)
		}
	}
}

// FuzzLoad: any file content is loaded or refused, never a crash. (The
// decoder, without the file: a write per input slowed the fuzzer down.)
func FuzzLoad(f *testing.F) {
	good, _ := json.Marshal(file{Format: format, Version: version, Objects: sample()})
	f.Add(good)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		decode(bytes.NewReader(data))
	})
}

// BenchmarkSaveLarge: the cost of one save of a large cluster's zone,
// 10,000 Services with 10 endpoints each.
func BenchmarkSaveLarge(b *testing.B) {
	var objs zone.Objects
	for i := range 10_000 {
		ns := "ns" + strconv.Itoa(i%10)
		name := "svc" + strconv.Itoa(i)
		objs.Services = append(objs.Services, &zone.Service{Namespace: ns, Name: name,
			ClusterIPs: []netip.Addr{netip.AddrFrom4([4]byte{10, 96, byte(i >> 8), byte(i)})},
			Ports:      []zone.Port{{Name: "http", Protocol: "TCP", Port: 80}}})
		es := &zone.EndpointSlice{Namespace: ns, Name: name + "-abcde", ServiceName: name, AddressType: "IPv4",
			Ports: []zone.Port{{Name: "http", Protocol: "TCP", Port: 8080}}}
		for j := range 10 {
			es.Endpoints = append(es.Endpoints, zone.Endpoint{
				Addresses: []netip.Addr{netip.AddrFrom4([4]byte{10, byte(j), byte(i >> 8), byte(i)})}, Ready: true})
		}
		objs.EndpointSlices = append(objs.EndpointSlices, es)
	}
	path := filepath.Join(b.TempDir(), "zone.json")
	b.ReportAllocs()
	for b.Loop() {
		if err := Save(path, objs, time.Now()); err != nil {
			b.Fatal(err)
		}
	}
	fi, _ := os.Stat(path)
	b.ReportMetric(float64(fi.Size())/(1<<20), "MiB/file")
}
