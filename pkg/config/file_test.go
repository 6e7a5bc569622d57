package config

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, c := range []struct {
		name, in string
		want     []Setting
	}{
		{"empty", "", nil},
		{"comments only", "# nothing\n\n", nil},
		{"null document", "---\n", nil},
		{"scalars", "max-ttl: 30s\nlog-level: debug\ncache-size: 100\nprefetch: false\n", []Setting{
			{Key: "max-ttl", Values: []string{"30s"}, Line: 1},
			{Key: "log-level", Values: []string{"debug"}, Line: 2},
			{Key: "cache-size", Values: []string{"100"}, Line: 3},
			{Key: "prefetch", Values: []string{"false"}, Line: 4},
		}},
		{"empty string", `metrics-listen: ""`, []Setting{{Key: "metrics-listen", Values: []string{""}, Line: 1}}},
		{"block list", "upstream:\n  - 192.0.2.1\n  - 192.0.2.2:5353\n", []Setting{
			{Key: "upstream", Values: []string{"192.0.2.1", "192.0.2.2:5353"}, List: true, Line: 1},
		}},
		{"flow list", "upstream: [192.0.2.1, '[2001:db8::1]:53']", []Setting{
			{Key: "upstream", Values: []string{"192.0.2.1", "[2001:db8::1]:53"}, List: true, Line: 1},
		}},
		{"empty list", "upstream: []", []Setting{{Key: "upstream", Values: []string{}, List: true, Line: 1}}},
		{"mapping", "stub-domain:\n  corp.example: [10.0.0.1, 10.0.0.2:5353]\n  lab.example: 10.0.0.3\n", []Setting{
			{Key: "stub-domain", Values: []string{"corp.example=10.0.0.1,10.0.0.2:5353", "lab.example=10.0.0.3"}, List: true, Line: 1},
		}},
		{"alias", "x: &a [1, 2]\nupstream: *a\n", []Setting{
			{Key: "x", Values: []string{"1", "2"}, List: true, Line: 1},
			{Key: "upstream", Values: []string{"1", "2"}, List: true, Line: 2},
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := Parse("f.yaml", []byte(c.in))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("got %+v\nwant %+v", got, c.want)
			}
		})
	}
}

func TestParseErrorsNameFileLineAndKey(t *testing.T) {
	for _, c := range []struct {
		name, in string
		want     []string // each in the message
	}{
		{"syntax", "upstream: [1\nmax-ttl: 3s\n", []string{"f.yaml: "}},
		{"not a mapping", "- a\n- b\n", []string{"f.yaml:1: want a mapping"}},
		{"scalar document", "hello\n", []string{"f.yaml:1: want a mapping"}},
		{"null value", "ttl:\n", []string{"f.yaml:1: ttl: no value"}},
		{"duplicate", "ttl: 1\nlog-level: info\nttl: 2\n", []string{"f.yaml:3: ttl: given twice (first on line 1)"}},
		{"nested list", "upstream:\n  - [a]\n", []string{"f.yaml:2: upstream: want a list of plain values"}},
		{"mapping of mappings", "stub-domain:\n  corp.example:\n    a: b\n", []string{"f.yaml:3: stub-domain: corp.example: want a value or a list"}},
		{"list in a mapping list", "stub-domain:\n  corp.example: [[a]]\n", []string{"f.yaml:2: stub-domain: corp.example: want a list of plain values"}},
		{"two documents", "ttl: 1\n---\nttl: 2\n", []string{"f.yaml:2: more than one YAML document"}},
		{"every bad key", "ttl:\nmax-ttl:\n", []string{"f.yaml:1: ttl:", "f.yaml:2: max-ttl:"}},
		{"complex key", "? [a]\n: b\n", []string{"f.yaml:1: a key must be a flag name"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("f.yaml", []byte(c.in))
			if err == nil {
				t.Fatal("no error")
			}
			var fe *Error
			if !errors.As(err, &fe) {
				t.Errorf("%v: not a *config.Error", err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestParseTooLarge(t *testing.T) {
	if _, err := Parse("f.yaml", make([]byte, MaxFileSize+1)); err == nil {
		t.Error("no error for a file over MaxFileSize")
	}
}

// FuzzParse: any input gives settings or an error naming the file, never
// a panic; every setting has a key, a line and values without a null.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"", "upstream: [192.0.2.1]\nmax-ttl: 30s\n", "stub-domain:\n  corp.example: [10.0.0.1]\n",
		"x: &a [1]\ny: *a\n", "- a\n", "a: {b: [c, d]}\n", "? [a]\n: b\n", "a: 1\n---\nb: 2\n",
		"a: !!binary aGVsbG8=\n", "<<: {a: 1}\n", "a: [*b]\n", "&a a: *a\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		settings, err := Parse("f.yaml", data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "f.yaml") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		for _, s := range settings {
			if s.Key == "" || s.Line < 1 || (!s.List && len(s.Values) != 1) {
				t.Fatalf("bad setting %+v", s)
			}
		}
	})
}
