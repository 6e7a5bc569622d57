// Package config reads the configuration files of nodedns: the YAML file
// of --config, whose keys are flag names, and the directory of the
// kube-dns ConfigMap (stubDomains, upstreamNameservers). It parses and
// checks their syntax; what a key means is the flags' business
// (cmd/nodedns).
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Setting is one key of the config file with its value as flag values.
type Setting struct {
	Key string
	// Values are what the flag would be given on the command line: one
	// for a scalar, one per item of a list, and "KEY=V" or "KEY=V1,V2" per
	// entry of a mapping (for --stub-domain).
	Values []string
	// List: the value was a list or a mapping, which replaces the flag's
	// whole value (an empty list empties it).
	List bool
	Line int // of the key, 1-based
}

// Error is a problem in a file, at a line (0: unknown) and key ("" for
// the file as a whole). Its message reads "path:line: key: problem".
type Error struct {
	Path string
	Line int
	Key  string
	Err  error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Path)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Key != "" {
		b.WriteString(e.Key + ": ")
	}
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// MaxFileSize bounds a config file: it holds a few dozen keys.
const MaxFileSize = 1 << 20

// Parse reads a config file: one YAML mapping of keys (flag names, not
// checked here) to scalars, lists of scalars, or mappings of scalars to
// scalars or lists of scalars. An empty file (or one of only comments)
// has no settings. Errors are *Error, naming path and, where it is known,
// the line and key; every bad key is reported, not just the first.
func Parse(path string, data []byte) ([]Setting, error) {
	if len(data) > MaxFileSize {
		return nil, &Error{Path: path, Err: fmt.Errorf("%d bytes: larger than %d", len(data), MaxFileSize)}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, &Error{Path: path, Err: err}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, &Error{Path: path, Line: extra.Line, Err: errors.New("more than one YAML document")}
	}
	root := &doc
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			return nil, nil
		}
		root = root.Content[0]
	}
	if isNull(root) {
		return nil, nil
	}
	if root.Kind != yaml.MappingNode {
		return nil, &Error{Path: path, Line: root.Line, Err: errors.New("want a mapping of flag names to values")}
	}
	var (
		out  []Setting
		errs []error
		seen = map[string]int{}
	)
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], deref(root.Content[i+1])
		bad := func(line int, format string, args ...any) {
			errs = append(errs, &Error{Path: path, Line: line, Key: k.Value, Err: fmt.Errorf(format, args...)})
		}
		if k.Kind != yaml.ScalarNode || k.Value == "" {
			errs = append(errs, &Error{Path: path, Line: k.Line, Err: errors.New("a key must be a flag name")})
			continue
		}
		if first, dup := seen[k.Value]; dup {
			bad(k.Line, "given twice (first on line %d)", first)
			continue
		}
		seen[k.Value] = k.Line
		s := Setting{Key: k.Value, Line: k.Line}
		switch v.Kind {
		case yaml.ScalarNode:
			if isNull(v) {
				bad(k.Line, `no value (write "" for an empty one)`)
				continue
			}
			s.Values = []string{v.Value}
		case yaml.SequenceNode:
			s.List = true
			vals, err := scalars(v)
			if err != nil {
				bad(err.line, "%s", err.msg)
				continue
			}
			s.Values = vals
		case yaml.MappingNode:
			s.List = true
			ok := true
			for j := 0; j+1 < len(v.Content); j += 2 {
				mk, mv := deref(v.Content[j]), deref(v.Content[j+1])
				if mk.Kind != yaml.ScalarNode || isNull(mk) {
					bad(mk.Line, "a key of the mapping must be a plain value")
					ok = false
					break
				}
				var vals []string
				switch {
				case mv.Kind == yaml.ScalarNode && !isNull(mv):
					vals = []string{mv.Value}
				case mv.Kind == yaml.SequenceNode:
					var err *nodeError
					if vals, err = scalars(mv); err != nil {
						bad(err.line, "%s: %s", mk.Value, err.msg)
						ok = false
					}
				default:
					bad(mv.Line, "%s: want a value or a list of values", mk.Value)
					ok = false
				}
				if !ok {
					break
				}
				s.Values = append(s.Values, mk.Value+"="+strings.Join(vals, ","))
			}
			if !ok {
				continue
			}
		default:
			bad(k.Line, "want a value, a list or a mapping")
			continue
		}
		out = append(out, s)
	}
	return out, errors.Join(errs...)
}

type nodeError struct {
	line int
	msg  string
}

// scalars returns the values of a list of scalars.
func scalars(seq *yaml.Node) ([]string, *nodeError) {
	out := make([]string, 0, len(seq.Content))
	for _, item := range seq.Content {
		item = deref(item)
		if item.Kind != yaml.ScalarNode || isNull(item) {
			return nil, &nodeError{item.Line, "want a list of plain values"}
		}
		out = append(out, item.Value)
	}
	return out, nil
}

// deref follows an alias (*name) to the node it names.
func deref(n *yaml.Node) *yaml.Node {
	for range 8 { // an alias of an alias is not valid YAML; bound it anyway
		if n.Kind != yaml.AliasNode || n.Alias == nil {
			break
		}
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}
