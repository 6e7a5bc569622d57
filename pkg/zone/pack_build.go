package zone

import (
	"math"
	"net/netip"
	"slices"
	"strings"
)

// A service's own answer (its A/AAAA RRsets, or its CNAME) is packed once,
// at build time, since it is what most queries ask for. The names below it
// are kept as what they are made of, addresses and labels, and their
// records (endpoint A/AAAA, SRV with its additional section, PTR) are
// written into the caller's buffer at lookup: a pre-packed SRV answer
// repeats every target name twice, and a node, an RRset and a map entry per
// endpoint name cost more than the endpoint itself (issue #8).

// packer packs the service's own RRsets into one scratch buffer; finish
// copies them into one exactly-sized block. Not safe for concurrent use;
// the Builder owns one.
type packer struct {
	buf []byte
}

// finish returns the records packed since the last finish as one block.
func (p *packer) finish() []byte {
	block := slices.Clone(p.buf)
	p.buf = p.buf[:0]
	if cap(p.buf) > 1<<20 {
		p.buf = nil // do not keep a huge scratch after an outlier
	}
	return block
}

// hostName is a name below a service that is not the dashed form of its
// one address: an endpoint hostname (or Pod name, SPEC R6b).
type hostName struct {
	label string // wire label ("\x05web-0")
	// addrs is the name's addresses: svcNode.hostAddrs[first:first+n],
	// sorted, IPv4 first.
	first, n uint32
}

// srvSet is one _<port>._<proto> name of a service and its SRV targets
// (SPEC R7).
type srvSet struct {
	key     string // wire labels "\x05_http\x04_tcp"
	targets []srvRef
}

// srvRef is one SRV record: its target is the service itself (ref
// selfRef), hosts[ref] (ref >= 0) or the dashed name of dashed[-ref-1].
type srvRef struct {
	ref  int32
	port uint16
}

const selfRef = math.MinInt32

// protoKey returns the "_<proto>" label of an SRV key.
func (s *srvSet) protoKey() string { return s.key[1+int(s.key[0]):] }

// addrSets appends up to two RRsets (A, then AAAA) of addrs (sorted, IPv4
// first) owned by the query name to sets, each at most maxRecordsLen.
func (p *packer) addrSets(sets []rrset, ttl uint32, addrs []netip.Addr) []rrset {
	type span struct{ start, end int }
	var spans [2]span
	var ans [2]uint16
	for i, want4 := range [2]bool{true, false} {
		start := len(p.buf)
		for _, a := range addrs {
			if a.Is4() != want4 {
				continue
			}
			if len(p.buf)-start+addrRRLen(nil, a) > maxRecordsLen {
				break
			}
			p.buf = appendAddrRR(p.buf, nil, ttl, a)
			ans[i]++
		}
		spans[i] = span{start, len(p.buf)}
	}
	block := p.finish()
	for i, typ := range [2]uint16{typeA, typeAAAA} {
		if ans[i] > 0 {
			sets = append(sets, rrset{typ: typ, an: ans[i], rec: block[spans[i].start:spans[i].end:spans[i].end]})
		}
	}
	return sets
}

// packService packs one service for one domain; svcWire is
// <svc>.<ns>.svc.<zone> in wire format.
func (p *packer) packService(m *svcModel, svcWire []byte, ttl uint32) *svcNode {
	sv := &svcNode{kind: m.kind, wire: svcWire}
	if m.kind == kindExternal {
		p.buf = appendNameRR(p.buf, nil, typeCNAME, ttl, m.ext)
		sv.self.sets = []rrset{{typ: typeCNAME, an: 1, rec: p.finish()}}
		sv.chase = m.ext
		return sv
	}
	sv.self.sets = slices.Clip(p.addrSets(make([]rrset, 0, 2), ttl, m.ips))

	// Names: hostnames keep their label and addresses, dashed names only
	// their address.
	var refs map[string]int32 // SRV target label -> srvRef.ref
	if len(m.srv) > 0 {
		refs = make(map[string]int32, len(m.names))
	}
	nhost, naddr := 0, 0
	for i := range m.names {
		if n := &m.names[i]; n.named {
			nhost++
			naddr += len(n.addrs)
		}
	}
	if nhost > 0 {
		sv.hosts = make([]hostName, 0, nhost)
		sv.hostAddrs = make([]netip.Addr, 0, naddr)
	}
	if len(m.names) > nhost {
		sv.dashed = make([]ipKey, 0, len(m.names)-nhost)
	}
	for i := range m.names {
		n := &m.names[i]
		if n.named {
			sv.hosts = append(sv.hosts, hostName{
				label: string(byte(len(n.label))) + n.label, // isLabel: at most 63 octets
				first: uint32(len(sv.hostAddrs)),
				n:     uint32(len(n.addrs)),
			})
			sv.hostAddrs = append(sv.hostAddrs, n.addrs...)
			continue
		}
		sv.dashed = append(sv.dashed, ipKey(n.addrs[0].As16()))
	}
	// Sorted for binary search: hosts by wire label (the query's form),
	// dashed by address; SRV targets refer to their places after sorting.
	slices.SortFunc(sv.hosts, func(a, b hostName) int { return strings.Compare(a.label, b.label) })
	slices.SortFunc(sv.dashed, cmpKey)
	if len(m.srv) > 0 {
		for i := range sv.hosts {
			refs[sv.hosts[i].label[1:]] = int32(i)
		}
		for i := range m.names {
			if n := &m.names[i]; !n.named {
				j, _ := slices.BinarySearchFunc(sv.dashed, ipKey(n.addrs[0].As16()), cmpKey)
				refs[n.label] = int32(-j - 1)
			}
		}
	}

	if len(m.srv) > 0 {
		sv.srv = make([]srvSet, len(m.srv))
		for i := range m.srv {
			s := &m.srv[i]
			set := srvSet{key: s.key, targets: make([]srvRef, 0, len(s.targets))}
			for _, t := range s.targets {
				ref, ok := int32(selfRef), true
				if t.label != "" {
					ref, ok = refs[t.label]
				}
				if ok {
					set.targets = append(set.targets, srvRef{ref: ref, port: t.port})
				}
			}
			sv.srv[i] = set
		}
	}
	return sv
}

func cmpKey(a, b ipKey) int {
	for i := range a {
		if a[i] != b[i] {
			return int(a[i]) - int(b[i])
		}
	}
	return 0
}

// svcWireName returns <svc>.<ns>.svc.<zone> in wire format.
func svcWireName(svc, ns string, zone []byte) []byte {
	b := make([]byte, 0, 2+len(svc)+len(ns)+len(lblSvc)+len(zone))
	b = appendLabel(b, svc)
	b = appendLabel(b, ns)
	b = append(b, lblSvc...)
	return append(b, zone...)
}
