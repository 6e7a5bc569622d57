package zone

import "net/netip"

// Snapshot is an immutable view of the cluster zone. Safe for concurrent
// use by any number of readers.
//
// Layout: a Snapshot shares almost everything with its predecessor. The
// namespaces map holds one immutable *nsData per namespace (shared across
// snapshots until that namespace is rebuilt), each with the pre-packed
// answers of every name below <ns>.svc.<zone>, per service and cluster
// domain (a rebuilt namespace shares the services that did not change). The
// IP index (PTR answers, pods) is sharded by address; a rebuild copies only
// the shards it touches. Per-domain apex data (SOA with the new serial) is
// small and rebuilt on every publish.
type Snapshot struct {
	synced bool
	// lastKnown: built from a previous run's objects (LoadLastKnown) the
	// sources have not confirmed yet. Names it holds answer; NXDOMAIN
	// becomes SERVFAIL, since the name may have been created since.
	lastKnown bool
	serial    uint32
	ttl       uint32 // of records built at lookup (pod names, PTR)
	podMode   PodMode
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

// Synced reports whether the snapshot answers cluster names: built after
// the sources synced, or from a last known zone (LastKnown).
func (s *Snapshot) Synced() bool { return s.synced }

// LastKnown reports whether the snapshot is built from a previous run's
// objects the sources have not confirmed yet (Builder.LoadLastKnown).
func (s *Snapshot) LastKnown() bool { return s.lastKnown }

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
	pods := s.ip.pods(a)
	if len(pods) == 0 {
		return "", false
	}
	ns = pods[0].ns
	for _, p := range pods[1:] {
		if p.ns != ns {
			return "", false
		}
	}
	return ns, true
}

// zoneData is the per-domain part of a Snapshot: apex records and the
// negative-answer authority section.
type zoneData struct {
	idx     int // index into Config.Domains and nsData.svcs' nodes
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
	// svcs maps a service's lowercased name to its pre-packed answers, one
	// svcNode per entry of Config.Domains. A rebuild of the namespace
	// replaces only the entries of services that changed.
	svcs map[string][]*svcNode
	pods []netip.Addr
}

// svcNode is one service: <svc>.<ns>.svc.<zone> and the names below it
// (see pack_build.go for what is packed and what is built at lookup).
type svcNode struct {
	// self is the service's own RRsets: its ClusterIPs, the addresses of
	// every ready endpoint of a headless service, or the CNAME of an
	// ExternalName service (whose wire-format target is then chase).
	self  node
	chase []byte
	wire  []byte // <svc>.<ns>.svc.<zone>
	// id names the service in PTR answers (SPEC R8). Every svcNode of the
	// service, in every domain and every rebuild, shares it, so the IP
	// index refers to the service without copying names per address.
	id   *svcIdent
	kind svcKind
	// hosts are the endpoint names given by hostnames (SPEC R5, R6b),
	// sorted by wire label; hostAddrs holds their addresses.
	hosts     []hostName
	hostAddrs []netip.Addr
	// dashed holds the address of every dashed endpoint name (SPEC R6),
	// sorted: "10-1-0-3" or any spelling of an IPv6 address is parsed and
	// looked up here.
	dashed []ipKey
	srv    []srvSet // sorted by key
}

// svcIdent is <svc>.<ns>.svc.<zone> of the primary domain, in wire format.
type svcIdent struct {
	wire []byte
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
