package zone

import (
	"net/netip"
	"sync/atomic"
	"time"
)

// Config is fixed for the life of a Builder.
type Config struct {
	// Domains are the cluster zones, lowercased, without trailing dot
	// (e.g. "cluster.local"). At least one.
	Domains []string
	// TTL of cluster records (A, AAAA, SRV, PTR, CNAME); default 5.
	TTL uint32
	// SOATTL is the TTL of SOA, NS and TXT records; default 30. The SOA
	// minimum (negative TTL, RFC 2308) is TTL.
	SOATTL uint32
	// PodMode selects pod record behaviour (SPEC R10).
	PodMode PodMode
	// EndpointPodNames also names hostname-less endpoints after their Pod
	// (SPEC R6b).
	EndpointPodNames bool
	// NSAddrs are the addresses given for ns.dns.<zone> (the NS target);
	// may be empty.
	NSAddrs []netip.Addr
	// Debounce is how long the Builder waits after a change before building,
	// so bursts coalesce into one publish; default 20ms.
	Debounce time.Duration
}

// Kind says how a query was answered; it feeds metrics and the resolver's
// choice of path.
type Kind uint8

const (
	// KindForward: the name is not ours; the resolver forwards it.
	KindForward Kind = iota
	// KindAnswer: NOERROR with records.
	KindAnswer
	// KindNoData: NOERROR, no answer, SOA in authority.
	KindNoData
	// KindNXDomain: NXDOMAIN, SOA in authority.
	KindNXDomain
	// KindSearchSuffix: NXDOMAIN for a name that is a search-list expansion
	// (more labels under <ns>.svc.<zone>, svc.<zone> or <zone> than any
	// record can have, or a namespace that does not exist; the exact rule is
	// in the Snapshot.Lookup doc); answered like KindNXDomain, counted apart.
	KindSearchSuffix
	// KindNotSynced: the zone has not synced yet; answer SERVFAIL.
	KindNotSynced
	// KindChase: an ExternalName CNAME is in Records; the resolver must
	// resolve Chase (with the same qtype) and append its answer records.
	KindChase
)

// Result is the outcome of Snapshot.Lookup.
//
// Records holds packed resource records, uncompressed except that records
// owned by the query name use the pointer 0xC00C (the question always starts
// at offset 12 of a response), so the answer echoes the question's case.
// Records are in section order: An answer records, then Ns authority
// records, then Ar additional records.
type Result struct {
	Kind    Kind
	Rcode   uint8 // dns.RcodeSuccess, dns.RcodeNameError, dns.RcodeServerFailure
	Records []byte
	An      uint16
	Ns      uint16
	Ar      uint16
	// Chase is the lowercased wire-format target name for KindChase.
	Chase []byte
}

// Store publishes Snapshots. Readers call Load, which is one atomic load;
// it never returns nil (an empty, unsynced snapshot before the first publish).
type Store struct {
	p atomic.Pointer[Snapshot]
}

// Load returns the current snapshot. Safe for concurrent use.
func (s *Store) Load() *Snapshot {
	if snap := s.p.Load(); snap != nil {
		return snap
	}
	return emptySnapshot
}

// Publish makes snap the current snapshot. Safe for concurrent use.
func (s *Store) Publish(snap *Snapshot) { s.p.Store(snap) }
