package zonefile

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Error is a problem in a zone file. Error() reads "file:line: message",
// as compilers write it, so editors can jump to it.
type Error struct {
	File string
	// Line is 1-based: the line of the offending field when it could be
	// found, else the first line of the object or document.
	Line int
	Err  error
}

func (e *Error) Error() string { return fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err) }

func (e *Error) Unwrap() error { return e.Err }

// seg is one step of a path into a document: a mapping key, or a sequence
// index when index >= 0.
type seg struct {
	key   string
	index int
}

func key(k string) seg { return seg{key: k, index: -1} }
func index(i int) seg  { return seg{index: i} }
func keys(ks ...string) []seg {
	p := make([]seg, len(ks))
	for i, k := range ks {
		p[i] = key(k)
	}
	return p
}

// pathString writes a path as spec.ports[1].port.
func pathString(p []seg) string {
	var b strings.Builder
	for _, s := range p {
		if s.index >= 0 {
			fmt.Fprintf(&b, "[%d]", s.index)
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(s.key)
	}
	return b.String()
}

// join returns a new path: p followed by q.
func join(p []seg, q ...seg) []seg {
	out := make([]seg, 0, len(p)+len(q))
	return append(append(out, p...), q...)
}

// jsonPath returns the path of the value that ends at offset in data, as
// json.UnmarshalTypeError.Offset reports it: just past a scalar, or just
// past the opening delimiter of an object or array. ok is false if no value
// is found there.
func jsonPath(data []byte, offset int64) (path []seg, ok bool) {
	type frame struct {
		array  bool
		idx    int
		key    string
		hasKey bool
	}
	var stack []frame
	cur := func() []seg {
		p := make([]seg, 0, len(stack))
		for _, f := range stack {
			if f.array {
				p = append(p, index(f.idx))
			} else {
				p = append(p, key(f.key))
			}
		}
		return p
	}
	done := func() { // the current value is complete
		if n := len(stack); n > 0 {
			if stack[n-1].array {
				stack[n-1].idx++
			} else {
				stack[n-1].hasKey = false
			}
		}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	for {
		tok, err := dec.Token()
		if err != nil {
			return nil, false
		}
		if n := len(stack); n > 0 && !stack[n-1].array && !stack[n-1].hasKey {
			if k, isKey := tok.(string); isKey {
				stack[n-1].key, stack[n-1].hasKey = k, true
				continue
			}
		}
		switch tok {
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
			done()
			continue
		}
		if dec.InputOffset() >= offset {
			return cur(), true
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, frame{})
		case json.Delim('['):
			stack = append(stack, frame{array: true})
		default:
			done()
		}
	}
}

// yamlLine matches the line number in the YAML library's messages
// ("yaml: line 3: mapping values are not allowed in this context").
var yamlLine = regexp.MustCompile(`^yaml: line (\d+): `)

// yamlError turns an error from the YAML parser into an Error at the
// absolute line.
func (p *parser) yamlError(d *document, err error) error {
	msg := err.Error()
	line := d.start
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		if n, convErr := strconv.Atoi(m[1]); convErr == nil && n >= 1 {
			line = d.start + n - 1
			msg = "yaml: " + msg[len(m[0]):]
		}
	}
	return &Error{File: p.name, Line: line, Err: fmt.Errorf("%s", msg)}
}
