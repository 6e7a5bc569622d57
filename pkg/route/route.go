// Package route sends each forwarded query to the upstream of its domain:
// the longest configured stub domain the question name is under (kube-dns
// stubDomains, --stub-domain), else the default upstream.
//
// The table is immutable and swapped with one atomic store, so a query
// reads it with one atomic load and no lock (DESIGN: examples 1), and a
// query that started on an upstream finishes there whatever the swap.
package route

import (
	"context"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
)

// Upstream forwards a query; *upstream.Forwarder implements it. An
// Upstream that also implements io.Closer is closed by the Router once it
// is no longer in the table and no exchange is using it.
type Upstream interface {
	Exchange(ctx context.Context, query []byte) ([]byte, error)
}

const headerLen = 12

// Router is a resolver.Upstream that routes by question name. Exchange is
// safe for concurrent use with itself and with Update.
type Router struct {
	mu  sync.Mutex // serialises Update
	cur atomic.Pointer[table]
}

// table is one immutable routing state.
type table struct {
	def       *entry
	stubs     map[string]*entry // key: lowercase wire-format domain, without the root label
	maxLabels int               // most labels of any stub domain: longer suffixes need no lookup
}

// entry is one upstream in the table. Entries are reused by the next table
// when it names the same Upstream, so an upstream's in-flight count spans
// swaps.
type entry struct {
	up     Upstream
	closer io.Closer // up, when it holds resources; nil: nothing to track
	// users counts exchanges in flight (only when closer is set), plus
	// retired once the entry left the table: the last user of a retired
	// entry closes it.
	users atomic.Int64
	once  sync.Once
}

const retired = 1 << 62

// New returns a Router sending names under a key of stubs to its
// Upstream, and everything else to def; see Update.
func New(def Upstream, stubs map[string]Upstream) (*Router, error) {
	r := &Router{}
	if err := r.Update(def, stubs); err != nil {
		return nil, err
	}
	return r, nil
}

// Update replaces the routes. def must not be nil. Keys of stubs are
// domain names ("corp.example", a trailing dot and any letter case
// allowed; not the root). Queries that already picked an upstream finish
// on it. An Upstream that was in the table and is not any more is closed,
// if it is an io.Closer, when its last exchange ends; it must not be given
// to Update again after that. Upstreams are matched by ==, so pass
// pointers to keep an upstream (and its state) across updates.
func (r *Router) Update(def Upstream, stubs map[string]Upstream) error {
	if def == nil {
		return errors.New("route: no default upstream")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.cur.Load()
	// Candidates for reuse: the old table's entries, then the ones made
	// here, so one Upstream always has one entry (one count, one Close).
	var known []*entry
	if old != nil {
		old.forEach(func(e *entry) { known = append(known, e) })
	}
	reuse := func(up Upstream) *entry {
		if canCompare(up) {
			for _, e := range known {
				if canCompare(e.up) && e.up == up {
					return e
				}
			}
		}
		e := &entry{up: up}
		e.closer, _ = up.(io.Closer)
		known = append(known, e)
		return e
	}
	t := &table{def: reuse(def), stubs: make(map[string]*entry, len(stubs))}
	for d, up := range stubs {
		if up == nil {
			return fmt.Errorf("route: stub domain %q: no upstream", d)
		}
		key, labels, err := wireName(d)
		if err != nil {
			return fmt.Errorf("route: stub domain %q: %w", d, err)
		}
		if _, dup := t.stubs[key]; dup {
			return fmt.Errorf("route: stub domain %q given twice", d)
		}
		t.stubs[key] = reuse(up)
		t.maxLabels = max(t.maxLabels, labels)
	}
	r.cur.Store(t)
	if old != nil {
		kept := map[*entry]bool{t.def: true}
		for _, e := range t.stubs {
			kept[e] = true
		}
		old.forEach(func(e *entry) {
			if !kept[e] {
				e.retire()
			}
		})
	}
	return nil
}

// canCompare reports whether == on up cannot panic.
func canCompare(up Upstream) bool { return reflect.TypeOf(up).Comparable() }

func (t *table) forEach(fn func(*entry)) {
	seen := map[*entry]bool{}
	for _, e := range append([]*entry{t.def}, mapValues(t.stubs)...) {
		if !seen[e] {
			seen[e] = true
			fn(e)
		}
	}
}

func mapValues(m map[string]*entry) []*entry {
	out := make([]*entry, 0, len(m))
	for _, e := range m {
		out = append(out, e)
	}
	return out
}

// retire marks e as out of the table and closes it if nobody uses it.
func (e *entry) retire() {
	if e.closer != nil && e.users.Add(retired) == retired {
		e.close()
	}
}

func (e *entry) release() {
	if e.users.Add(-1) == retired {
		e.close()
	}
}

func (e *entry) close() {
	// A close error has nobody to go to: the upstream left the table.
	e.once.Do(func() { _ = e.closer.Close() })
}

// Exchange implements resolver.Upstream: it forwards query to the upstream
// of its question name. It allocates nothing itself.
func (r *Router) Exchange(ctx context.Context, query []byte) ([]byte, error) {
	for {
		e := r.cur.Load().pick(query)
		if e.closer == nil {
			return e.up.Exchange(ctx, query)
		}
		if e.users.Add(1)&retired == 0 {
			reply, err := e.up.Exchange(ctx, query)
			e.release()
			return reply, err
		}
		// Retired between the load and the count: the table stored
		// before the retirement has its successor.
		e.release()
	}
}

// Upstream returns the upstream a query for name (presentation format)
// would go to now.
func (r *Router) Upstream(name string) Upstream {
	wire, _, err := wireName(name)
	if err != nil {
		return r.cur.Load().def.up
	}
	q := make([]byte, headerLen, headerLen+len(wire)+1)
	q = append(append(q, wire...), 0)
	return r.cur.Load().pick(q).up
}

// pick returns the entry of the longest stub domain that the question name
// of query is under, else the default. It does not allocate. A query
// whose name cannot be read goes to the default upstream, which rejects
// it.
func (t *table) pick(query []byte) *entry {
	if t.maxLabels == 0 {
		return t.def
	}
	var (
		name   [255]byte
		starts [128]uint8
		n      int
		labels int
	)
	for off := headerLen; ; {
		if off >= len(query) {
			return t.def
		}
		l := int(query[off])
		if l == 0 {
			break
		}
		// l > 63: a compression pointer or extended label, never in the
		// question of a query we build; 254: RFC 1035 3.1 with the root.
		if l > 63 || n+1+l > 254 || off+1+l > len(query) {
			return t.def
		}
		starts[labels] = uint8(n)
		labels++
		name[n] = byte(l)
		for i := 1; i <= l; i++ {
			c := query[off+i]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			name[n+i] = c
		}
		n += 1 + l
		off += 1 + l
	}
	// Longest suffix first; suffixes with more labels than any stub
	// domain cannot match.
	for i := max(0, labels-t.maxLabels); i < labels; i++ {
		if e, ok := t.stubs[string(name[starts[i]:n])]; ok {
			return e
		}
	}
	return t.def
}

// wireName converts a domain name to lowercase wire format without the
// root label, and counts its labels.
func wireName(domain string) (string, int, error) {
	d := strings.ToLower(strings.TrimSuffix(domain, "."))
	if d == "" {
		return "", 0, errors.New("the root is the default upstream, not a stub domain")
	}
	if len(d) > 253 {
		return "", 0, errors.New("longer than 253 characters")
	}
	var b strings.Builder
	labels := 0
	for l := range strings.SplitSeq(d, ".") {
		if l == "" || len(l) > 63 {
			return "", 0, fmt.Errorf("label %q: want 1 to 63 characters", l)
		}
		b.WriteByte(byte(len(l)))
		b.WriteString(l)
		labels++
	}
	return b.String(), labels, nil
}

// Under returns a function reporting whether a lowercase wire-format name
// (root label included, as pkg/cache stores it) is at or under one of
// domains. Invalid domains are skipped. For purging cache entries whose
// route changed.
func Under(domains []string) func(name []byte) bool {
	set := map[string]bool{}
	for _, d := range domains {
		if w, _, err := wireName(d); err == nil {
			set[w+"\x00"] = true
		}
	}
	return func(name []byte) bool {
		for off := 0; off < len(name) && name[off] != 0; off += 1 + int(name[off]) {
			if set[string(name[off:])] {
				return true
			}
		}
		return false
	}
}
