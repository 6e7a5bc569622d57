package zone

import (
	"encoding/binary"
	"net/netip"
	"slices"
)

// Names below a service, answered from addresses and labels into the
// caller's buffer (see pack_build.go). Nothing here allocates when dst has
// room.

// lookupBelow answers the name under labels below service sv (1: an
// endpoint name or _<proto>, 2: _<port>._<proto>); ok is false when sv has
// no such name. below is the part of the query name under the service.
func (s *Snapshot) lookupBelow(z *zoneData, sv *svcNode, below []byte, under int, qtype uint16, dst []byte) (Result, bool) {
	if under == 2 {
		for i := range sv.srv {
			if sv.srv[i].key == string(below) {
				return s.answerSRV(z, sv, &sv.srv[i], qtype, dst), true
			}
		}
		return Result{}, false
	}
	if below[1] == '_' {
		for i := range sv.srv {
			if sv.srv[i].protoKey() == string(below) {
				return z.nodata(), true // empty non-terminal _<proto>.<svc>...
			}
		}
		return Result{}, false
	}
	if i, ok := slices.BinarySearchFunc(sv.hosts, below, func(h hostName, l []byte) int { return cmpLabel(h.label, l) }); ok {
		h := &sv.hosts[i]
		return s.answerAddrs(z, sv.hostAddrs[h.first:h.first+h.n], qtype, dst), true
	}
	// Any spelling of the address: "fd00-0-0-0-0-0-0-1" finds "fd00--1".
	if a, ok := parseDashed(below[1:]); ok {
		if _, ok := slices.BinarySearchFunc(sv.dashed, ipKey(a.As16()), cmpKey); ok {
			one := [1]netip.Addr{a}
			return s.answerAddrs(z, one[:], qtype, dst), true
		}
	}
	return Result{}, false
}

// cmpLabel compares a stored label with a query's, as strings.Compare.
func cmpLabel(s string, b []byte) int {
	for i := 0; i < len(s) && i < len(b); i++ {
		if s[i] != b[i] {
			return int(s[i]) - int(b[i])
		}
	}
	return len(s) - len(b)
}

// answerAddrs answers qtype at a name with addresses addrs (sorted, IPv4
// first): A or AAAA records, or for ANY the first of the two RRsets (RFC
// 8482 §4.2).
func (s *Snapshot) answerAddrs(z *zoneData, addrs []netip.Addr, qtype uint16, dst []byte) Result {
	var want4 bool
	switch qtype {
	case typeA:
		want4 = true
	case typeAAAA:
	case typeANY:
		want4 = addrs[0].Is4()
	default:
		return z.nodata()
	}
	start := len(dst)
	var an uint16
	for _, a := range addrs {
		if a.Is4() != want4 {
			continue
		}
		if len(dst)-start+addrRRLen(nil, a) > maxRecordsLen {
			break
		}
		dst = appendAddrRR(dst, nil, s.ttl, a)
		an++
	}
	if an == 0 {
		return z.nodata()
	}
	return Result{Kind: KindAnswer, Rcode: rcodeSuccess, Records: dst[start:], An: an}
}

// appendTarget appends the name of SRV target ref: <label>.<svc>… or the
// service's own name.
func (sv *svcNode) appendTarget(dst []byte, ref int32) []byte {
	switch {
	case ref == selfRef:
	case ref >= 0:
		dst = append(dst, sv.hosts[ref].label...)
	default:
		dst = appendDashedLabel(dst, sv.dashedAddr(ref))
	}
	return append(dst, sv.wire...)
}

func (sv *svcNode) dashedAddr(ref int32) netip.Addr {
	return netip.AddrFrom16(sv.dashed[-ref-1]).Unmap()
}

// targetLen is the length of the name appendTarget appends.
func (sv *svcNode) targetLen(ref int32) int {
	switch {
	case ref == selfRef:
		return len(sv.wire)
	case ref >= 0:
		return len(sv.hosts[ref].label) + len(sv.wire)
	}
	var buf [48]byte // the longest dashed label is 1+39 octets
	return len(appendDashedLabel(buf[:0], sv.dashedAddr(ref))) + len(sv.wire)
}

// answerSRV answers an SRV name (SPEC R7): one record per target, with the
// targets' A/AAAA records in the additional section. Priority is 0 and the
// weight is 100/n for n records (at least 1), the split CoreDNS uses for
// records of equal priority (RFC 2782 leaves values to the zone; the k8s
// spec does not prescribe them). Records that would take the answer over
// maxRecordsLen are left out.
func (s *Snapshot) answerSRV(z *zoneData, sv *svcNode, set *srvSet, qtype uint16, dst []byte) Result {
	if qtype != typeSRV && qtype != typeANY {
		return z.nodata()
	}
	size, n := 0, 0
	for _, t := range set.targets {
		l := 2 + 10 + 6 + sv.targetLen(t.ref)
		if size+l > maxRecordsLen {
			break
		}
		size += l
		n++
	}
	if n == 0 {
		return z.nodata()
	}
	weight := uint16(max(100/n, 1))
	start := len(dst)
	for _, t := range set.targets[:n] {
		var rd int
		dst, rd = rrStart(dst, nil, typeSRV, s.ttl)
		dst = binary.BigEndian.AppendUint16(dst, 0) // priority
		dst = binary.BigEndian.AppendUint16(dst, weight)
		dst = binary.BigEndian.AppendUint16(dst, t.port)
		dst = sv.appendTarget(dst, t.ref)
		dst = rrEnd(dst, rd)
	}
	r := Result{Kind: KindAnswer, Rcode: rcodeSuccess, An: uint16(n)}
	prev := int32(selfRef + 1) // no target has it
	for _, t := range set.targets[:n] {
		if t.ref == prev {
			continue // targets are sorted by name: one set per target
		}
		prev = t.ref
		var ok bool
		if dst, ok = s.appendTargetAddrs(dst, start, sv, t.ref, &r.Ar); !ok {
			break
		}
	}
	r.Records = dst[start:]
	return r
}

// appendTargetAddrs appends the A/AAAA records of SRV target ref, owned by
// its name, counting them in ar; ok is false when the answer (from start)
// is full.
func (s *Snapshot) appendTargetAddrs(dst []byte, start int, sv *svcNode, ref int32, ar *uint16) ([]byte, bool) {
	ok := true
	switch {
	case ref == selfRef: // a ClusterIP service: its ClusterIPs
		for _, set := range sv.self.sets {
			rec := set.rec
			for range set.an {
				rdlen := int(binary.BigEndian.Uint16(rec[10:]))
				a, _ := netip.AddrFromSlice(rec[12 : 12+rdlen])
				if dst, ok = s.appendTargetAddr(dst, start, sv, ref, a); !ok {
					return dst, false
				}
				*ar++
				rec = rec[12+rdlen:]
			}
		}
	case ref >= 0:
		h := &sv.hosts[ref]
		for _, a := range sv.hostAddrs[h.first : h.first+h.n] {
			if dst, ok = s.appendTargetAddr(dst, start, sv, ref, a); !ok {
				return dst, false
			}
			*ar++
		}
	default:
		if dst, ok = s.appendTargetAddr(dst, start, sv, ref, sv.dashedAddr(ref)); !ok {
			return dst, false
		}
		*ar++
	}
	return dst, true
}

// appendTargetAddr appends one A or AAAA record of a owned by target ref's
// name, unless the answer (from start) would outgrow maxRecordsLen.
func (s *Snapshot) appendTargetAddr(dst []byte, start int, sv *svcNode, ref int32, a netip.Addr) ([]byte, bool) {
	if len(dst)-start+sv.targetLen(ref)+addrRRLen(qnameOwner, a)-len(qnameOwner) > maxRecordsLen {
		return dst, false
	}
	dst = sv.appendTarget(dst, ref)
	var rd int
	if a.Is4() {
		dst, rd = rrHead(dst, typeA, s.ttl)
		v := a.As4()
		dst = append(dst, v[:]...)
	} else {
		dst, rd = rrHead(dst, typeAAAA, s.ttl)
		v := a.As16()
		dst = append(dst, v[:]...)
	}
	return rrEnd(dst, rd), true
}
