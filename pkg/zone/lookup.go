package zone

import "bytes"

// Lookup answers a query. name is the lowercased, uncompressed wire-format
// query name including the terminating root label; qtype is the query type.
// Records built per query (names below a service, pod names, PTR) are
// appended to dst, which may be nil: Records is then dst[len(dst):] after
// the append, and what dst held before is left as it was. Records may alias
// dst or the snapshot and must not be modified. It does not allocate when
// dst has room.
//
// A malformed name (bad label length, trailing bytes, over 255 octets) is
// KindForward: it is not a name of ours, and the resolver has rejected it
// long before in practice.
//
// Outcomes, per SPEC: names under a cluster domain are answered from the
// snapshot (KindAnswer, KindNoData, KindNXDomain, KindSearchSuffix,
// KindChase) or, before the sources synced, KindNotSynced. Complete reverse
// names (4 labels under in-addr.arpa, 32 under ip6.arpa) of known
// addresses answer PTR (and ANY); any other type at such a name, unknown
// reverse names and everything else are KindForward.
//
// # Search-list expansions (KindSearchSuffix)
//
// An NXDOMAIN is classified KindSearchSuffix when no snapshot with the
// current namespaces could ever hold the name, which is what the ndots:5
// search list produces (api.example.com.<ns>.svc.<zone>,
// api.example.com.svc.<zone>, api.example.com.<zone>):
//   - under <zone> but outside svc.<zone>, pod.<zone>, dns.<zone> and
//     dns-version.<zone> (no record ever lives there);
//   - X.svc.<zone> or anything below it when namespace X does not exist
//     (the same for pod.<zone>);
//   - more than three labels below <ns>.svc.<zone>;
//   - three labels below <ns>.svc.<zone> not of the form _port._proto.<svc>;
//   - two labels below <ns>.svc.<zone> when the service does not exist
//     and the first is not _<proto> (google.com.<ns>.svc.<zone>: no
//     service "com");
//   - more than one label below <ns>.pod.<zone>.
//
// A missing service (<svc>.<ns>.svc.<zone>), a missing endpoint or port of
// an existing service, a headless service without ready endpoints and a
// malformed pod name are plain KindNXDomain: those are real questions about
// the cluster.
func (s *Snapshot) Lookup(name []byte, qtype uint16, dst []byte) Result {
	var offs labelOffsets
	n, ok := splitLabels(name, &offs)
	if !ok {
		return Result{Kind: KindForward}
	}
	for _, z := range s.zones {
		if n < z.nlabels || !bytes.Equal(name[offs[n-z.nlabels]:], z.wire) {
			continue
		}
		if !s.synced {
			// Never a false NXDOMAIN before the watches synced.
			return Result{Kind: KindNotSynced, Rcode: rcodeServFail}
		}
		r := s.lookupZone(z, name, &offs, n-z.nlabels, qtype, dst)
		if s.lastKnown && r.Rcode == rcodeNXDomain {
			// Nor from a previous run's zone: the name may exist now.
			return Result{Kind: KindNotSynced, Rcode: rcodeServFail}
		}
		return r
	}
	if s.synced {
		return s.lookupReverse(name, &offs, n, qtype, dst)
	}
	return Result{Kind: KindForward}
}

// labelOffsets holds the offset of each label of a name (at most 127) and,
// after the last, the offset of the root label.
type labelOffsets [128]uint8

// splitLabels fills offs and returns the number of labels (root excluded).
func splitLabels(name []byte, offs *labelOffsets) (int, bool) {
	if len(name) == 0 || len(name) > 255 {
		return 0, false
	}
	n, i := 0, 0
	for {
		if i >= len(name) {
			return 0, false
		}
		l := int(name[i])
		if l == 0 {
			if i+1 != len(name) {
				return 0, false
			}
			offs[n] = uint8(i)
			return n, true
		}
		if l > 63 || n >= len(offs)-1 {
			return 0, false
		}
		offs[n] = uint8(i)
		n++
		i += 1 + l
	}
}

// label returns the text of label i (without its length octet).
func label(name []byte, offs *labelOffsets, i int) []byte {
	return name[int(offs[i])+1 : offs[i+1]]
}

var (
	lblSvc     = []byte("\x03svc")
	lblPod     = []byte("\x03pod")
	lblDNS     = []byte("\x03dns")
	lblNS      = []byte("\x02ns")
	lblVersion = []byte("\x0bdns-version")
)

func (z *zoneData) nx(kind Kind) Result {
	return Result{Kind: kind, Rcode: rcodeNXDomain, Records: z.neg, Ns: 1}
}

func (z *zoneData) nodata() Result {
	return Result{Kind: KindNoData, Rcode: rcodeSuccess, Records: z.neg, Ns: 1}
}

// answer picks the RRset of qtype at node n. ANY gets the first RRset only
// (RFC 8482 §4.2), never the whole node.
func (z *zoneData) answer(n *node, qtype uint16) Result {
	for i := range n.sets {
		set := &n.sets[i]
		if set.typ == qtype || qtype == typeANY {
			return Result{Kind: KindAnswer, Rcode: rcodeSuccess, Records: set.rec, An: set.an, Ar: set.ar}
		}
	}
	return z.nodata()
}

// lookupZone answers a name with k labels above the apex of z.
func (s *Snapshot) lookupZone(z *zoneData, name []byte, offs *labelOffsets, k int, qtype uint16, dst []byte) Result {
	if k == 0 {
		return z.answer(&z.apex, qtype)
	}
	top := name[offs[k-1]:offs[k]]
	switch {
	case bytes.Equal(top, lblSvc):
		return s.lookupSvc(z, name, offs, k, qtype, dst)
	case bytes.Equal(top, lblPod):
		return s.lookupPod(z, name, offs, k, qtype, dst)
	case bytes.Equal(top, lblVersion):
		if k == 1 {
			return z.answer(&z.version, qtype)
		}
		return z.nx(KindNXDomain)
	case bytes.Equal(top, lblDNS):
		if k == 1 {
			return z.nodata() // empty non-terminal above ns.dns.<zone>
		}
		if k == 2 && bytes.Equal(name[:offs[1]], lblNS) {
			return z.answer(&z.nsHost, qtype)
		}
		return z.nx(KindNXDomain)
	}
	return z.nx(KindSearchSuffix)
}

// lookupSvc answers names under svc.<zone> (SPEC R3-R7, R9, R11, R12).
func (s *Snapshot) lookupSvc(z *zoneData, name []byte, offs *labelOffsets, k int, qtype uint16, dst []byte) Result {
	if k == 1 {
		if len(s.ns) > 0 {
			return z.nodata() // RFC 8020: it has descendants
		}
		return z.nx(KindNXDomain)
	}
	d := s.ns[string(label(name, offs, k-2))]
	if d == nil {
		return z.nx(KindSearchSuffix)
	}
	if k == 2 {
		return z.nodata()
	}
	under := k - 3 // labels below <svc>
	if under > 2 {
		return z.nx(KindSearchSuffix)
	}
	var sv *svcNode
	if nodes := d.svcs[string(label(name, offs, k-3))]; nodes != nil {
		sv = nodes[z.idx]
	}
	if under == 0 {
		if sv == nil {
			return z.nx(KindNXDomain)
		}
		if sv.chase != nil {
			set := &sv.self.sets[0]
			r := Result{Kind: KindAnswer, Rcode: rcodeSuccess, Records: set.rec, An: set.an}
			if qtype != typeCNAME && qtype != typeANY {
				// RFC 1034 §3.6.2: the resolver restarts at the target.
				r.Kind, r.Chase = KindChase, sv.chase
			}
			return r
		}
		return z.answer(&sv.self, qtype)
	}
	if sv != nil {
		if r, ok := s.lookupBelow(z, sv, name[:offs[k-3]], under, qtype, dst); ok {
			return r
		}
	}
	switch {
	case under == 1 && (sv != nil || name[offs[0]+1] == '_'):
		return z.nx(KindNXDomain)
	case under == 2 && name[offs[0]+1] == '_' && name[offs[1]+1] == '_':
		return z.nx(KindNXDomain)
	}
	return z.nx(KindSearchSuffix)
}

// lookupPod answers names under pod.<zone> (SPEC R10); the record is built
// from the name into dst.
func (s *Snapshot) lookupPod(z *zoneData, name []byte, offs *labelOffsets, k int, qtype uint16, dst []byte) Result {
	if s.podMode == PodsDisabled {
		if k <= 3 {
			return z.nx(KindNXDomain)
		}
		return z.nx(KindSearchSuffix)
	}
	if k == 1 {
		if (s.podMode == PodsInsecure && len(s.ns) > 0) || s.podNamespaces > 0 {
			return z.nodata()
		}
		return z.nx(KindNXDomain)
	}
	nsl := label(name, offs, k-2)
	d := s.ns[string(nsl)]
	if d == nil {
		return z.nx(KindSearchSuffix)
	}
	if k == 2 {
		if s.podMode == PodsInsecure || len(d.pods) > 0 {
			return z.nodata()
		}
		return z.nx(KindNXDomain)
	}
	if k > 3 {
		return z.nx(KindSearchSuffix)
	}
	a, ok := parseDashed(label(name, offs, 0))
	if !ok || a.IsUnspecified() {
		return z.nx(KindNXDomain)
	}
	if s.podMode == PodsVerified && !s.ip.hasPod(a, nsl) {
		return z.nx(KindNXDomain)
	}
	want := typeAAAA
	if a.Is4() {
		want = typeA
	}
	if qtype != want && qtype != typeANY {
		return z.nodata()
	}
	start := len(dst)
	dst = appendAddrRR(dst, nil, s.ttl, a)
	return Result{Kind: KindAnswer, Rcode: rcodeSuccess, Records: dst[start:], An: 1}
}

// lookupReverse answers PTR for known addresses (SPEC R8); the records
// are built into dst.
func (s *Snapshot) lookupReverse(name []byte, offs *labelOffsets, n int, qtype uint16, dst []byte) Result {
	if qtype != typePTR && qtype != typeANY {
		return Result{Kind: KindForward}
	}
	a, ok := parseReverse(name, offs, n)
	if !ok {
		return Result{Kind: KindForward}
	}
	start := len(dst)
	var one [1]ptrOwner
	dst, an := appendPTR(dst, a, s.ip.ptrs(a, &one), s.ttl)
	if an == 0 {
		return Result{Kind: KindForward}
	}
	return Result{Kind: KindAnswer, Rcode: rcodeSuccess, Records: dst[start:], An: an}
}
