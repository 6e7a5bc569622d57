package main

import (
	"errors"
	"flag"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"github.com/nodedns/nodedns/pkg/config"
)

// The config file (--config) holds flags by name: every flag not given on
// the command line or in the environment (NODEDNS_<FLAG>) is taken from it,
// else it keeps its default. Values are the flags' own syntax; a list or a
// mapping replaces a repeatable flag's whole value.

// sources says where the flags not left at their default got their
// values, so that a bad value is reported where it was written.
type sources struct {
	env  map[string]string         // flag -> NODEDNS_<FLAG>
	file map[string]config.Setting // flag -> its key in the config file
	path string                    // of the config file
}

// listValue is a flag that a list in the config file replaces as a whole.
type listValue interface {
	flag.Value
	reset()
}

func (l *listFlag) reset() { l.values, l.set = nil, true }

// stubFlag is --stub-domain: DOMAIN=SERVER[,SERVER...], repeatable; one
// value may hold several, separated by spaces (one environment variable).
type stubFlag struct {
	values []string
}

func (s *stubFlag) String() string { return strings.Join(s.values, " ") }

func (s *stubFlag) Set(v string) error {
	s.values = append(s.values, strings.Fields(v)...)
	return nil
}

func (s *stubFlag) reset() { s.values = nil }

// applyConfigFile sets, from the config file at path, each flag that the
// command line and the environment left alone (given), and returns the
// settings it applied and the file's content. Every bad key is reported, as *config.Error with
// file, line and key; the map is nil only when the file could not be read
// or parsed at all.
func applyConfigFile(fs *flag.FlagSet, path string, given map[string]bool, readFile func(string) ([]byte, error)) (map[string]config.Setting, []byte, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, nil, &config.Error{Path: path, Err: err}
	}
	settings, err := config.Parse(path, data)
	if err != nil {
		return nil, data, err
	}
	var errs []error
	applied := map[string]config.Setting{}
	for _, s := range settings {
		bad := func(err error) { errs = append(errs, &config.Error{Path: path, Line: s.Line, Key: s.Key, Err: err}) }
		f := fs.Lookup(s.Key)
		switch {
		case s.Key == "config":
			bad(errors.New("the config file cannot name another; give --config on the command line or as NODEDNS_CONFIG"))
			continue
		case f == nil:
			bad(errors.New("unknown key: not a flag of nodedns (nodedns --help lists them)"))
			continue
		case given[s.Key]:
			continue // the command line or the environment wins
		}
		if s.List {
			lv, ok := f.Value.(listValue)
			if !ok {
				bad(fmt.Errorf("takes one value, not a list"))
				continue
			}
			lv.reset()
		}
		for _, v := range s.Values {
			if err := fs.Set(s.Key, v); err != nil {
				bad(fmt.Errorf("%q: %w", v, err))
				break
			}
		}
		applied[s.Key] = s
	}
	return applied, data, errors.Join(errs...)
}

// annotate joins errs, each one about a flag ("--NAME ..." or
// "--NAME: ...") rewritten to name where the flag's value came from: the
// config file (as a *config.Error with its line) or the environment.
func (src *sources) annotate(errs []error) error {
	out := make([]error, 0, len(errs))
	for _, err := range errs {
		out = append(out, src.where(err))
	}
	return errors.Join(out...)
}

func (src *sources) where(err error) error {
	msg := err.Error()
	name, rest, ok := strings.Cut(strings.TrimPrefix(msg, "--"), " ")
	if !strings.HasPrefix(msg, "--") || !ok {
		return err
	}
	name = strings.TrimSuffix(name, ":")
	if s, ok := src.file[name]; ok {
		return &config.Error{Path: src.path, Line: s.Line, Key: name, Err: errors.New(rest)}
	}
	if env, ok := src.env[name]; ok {
		return fmt.Errorf("%s: %w", env, err)
	}
	return err
}

// parseStubDomains reads --stub-domain values: DOMAIN=SERVER[,SERVER...].
// A domain at or under a cluster domain is refused (SPEC R12: never
// forwarded).
func parseStubDomains(values []string, clusterDomains []string) (map[string][]netip.AddrPort, []error) {
	var errs []error
	out := map[string][]netip.AddrPort{}
	for _, v := range values {
		domain, list, ok := strings.Cut(v, "=")
		if !ok || list == "" {
			errs = append(errs, fmt.Errorf("--stub-domain %q: want DOMAIN=SERVER[,SERVER...]", v))
			continue
		}
		d, err := config.StubDomain(domain, clusterDomains)
		if err != nil {
			errs = append(errs, fmt.Errorf("--stub-domain %q: %w", v, err))
			continue
		}
		if _, dup := out[d]; dup {
			errs = append(errs, fmt.Errorf("--stub-domain %q: %s given twice", v, d))
			continue
		}
		var servers []netip.AddrPort
		for s := range strings.SplitSeq(list, ",") {
			ap, err := config.ParseServer(strings.TrimSpace(s))
			if err != nil {
				errs = append(errs, fmt.Errorf("--stub-domain %q: server %q: %w", v, s, err))
				servers = nil
				break
			}
			servers = append(servers, ap)
		}
		if servers != nil {
			out[d] = servers
		}
	}
	if len(out) == 0 {
		return nil, errs
	}
	return out, errs
}

// flagValues returns every flag's value as text, to tell which keys a
// reload changes.
func flagValues(fs *flag.FlagSet) map[string]string {
	out := map[string]string{}
	fs.VisitAll(func(f *flag.Flag) { out[f.Name] = f.Value.String() })
	return out
}

// changedKeys lists, sorted, the flags whose values differ.
func changedKeys(a, b map[string]string) []string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(b)) {
		if a[k] != b[k] {
			out = append(out, k)
		}
	}
	return out
}
