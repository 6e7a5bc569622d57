package zone

import "net/netip"

// Snapshot is an immutable view of the cluster zone. Safe for concurrent
// use by any number of readers.
//
// Layout: a Snapshot shares almost everything with its predecessor. The
// namespaces map holds one immutable *nsData per namespace (shared across
// snapshots until that namespace is rebuilt), each with the pre-packed
// answers of every name below <ns>.svc.<zone>, per cluster domain. The IP
// index (PTR answers, pods) is sharded by address; a rebuild copies only the
// shards it touches. Per-domain apex data (SOA with the new serial) is small
// and rebuilt on every publish.
type Snapshot struct {
	synced  bool
	serial  uint32
	ttl     uint32 // of dynamic pod records
	podMode PodMode
	// zones are sorted by label count, longest first, so a name under two
	// configured domains (cluster.local and local) matches the deeper one.
	zones []*zoneData
	ns    map[string]*nsData
	// podNamespaces counts namespaces with at least one known pod IP (the
	// existence of pod.<zone> in verified mode).
	podNamespaces int
	ip            *ipIndex
}

// emptySnapshot is what Store.Load returns before the first Publish: not
// synced and without domains, so every name is KindForward. NewBuilder
// publishes an unsynced snapshot that knows its domains right away, so
// cluster names get SERVFAIL (never forwarded) from then on.
var emptySnapshot = &Snapshot{}

// Synced reports whether the snapshot was built after the sources synced.
func (s *Snapshot) Synced() bool { return s.synced }

// Serial is the SOA serial of this snapshot; it grows with every publish.
func (s *Snapshot) Serial() uint32 { return s.serial }

// PodNamespace returns the namespace of the (non-hostNetwork) Pod that has
// address a, for autopath. ok is false when no known Pod has it, or when
// Pods of more than one namespace claim it (a stale Pod whose IP was
// reused): answering for the wrong namespace would be worse than not at all.
func (s *Snapshot) PodNamespace(a netip.Addr) (ns string, ok bool) {
	if s.ip == nil {
		return "", false
	}
	a, ok = normAddr(a)
	if !ok {
		return "", false
	}
	c := s.ip.get(a)
	if c == nil || len(c.pods) == 0 {
		return "", false
	}
	ns = c.pods[0].ns
	for _, p := range c.pods[1:] {
		if p.ns != ns {
			return "", false
		}
	}
	return ns, true
}

// zoneData is the per-domain part of a Snapshot: apex records and the
// negative-answer authority section.
type zoneData struct {
	idx     int // index into Config.Domains and nsData.zones
	wire    []byte
	nlabels int
	apex    node // SOA, NS
	version node // dns-version TXT
	nsHost  node // ns.dns.<zone> A/AAAA (may have no sets: NODATA)
	// neg is the SOA record for the authority section of NXDOMAIN and
	// NODATA answers (RFC 2308 §3).
	neg []byte
}

// nsData is one namespace, immutable once published.
type nsData struct {
	name string
	// zones[i] holds the service names of Config.Domains[i].
	zones []*nsZone
	// Contributions to the IP index, kept to remove them on rebuild.
	ptrs     []ptrContrib
	pods     []netip.Addr
	services int // for stats
}

// nsZone is the pre-packed answers of one namespace in one domain.
type nsZone struct {
	services map[string]*svcNode
}

// svcNode is one service: <svc>.<ns>.svc.<zone> and the names below it.
type svcNode struct {
	self node
	// sub maps the wire-format labels under the service name
	// ("\x05web-0", "\x05_http\x04_tcp", "\x04_tcp") to their node.
	sub map[string]*node
	// v6 maps the addresses of dashed IPv6 endpoint names to their node, so
	// other spellings of the same address ("fd00-0-0-0-0-0-0-1" for
	// "fd00--1") find it. nil when there are none.
	v6 map[netip.Addr]*node
	// chase is the wire-format CNAME target of an ExternalName service;
	// self.sets[0] is then the CNAME record.
	chase []byte
}

// node is one owner name and its RRsets.
type node struct {
	sets []rrset
}

// rrset is the pre-packed answer to one qtype: An answer records followed by
// Ar additional records.
type rrset struct {
	typ uint16
	an  uint16
	ar  uint16
	rec []byte
}

// ptrContrib is one PTR record a namespace contributes to the IP index.
type ptrContrib struct {
	addr    netip.Addr
	target  string // wire name in the primary domain
	cluster bool   // a ClusterIP (wins over endpoint names)
}
