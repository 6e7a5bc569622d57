package zone

import (
	"net/netip"
)

// packer collects the records of many RRsets in one scratch buffer; finish
// copies them into one exactly-sized block that the RRsets then slice, so a
// service with a thousand names costs one allocation for its records.
// Not safe for concurrent use; the Builder owns one.
type packer struct {
	buf  []byte
	fix  []fixup
	name []byte // scratch for target names
	wpos []int  // scratch: SRV weight offsets
	byLb map[string][]netip.Addr
}

type fixup struct {
	set        *rrset
	start, end int
}

// done records that set's records are p.buf[start:] (up to now). set must
// not move before finish: it points into a slab carved with fixed capacity.
func (p *packer) done(set *rrset, start int) {
	p.fix = append(p.fix, fixup{set, start, len(p.buf)})
}

func (p *packer) finish() {
	block := make([]byte, len(p.buf))
	copy(block, p.buf)
	for _, f := range p.fix {
		f.set.rec = block[f.start:f.end:f.end]
	}
	p.buf, p.fix = p.buf[:0], p.fix[:0]
	if cap(p.buf) > 1<<20 {
		p.buf = nil // do not keep a huge scratch after an outlier
	}
}

// slab hands out rrset slices of fixed capacity from one allocation.
type slab struct {
	sets []rrset
	used int
}

func (s *slab) carve(k int) []rrset {
	r := s.sets[s.used : s.used : s.used+k]
	s.used += k
	return r
}

func famCount(addrs []netip.Addr) int {
	has4, has6 := 0, 0
	for _, a := range addrs {
		if a.Is4() {
			has4 = 1
		} else {
			has6 = 1
		}
	}
	return has4 + has6
}

// addrSets appends up to two RRsets (A, then AAAA) for addrs (sorted, IPv4
// first) to sets, which must have room for them.
func (p *packer) addrSets(sets []rrset, owner []byte, ttl uint32, addrs []netip.Addr) []rrset {
	for _, want4 := range [2]bool{true, false} {
		start := len(p.buf)
		var an uint16
		for _, a := range addrs {
			if a.Is4() != want4 {
				continue
			}
			if len(p.buf)-start+addrRRLen(owner, a) > maxRecordsLen {
				break
			}
			p.buf = appendAddrRR(p.buf, owner, ttl, a)
			an++
		}
		if an == 0 {
			continue
		}
		typ := typeAAAA
		if want4 {
			typ = typeA
		}
		sets = append(sets, rrset{typ: typ, an: an})
		p.done(&sets[len(sets)-1], start)
	}
	return sets
}

// packService packs one service for one domain; svcWire is
// <svc>.<ns>.svc.<zone> in wire format.
func (p *packer) packService(m *svcModel, svcWire []byte, ttl uint32) *svcNode {
	sv := &svcNode{}
	if m.kind == kindExternal {
		sv.self.sets = make([]rrset, 0, 1)
		start := len(p.buf)
		p.buf = appendNameRR(p.buf, nil, typeCNAME, ttl, m.ext)
		sv.self.sets = append(sv.self.sets, rrset{typ: typeCNAME, an: 1})
		p.done(&sv.self.sets[0], start)
		sv.chase = m.ext
		p.finish()
		return sv
	}

	nsets := famCount(m.ips) + len(m.srv)
	for i := range m.names {
		nsets += famCount(m.names[i].addrs)
	}
	sl := slab{sets: make([]rrset, nsets)}
	nodes := make([]node, len(m.names)+2*len(m.srv))
	ni := 0
	sv.self.sets = p.addrSets(sl.carve(famCount(m.ips)), nil, ttl, m.ips)

	if len(m.names)+len(m.srv) > 0 {
		sv.sub = make(map[string]*node, len(m.names)+2*len(m.srv))
	}
	for i := range m.names {
		n := &m.names[i]
		nd := &nodes[ni]
		ni++
		nd.sets = p.addrSets(sl.carve(famCount(n.addrs)), nil, ttl, n.addrs)
		p.name = appendLabel(p.name[:0], n.label)
		sv.sub[string(p.name)] = nd
		if n.dashed6.IsValid() {
			if sv.v6 == nil {
				sv.v6 = make(map[netip.Addr]*node)
			}
			sv.v6[n.dashed6] = nd
		}
	}

	if len(m.srv) > 0 {
		clear(p.byLb)
		if p.byLb == nil {
			p.byLb = make(map[string][]netip.Addr)
		}
		for i := range m.names {
			p.byLb[m.names[i].label] = m.names[i].addrs
		}
		p.byLb[""] = m.ips
	}
	for i := range m.srv {
		s := &m.srv[i]
		nd := &nodes[ni]
		ni++
		nd.sets = sl.carve(1)
		an, ar, start := p.packSRV(s, svcWire, ttl)
		nd.sets = append(nd.sets, rrset{typ: typeSRV, an: an, ar: ar})
		p.done(&nd.sets[0], start)
		sv.sub[s.key] = nd
		if pk := s.protoKey(); sv.sub[pk] == nil {
			sv.sub[pk] = &nodes[ni] // empty non-terminal _<proto>.<svc>...
			ni++
		}
	}
	p.finish()
	return sv
}

// targetName builds the SRV/PTR target of an endpoint label into p.name.
func (p *packer) targetName(lbl string, svcWire []byte) []byte {
	if lbl == "" {
		return svcWire
	}
	p.name = appendLabel(p.name[:0], lbl)
	p.name = append(p.name, svcWire...)
	return p.name
}

// packSRV packs one SRV RRset with the A/AAAA records of its targets in the
// additional section (SPEC R7). Priority is 0 and the weight is 100/n for n
// records (at least 1), the split CoreDNS uses for records of equal priority
// (RFC 2782 leaves values to the zone; the k8s spec does not prescribe them).
func (p *packer) packSRV(s *srvModel, svcWire []byte, ttl uint32) (an, ar uint16, start int) {
	start = len(p.buf)
	p.wpos = p.wpos[:0]
	for _, t := range s.targets {
		target := p.targetName(t.label, svcWire)
		if len(p.buf)-start+2+10+6+len(target) > maxRecordsLen {
			break
		}
		p.wpos = append(p.wpos, len(p.buf)+2+10+2)
		p.buf = appendSRV(p.buf, nil, ttl, 0, 0, t.port, target)
		an++
	}
	if an == 0 {
		return 0, 0, start
	}
	weight := uint16(100 / int(an))
	if weight == 0 {
		weight = 1
	}
	for _, w := range p.wpos {
		p.buf[w], p.buf[w+1] = byte(weight>>8), byte(weight)
	}
	prev := "\x00" // no label is "\x00"
	for _, t := range s.targets[:an] {
		if t.label == prev {
			continue // targets are sorted by label: one set per target
		}
		prev = t.label
		owner := p.targetName(t.label, svcWire)
		for _, a := range p.byLb[t.label] {
			if len(p.buf)-start+addrRRLen(owner, a) > maxRecordsLen {
				return an, ar, start
			}
			p.buf = appendAddrRR(p.buf, owner, ttl, a)
			ar++
		}
	}
	return an, ar, start
}

// ptrCount is the number of PTR contributions of m.
func ptrCount(m *svcModel) int {
	if m.kind == kindExternal {
		return 0
	}
	n := 0
	if m.kind == kindClusterIP {
		n = len(m.ips)
	}
	for i := range m.names {
		n += len(m.names[i].addrs)
	}
	return n
}

// ptrContribs lists the PTR records a service contributes (SPEC R8): its
// ClusterIPs point at the service name, endpoint addresses at their
// endpoint names. svcWire is in the primary domain.
func ptrContribs(dst []ptrContrib, m *svcModel, svcWire []byte) []ptrContrib {
	if m.kind == kindExternal {
		return dst
	}
	if m.kind == kindClusterIP {
		t := string(svcWire)
		for _, a := range m.ips {
			dst = append(dst, ptrContrib{addr: a, target: t, cluster: true})
		}
	}
	for i := range m.names {
		n := &m.names[i]
		t := string(byte(len(n.label))) + n.label + string(svcWire)
		for _, a := range n.addrs {
			dst = append(dst, ptrContrib{addr: a, target: t})
		}
	}
	return dst
}

// svcWireName returns <svc>.<ns>.svc.<zone> in wire format.
func svcWireName(svc, ns string, zone []byte) []byte {
	b := make([]byte, 0, 2+len(svc)+len(ns)+len(lblSvc)+len(zone))
	b = appendLabel(b, svc)
	b = appendLabel(b, ns)
	b = append(b, lblSvc...)
	return append(b, zone...)
}
