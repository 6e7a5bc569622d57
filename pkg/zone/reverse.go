package zone

import (
	"bytes"
	"encoding/binary"
	"maps"
	"net/netip"
	"slices"
)

// The IP index maps addresses to what the zone knows about them: the PTR
// answer (SPEC R8) and the namespaces of Pods that have them (SPEC R10
// verified mode, autopath). It is sharded by address so that a rebuild of
// one namespace copies only the shards its addresses fall into; untouched
// shards are shared with the previous snapshot.

const (
	ipShardBits = 8
	ipShards    = 1 << ipShardBits
)

type ipIndex struct {
	shards [ipShards]*ipShard
}

type ipShard struct {
	m map[netip.Addr]*ipCell
}

// ipCell is immutable once published.
type ipCell struct {
	ptrs []ptrEntry
	pods []podEntry
	// rec is the packed PTR answer (owner: the query name), an its count.
	rec []byte
	an  uint16
}

type ptrEntry struct {
	ns      string
	target  string
	cluster bool
}

type podEntry struct {
	ns string
}

// shardOf spreads addresses over the shards: a multiplicative hash of both
// halves, whose top byte depends on every input bit.
func shardOf(a netip.Addr) int {
	b := a.As16()
	h := (binary.LittleEndian.Uint64(b[:8]) ^ binary.LittleEndian.Uint64(b[8:])) * 0x9E3779B97F4A7C15
	return int(h >> (64 - ipShardBits))
}

func (x *ipIndex) get(a netip.Addr) *ipCell {
	if x == nil {
		return nil
	}
	sh := x.shards[shardOf(a)]
	if sh == nil {
		return nil
	}
	return sh.m[a]
}

// hasPod reports whether a Pod of namespace ns (a label, as in the query)
// has address a.
func (x *ipIndex) hasPod(a netip.Addr, ns []byte) bool {
	c := x.get(a)
	if c == nil {
		return false
	}
	for _, p := range c.pods {
		if p.ns == string(ns) {
			return true
		}
	}
	return false
}

// ipIndexWriter derives a new index from an old one, copying a shard on its
// first write.
type ipIndexWriter struct {
	old    *ipIndex
	idx    *ipIndex
	copied [ipShards]bool
	ttl    uint32
}

func newIPIndexWriter(old *ipIndex, ttl uint32) *ipIndexWriter {
	return &ipIndexWriter{old: old, ttl: ttl}
}

func (w *ipIndexWriter) shard(a netip.Addr) *ipShard {
	if w.idx == nil {
		w.idx = &ipIndex{}
		if w.old != nil {
			w.idx.shards = w.old.shards
		}
	}
	i := shardOf(a)
	if !w.copied[i] {
		n := &ipShard{}
		if old := w.idx.shards[i]; old != nil {
			n.m = maps.Clone(old.m)
		}
		if n.m == nil {
			n.m = make(map[netip.Addr]*ipCell)
		}
		w.idx.shards[i] = n
		w.copied[i] = true
	}
	return w.idx.shards[i]
}

// result returns the new index (the old one when nothing changed).
func (w *ipIndexWriter) result() *ipIndex {
	if w.idx == nil {
		if w.old == nil {
			return &ipIndex{}
		}
		return w.old
	}
	return w.idx
}

type ipPending struct {
	oldPtrs, newPtrs []ptrEntry
	oldPods, newPods int
}

// replace swaps the contributions of namespace ns: PTR targets when
// ptrsChanged, Pod addresses when podsChanged. Addresses whose
// contributions are the same before and after are left alone, so a rebuilt
// namespace copies only the shards of addresses that really changed.
func (w *ipIndexWriter) replace(ns string, oldPtrs, newPtrs []ptrContrib, oldPods, newPods []netip.Addr, ptrsChanged, podsChanged bool) {
	if !ptrsChanged && !podsChanged {
		return
	}
	touched := make(map[netip.Addr]*ipPending)
	get := func(a netip.Addr) *ipPending {
		p := touched[a]
		if p == nil {
			p = &ipPending{}
			touched[a] = p
		}
		return p
	}
	if ptrsChanged {
		for _, c := range oldPtrs {
			p := get(c.addr)
			p.oldPtrs = append(p.oldPtrs, ptrEntry{ns: ns, target: c.target, cluster: c.cluster})
		}
		for _, c := range newPtrs {
			p := get(c.addr)
			p.newPtrs = append(p.newPtrs, ptrEntry{ns: ns, target: c.target, cluster: c.cluster})
		}
	}
	if podsChanged {
		for _, a := range oldPods {
			get(a).oldPods++
		}
		for _, a := range newPods {
			get(a).newPods++
		}
	}
	for a, p := range touched {
		samePtrs := !ptrsChanged || slices.EqualFunc(p.oldPtrs, p.newPtrs, func(x, y ptrEntry) bool {
			return x.cluster == y.cluster && x.target == y.target
		})
		samePods := !podsChanged || (p.oldPods > 0) == (p.newPods > 0)
		if samePtrs && samePods {
			continue
		}
		w.update(a, ns, p, !samePtrs, !samePods)
	}
}

// update rebuilds the cell of address a with namespace ns's new entries.
func (w *ipIndexWriter) update(a netip.Addr, ns string, p *ipPending, ptrsChanged, podsChanged bool) {
	sh := w.shard(a)
	old := sh.m[a]
	c := &ipCell{}
	if old != nil {
		if ptrsChanged {
			for _, e := range old.ptrs {
				if e.ns != ns {
					c.ptrs = append(c.ptrs, e)
				}
			}
		} else {
			c.ptrs, c.rec, c.an = old.ptrs, old.rec, old.an
		}
		if podsChanged {
			for _, e := range old.pods {
				if e.ns != ns {
					c.pods = append(c.pods, e)
				}
			}
		} else {
			c.pods = old.pods
		}
	}
	if ptrsChanged {
		c.ptrs = append(c.ptrs, p.newPtrs...)
		c.rec, c.an = packPTR(c.ptrs, w.ttl)
	}
	if podsChanged && p.newPods > 0 {
		c.pods = append(c.pods, podEntry{ns: ns})
	}
	if len(c.ptrs) == 0 && len(c.pods) == 0 {
		delete(sh.m, a)
		return
	}
	sh.m[a] = c
}

// packPTR packs the PTR answer of one address. A ClusterIP answers with its
// service name(s) only; otherwise every endpoint name that has the address
// is listed (a Pod behind several services), as CoreDNS does.
func packPTR(entries []ptrEntry, ttl uint32) ([]byte, uint16) {
	var targets []string
	cluster := slices.ContainsFunc(entries, func(e ptrEntry) bool { return e.cluster })
	for _, e := range entries {
		if e.cluster == cluster {
			targets = append(targets, e.target)
		}
	}
	if len(targets) == 0 {
		return nil, 0
	}
	slices.Sort(targets)
	targets = slices.Compact(targets)
	var b []byte
	var an uint16
	for _, t := range targets {
		if len(b)+12+len(t) > maxRecordsLen {
			break
		}
		var rd int
		b, rd = rrStart(b, nil, typePTR, ttl)
		b = append(b, t...)
		b = rrEnd(b, rd)
		an++
	}
	return b, an
}

var (
	inAddrArpa = []byte("\x07in-addr\x04arpa\x00")
	ip6Arpa    = []byte("\x03ip6\x04arpa\x00")
)

// parseReverse parses a complete reverse name: four decimal labels under
// in-addr.arpa or 32 nibble labels under ip6.arpa. Shorter (delegation)
// names and non-canonical spellings ("01") do not parse.
func parseReverse(name []byte, offs *labelOffsets, n int) (netip.Addr, bool) {
	switch {
	case n == 6 && bytes.Equal(name[offs[4]:], inAddrArpa):
		var ip [4]byte
		for i := 0; i < 4; i++ {
			l := name[int(offs[i])+1 : offs[i+1]]
			v := 0
			if len(l) > 3 || (len(l) > 1 && l[0] == '0') {
				return netip.Addr{}, false
			}
			for _, c := range l {
				if c < '0' || c > '9' {
					return netip.Addr{}, false
				}
				v = v*10 + int(c-'0')
			}
			if v > 255 {
				return netip.Addr{}, false
			}
			ip[3-i] = byte(v)
		}
		return netip.AddrFrom4(ip), true
	case n == 34 && bytes.Equal(name[offs[32]:], ip6Arpa):
		var ip [16]byte
		for i := 0; i < 32; i++ {
			o := offs[i]
			if name[o] != 1 {
				return netip.Addr{}, false
			}
			h := hexVal(name[o+1])
			if h < 0 {
				return netip.Addr{}, false
			}
			if i%2 == 0 {
				ip[15-i/2] |= byte(h)
			} else {
				ip[15-i/2] |= byte(h) << 4
			}
		}
		a := netip.AddrFrom16(ip)
		if a.Is4In6() {
			// Never indexed: IPv4 addresses are kept unmapped.
			return netip.Addr{}, false
		}
		return a, true
	}
	return netip.Addr{}, false
}
