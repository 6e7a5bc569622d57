package zone

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"maps"
	"net/netip"
	"slices"
	"strings"
)

// The IP index maps addresses to what the zone knows about them: the
// services and endpoint names whose PTR answer (SPEC R8) they give, and the
// namespaces of Pods that have them (SPEC R10 verified mode, autopath). It
// is sharded by address so that a rebuild copies only the shards its
// addresses fall into; untouched shards are shared with the previous
// snapshot.
//
// An address holds references, not names: the PTR answer is written at
// lookup from the service's svcIdent and the endpoint's label (a hostname
// label the service keeps anyway, or nothing for the dashed name of the
// address itself), so an address costs one 40-octet entry of a sorted
// array rather than a copy of its target name, its packed answer and the
// list that rebuilds them (which together were most of a large zone's
// memory). Keys are the 16-octet form of the address: netip.Addr would add
// 8 octets (its zone pointer) to every entry. A build collects the changes
// of each shard and merges them into a new array once.

const (
	ipShardBits = 8
	ipShards    = 1 << ipShardBits
)

type ipIndex struct {
	shards [ipShards]*ipShard
}

// ipShard is immutable once published.
type ipShard struct {
	ptrs []ptrEntry // sorted by key
	// multi holds the targets, sorted by name, of the addresses with more
	// than one (their ptrEntry has a nil id): a Pod behind two services.
	multi map[ipKey][]ptrOwner
	pods  map[ipKey][]podEntry // nil unless Pods are watched
}

type ipKey [16]byte

type ptrEntry struct {
	key ipKey
	ptrOwner
}

func (e *ptrEntry) cmp(k ipKey) int { return cmpKey(e.key, k) }

// ptrOwner is one PTR target: label+id.wire, where label is "" for a
// ClusterIP (the service's own name) and dashedMark for the dashed name of
// the address itself (written at lookup, so the common endpoint costs no
// label).
type ptrOwner struct {
	id    *svcIdent
	label string // wire label of the endpoint name ("\x05web-0")
}

// dashedMark is no wire label (length 0 is the root).
const dashedMark = "\x00"

func (o ptrOwner) cluster() bool { return o.label == "" }

// appendLabel appends the owner's label for address a.
func (o ptrOwner) appendLabel(dst []byte, a netip.Addr) []byte {
	if o.label == dashedMark {
		return appendDashedLabel(dst, a)
	}
	return append(dst, o.label...)
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

func (x *ipIndex) shard(a netip.Addr) *ipShard {
	if x == nil {
		return nil
	}
	return x.shards[shardOf(a)]
}

// ptrs returns the PTR targets of a (nil: none); one is scratch space for
// the common single target.
func (x *ipIndex) ptrs(a netip.Addr, one *[1]ptrOwner) []ptrOwner {
	if sh := x.shard(a); sh != nil {
		return sh.get(a.As16(), one)
	}
	return nil
}

func (sh *ipShard) get(k ipKey, one *[1]ptrOwner) []ptrOwner {
	i, ok := slices.BinarySearchFunc(sh.ptrs, k, func(e ptrEntry, k ipKey) int { return e.cmp(k) })
	if !ok {
		return nil
	}
	if e := &sh.ptrs[i]; e.id != nil {
		one[0] = e.ptrOwner
		return one[:]
	}
	return sh.multi[k]
}

// pods returns the namespaces of the Pods that have a.
func (x *ipIndex) pods(a netip.Addr) []podEntry {
	if sh := x.shard(a); sh != nil {
		return sh.pods[a.As16()]
	}
	return nil
}

// hasPod reports whether a Pod of namespace ns (a label, as in the query)
// has address a.
func (x *ipIndex) hasPod(a netip.Addr, ns []byte) bool {
	for _, p := range x.pods(a) {
		if p.ns == string(ns) {
			return true
		}
	}
	return false
}

// appendPTR appends the PTR answer of address a with targets to dst: a
// ClusterIP answers with its service name(s) only; otherwise every endpoint
// name that has the address is listed (a Pod behind several services), as
// CoreDNS does.
func appendPTR(dst []byte, a netip.Addr, targets []ptrOwner, ttl uint32) ([]byte, uint16) {
	cluster := slices.ContainsFunc(targets, ptrOwner.cluster)
	start := len(dst)
	var an uint16
	for _, o := range targets {
		if o.cluster() != cluster {
			continue
		}
		mark := len(dst)
		var rd int
		dst, rd = rrStart(dst, nil, typePTR, ttl)
		dst = o.appendLabel(dst, a)
		dst = append(dst, o.id.wire...)
		if len(dst)-start > maxRecordsLen {
			dst = dst[:mark]
			break
		}
		dst = rrEnd(dst, rd)
		an++
	}
	return dst, an
}

// ipIndexWriter derives a new index from an old one, copying a shard on its
// first write.
type ipIndexWriter struct {
	old    *ipIndex
	idx    *ipIndex
	copied [ipShards]bool
	// pend holds the PTR targets each shard's addresses get in this build
	// (nil: none), merged into a new array by result.
	pend [ipShards]map[ipKey][]ptrOwner
	// podsCopied: the shard's pods map is this writer's copy.
	podsCopied [ipShards]bool
	// scratch for replacePtrs and setPtrs
	oldC, newC   []ptrContrib
	labels       []string
	nameA, nameB []byte
}

func newIPIndexWriter(old *ipIndex) *ipIndexWriter {
	return &ipIndexWriter{old: old}
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
			*n = *old
		}
		w.idx.shards[i] = n
		w.copied[i] = true
	}
	return w.idx.shards[i]
}

// podShard returns a's shard with its pods map copied for writing.
func (w *ipIndexWriter) podShard(a netip.Addr) *ipShard {
	i := shardOf(a)
	sh := w.shard(a)
	if !w.podsCopied[i] {
		sh.pods = maps.Clone(sh.pods)
		if sh.pods == nil {
			sh.pods = make(map[ipKey][]podEntry)
		}
		w.podsCopied[i] = true
	}
	return sh
}

// result returns the new index (the old one when nothing changed).
func (w *ipIndexWriter) result() *ipIndex {
	for i, pend := range w.pend {
		if len(pend) > 0 {
			w.merge(w.idx.shards[i], pend)
		}
	}
	if w.idx == nil {
		if w.old == nil {
			return &ipIndex{}
		}
		return w.old
	}
	return w.idx
}

// ptrContrib is one PTR record a service gives: address a names label
// under the service ("" for its ClusterIP, dashedMark for its dashed name).
type ptrContrib struct {
	addr  netip.Addr
	label string
}

// ptrContribs appends the PTR records of service node n (nil: none): its
// ClusterIPs name the service, endpoint addresses their endpoint names.
// They are read back from the node, so the index holds exactly what the
// node answers, and nothing else has to be kept to undo them.
func ptrContribs(dst []ptrContrib, n *svcNode) []ptrContrib {
	if n == nil || n.kind == kindExternal {
		return dst
	}
	if n.kind == kindClusterIP {
		for _, set := range n.self.sets {
			rec := set.rec
			for range set.an {
				rdlen := int(binary.BigEndian.Uint16(rec[10:]))
				if a, ok := netip.AddrFromSlice(rec[12 : 12+rdlen]); ok {
					dst = append(dst, ptrContrib{addr: a})
				}
				rec = rec[12+rdlen:]
			}
		}
	}
	for _, h := range n.hosts {
		for _, a := range n.hostAddrs[h.first : h.first+h.n] {
			dst = append(dst, ptrContrib{addr: a, label: h.label})
		}
	}
	for _, k := range n.dashed {
		dst = append(dst, ptrContrib{addr: netip.AddrFrom16(k).Unmap(), label: dashedMark})
	}
	return dst
}

func cmpContrib(x, y ptrContrib) int {
	return cmp.Or(x.addr.Compare(y.addr), strings.Compare(x.label, y.label))
}

// replacePtrs swaps the PTR records of one service from those of node old
// to those of node new (either may be nil; both share one svcIdent).
// Addresses whose records are the same before and after are left alone, so
// a rebuilt service copies only the shards of addresses that changed.
func (w *ipIndexWriter) replacePtrs(old, new *svcNode) {
	w.oldC, w.newC = ptrContribs(w.oldC[:0], old), ptrContribs(w.newC[:0], new)
	if len(w.oldC) == 0 && len(w.newC) == 0 {
		return
	}
	id := new.idOr(old)
	slices.SortFunc(w.oldC, cmpContrib)
	slices.SortFunc(w.newC, cmpContrib)
	oc, nc := w.oldC, w.newC
	for len(oc) > 0 || len(nc) > 0 {
		var a netip.Addr
		switch {
		case len(oc) == 0:
			a = nc[0].addr
		case len(nc) == 0:
			a = oc[0].addr
		default:
			a = oc[0].addr
			if nc[0].addr.Less(a) {
				a = nc[0].addr
			}
		}
		i, j := 0, 0
		for i < len(oc) && oc[i].addr == a {
			i++
		}
		for j < len(nc) && nc[j].addr == a {
			j++
		}
		if !slices.Equal(oc[:i], nc[:j]) {
			w.labels = w.labels[:0]
			for _, c := range nc[:j] {
				w.labels = append(w.labels, c.label)
			}
			w.setPtrs(a, id, w.labels)
		}
		oc, nc = oc[i:], nc[j:]
	}
	clear(w.oldC) // drop the label strings
	clear(w.newC)
}

func (n *svcNode) idOr(other *svcNode) *svcIdent {
	if n != nil {
		return n.id
	}
	return other.id
}

// setPtrs makes labels (possibly none) service id's PTR records of a.
func (w *ipIndexWriter) setPtrs(a netip.Addr, id *svcIdent, labels []string) {
	sh := w.shard(a)
	i := shardOf(a)
	k := ipKey(a.As16())
	if w.pend[i] == nil {
		w.pend[i] = make(map[ipKey][]ptrOwner)
	}
	cur, pending := w.pend[i][k]
	if !pending {
		var one [1]ptrOwner
		cur = sh.get(k, &one)
	}
	var ptrs []ptrOwner
	for _, o := range cur {
		if o.id != id {
			ptrs = append(ptrs, o)
		}
	}
	for _, l := range labels {
		ptrs = append(ptrs, ptrOwner{id: id, label: l})
	}
	if len(ptrs) > 1 {
		// Sorted by target name, so answers do not depend on build order.
		slices.SortFunc(ptrs, func(x, y ptrOwner) int {
			w.nameA = append(x.appendLabel(w.nameA[:0], a), x.id.wire...)
			w.nameB = append(y.appendLabel(w.nameB[:0], a), y.id.wire...)
			return bytes.Compare(w.nameA, w.nameB)
		})
	}
	w.pend[i][k] = slices.Clip(ptrs)
}

// merge makes sh's PTR array (and multi map) the old one with pend
// applied, in one pass.
func (w *ipIndexWriter) merge(sh *ipShard, pend map[ipKey][]ptrOwner) {
	keys := slices.SortedFunc(maps.Keys(pend), cmpKey)
	old := sh.ptrs
	next := make([]ptrEntry, 0, len(old)+len(keys))
	var multi map[ipKey][]ptrOwner
	keep := func(e ptrEntry) {
		if e.id == nil {
			if multi == nil {
				multi = make(map[ipKey][]ptrOwner)
			}
			multi[e.key] = sh.multi[e.key]
		}
		next = append(next, e)
	}
	for _, k := range keys {
		j, _ := slices.BinarySearchFunc(old, k, func(e ptrEntry, k ipKey) int { return e.cmp(k) })
		for _, e := range old[:j] {
			keep(e)
		}
		if j < len(old) && old[j].key == k {
			j++ // replaced by pend
		}
		old = old[j:]
		switch owners := pend[k]; len(owners) {
		case 0:
		case 1:
			next = append(next, ptrEntry{key: k, ptrOwner: owners[0]})
		default:
			if multi == nil {
				multi = make(map[ipKey][]ptrOwner)
			}
			multi[k] = owners
			next = append(next, ptrEntry{key: k})
		}
	}
	for _, e := range old {
		keep(e)
	}
	sh.ptrs, sh.multi = slices.Clip(next), multi
}

// replacePods swaps the Pod addresses of namespace ns. Addresses that
// belong to the namespace before and after are left alone.
func (w *ipIndexWriter) replacePods(ns string, oldPods, newPods []netip.Addr) {
	// Both are sorted and deduplicated (podAddrs).
	for len(oldPods) > 0 || len(newPods) > 0 {
		switch {
		case len(newPods) == 0 || (len(oldPods) > 0 && oldPods[0].Less(newPods[0])):
			w.setPod(oldPods[0], ns, false)
			oldPods = oldPods[1:]
		case len(oldPods) == 0 || newPods[0].Less(oldPods[0]):
			w.setPod(newPods[0], ns, true)
			newPods = newPods[1:]
		default: // in both
			oldPods, newPods = oldPods[1:], newPods[1:]
		}
	}
}

func (w *ipIndexWriter) setPod(a netip.Addr, ns string, has bool) {
	sh := w.podShard(a)
	k := a.As16()
	var pods []podEntry
	for _, p := range sh.pods[k] {
		if p.ns != ns {
			pods = append(pods, p)
		}
	}
	if has {
		pods = append(pods, podEntry{ns: ns})
	}
	if len(pods) == 0 {
		delete(sh.pods, k)
		return
	}
	sh.pods[k] = pods
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
