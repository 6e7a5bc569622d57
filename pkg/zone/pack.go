package zone

import (
	"encoding/binary"
	"net/netip"
	"strings"
)

// Wire-format helpers used at build time (packing records) and at lookup
// time (parsing labels). Everything packed here is uncompressed except the
// owner of records owned by the query name, which is the pointer 0xC00C to
// the question (see Result).

const (
	typeA     uint16 = 1
	typeNS    uint16 = 2
	typeCNAME uint16 = 5
	typeSOA   uint16 = 6
	typePTR   uint16 = 12
	typeTXT   uint16 = 16
	typeAAAA  uint16 = 28
	typeSRV   uint16 = 33
	typeANY   uint16 = 255

	classIN uint16 = 1

	rcodeSuccess  uint8 = 0
	rcodeServFail uint8 = 2
	rcodeNXDomain uint8 = 3

	// maxRecordsLen bounds the records of one answer so that header (12),
	// the longest question (255+4), an OPT record with room for options
	// (512) and the records fit a 65535-octet message (RFC 1035 §4.2.2 TCP
	// length prefix). Bigger RRsets (a headless service with thousands of
	// endpoints) are cut at a record boundary.
	maxRecordsLen = 65535 - 12 - 255 - 4 - 512

	// SOA timers (RFC 1912 §2.2 ranges); the zone is never transferred, so
	// they only have to be sensible. The minimum is Config.TTL.
	soaRefresh = 7200
	soaRetry   = 1800
	soaExpire  = 86400
)

// qnameOwner is the owner of records owned by the query name: a pointer to
// offset 12, where the question name starts.
var qnameOwner = []byte{0xC0, 0x0C}

// rrStart appends the fixed part of a record and returns the buffer and the
// offset of its RDATA; owner nil means the query name.
func rrStart(b, owner []byte, typ uint16, ttl uint32) ([]byte, int) {
	if owner == nil {
		owner = qnameOwner
	}
	return rrHead(append(b, owner...), typ, ttl)
}

// rrHead appends the fixed part of a record whose owner b already ends
// with, and returns the buffer and the offset of its RDATA.
func rrHead(b []byte, typ uint16, ttl uint32) ([]byte, int) {
	b = binary.BigEndian.AppendUint16(b, typ)
	b = binary.BigEndian.AppendUint16(b, classIN)
	b = binary.BigEndian.AppendUint32(b, ttl)
	b = append(b, 0, 0)
	return b, len(b)
}

// rrEnd writes the RDLENGTH of the record whose RDATA started at rdata.
func rrEnd(b []byte, rdata int) []byte {
	binary.BigEndian.PutUint16(b[rdata-2:], uint16(len(b)-rdata))
	return b
}

// addrRRLen is the packed size of an A or AAAA record.
func addrRRLen(owner []byte, a netip.Addr) int {
	n := 2
	if owner != nil {
		n = len(owner)
	}
	if a.Is4() {
		return n + 10 + 4
	}
	return n + 10 + 16
}

// appendAddrRR appends an A (IPv4) or AAAA (IPv6) record.
func appendAddrRR(b, owner []byte, ttl uint32, a netip.Addr) []byte {
	if a.Is4() {
		b, rd := rrStart(b, owner, typeA, ttl)
		v := a.As4()
		b = append(b, v[:]...)
		return rrEnd(b, rd)
	}
	b, rd := rrStart(b, owner, typeAAAA, ttl)
	v := a.As16()
	b = append(b, v[:]...)
	return rrEnd(b, rd)
}

// appendNameRR appends a record whose RDATA is one name (NS, CNAME, PTR).
func appendNameRR(b, owner []byte, typ uint16, ttl uint32, target []byte) []byte {
	b, rd := rrStart(b, owner, typ, ttl)
	b = append(b, target...)
	return rrEnd(b, rd)
}

// appendSRV appends an SRV record (RFC 2782); the target is not compressed.
func appendSRV(b, owner []byte, ttl uint32, prio, weight, port uint16, target []byte) []byte {
	b, rd := rrStart(b, owner, typeSRV, ttl)
	b = binary.BigEndian.AppendUint16(b, prio)
	b = binary.BigEndian.AppendUint16(b, weight)
	b = binary.BigEndian.AppendUint16(b, port)
	b = append(b, target...)
	return rrEnd(b, rd)
}

// appendSOA appends the zone's SOA record.
func appendSOA(b, owner []byte, ttl uint32, mname, rname []byte, serial, minimum uint32) []byte {
	b, rd := rrStart(b, owner, typeSOA, ttl)
	b = append(b, mname...)
	b = append(b, rname...)
	for _, v := range [...]uint32{serial, soaRefresh, soaRetry, soaExpire, minimum} {
		b = binary.BigEndian.AppendUint32(b, v)
	}
	return rrEnd(b, rd)
}

// appendTXT appends a TXT record with one character-string (< 256 octets).
func appendTXT(b, owner []byte, ttl uint32, s string) []byte {
	b, rd := rrStart(b, owner, typeTXT, ttl)
	b = append(b, byte(len(s)))
	b = append(b, s...)
	return rrEnd(b, rd)
}

// appendLabel appends s as one wire label; s must be a valid label.
func appendLabel(b []byte, s string) []byte {
	b = append(b, byte(len(s)))
	return append(b, s...)
}

// isLabelByte reports whether c may appear in a name label taken from a
// Kubernetes object: DNS-1123 labels are lowercase letters, digits and '-'.
func isLabelByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-'
}

// isLabel reports whether s (already lowercased) is usable as one label of
// a record name: 1 to 63 of [a-z0-9-]. Kubernetes validates stricter rules
// (no leading or trailing '-'); we only need what DNS can carry safely.
func isLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isLabelByte(s[i]) {
			return false
		}
	}
	return true
}

// lowerLabel lowercases s and reports whether it is a valid label.
func lowerLabel(s string) (string, bool) {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			s = strings.ToLower(s)
			break
		}
	}
	return s, isLabel(s)
}

// wireName converts a dotted name ("www.example.com", one trailing dot
// allowed) into lowercase wire format. It accepts the characters of host
// names plus '_' and rejects empty labels, labels over 63 octets and names
// over 255 octets.
func wireName(s string) ([]byte, bool) {
	s = strings.TrimSuffix(s, ".")
	if s == "" {
		return nil, false
	}
	b := make([]byte, 0, len(s)+2)
	for len(s) > 0 {
		l := s
		rest := ""
		if i := strings.IndexByte(s, '.'); i >= 0 {
			l, rest = s[:i], s[i+1:]
			if rest == "" {
				return nil, false
			}
		}
		if len(l) == 0 || len(l) > 63 {
			return nil, false
		}
		b = append(b, byte(len(l)))
		for i := 0; i < len(l); i++ {
			c := l[i]
			if c >= 'A' && c <= 'Z' {
				c += 'a' - 'A'
			}
			if !isLabelByte(c) && c != '_' {
				return nil, false
			}
			b = append(b, c)
		}
		s = rest
	}
	b = append(b, 0)
	if len(b) > 255 {
		return nil, false
	}
	return b, true
}

// normAddr strips a zone and unmaps IPv4-mapped IPv6; it rejects invalid
// and unspecified addresses, which can never be a useful record.
func normAddr(a netip.Addr) (netip.Addr, bool) {
	if !a.IsValid() {
		return netip.Addr{}, false
	}
	a = a.WithZone("").Unmap()
	if a.IsUnspecified() {
		return netip.Addr{}, false
	}
	return a, true
}

// dashedIP is the endpoint label of an address without hostname (SPEC R6):
// IPv4 dots become dashes ("10-0-0-1"); IPv6 uses the RFC 5952 text form
// with ':' replaced by '-' ("fd00-10--1"), as CoreDNS does. A leading or
// trailing '-' (from "::" at either end) gets a "0" so the label starts and
// ends with an alphanumeric (CoreDNS pads only the end; both spellings are
// accepted on lookup because lookups compare parsed addresses).
func dashedIP(a netip.Addr) string {
	s := a.String()
	if a.Is4() {
		return strings.ReplaceAll(s, ".", "-")
	}
	s = strings.ReplaceAll(s, ":", "-")
	if strings.HasPrefix(s, "-") {
		s = "0" + s
	}
	if strings.HasSuffix(s, "-") {
		s += "0"
	}
	return s
}

// appendDashedLabel appends the wire label of dashedIP(a) without
// allocating.
func appendDashedLabel(b []byte, a netip.Addr) []byte {
	lenAt := len(b)
	b = append(b, 0)
	start := len(b)
	b = a.AppendTo(b)
	for i := start; i < len(b); i++ {
		if b[i] == '.' || b[i] == ':' {
			b[i] = '-'
		}
	}
	if a.Is6() {
		if b[start] == '-' {
			b = append(b, 0)
			copy(b[start+1:], b[start:len(b)-1])
			b[start] = '0'
		}
		if b[len(b)-1] == '-' {
			b = append(b, '0')
		}
	}
	b[lenAt] = byte(len(b) - start)
	return b
}

// parseDashed parses a dashed IP label (IPv4 "a-b-c-d" or IPv6 with '-' for
// ':', compressed or not) without allocating.
func parseDashed(l []byte) (netip.Addr, bool) {
	if a, ok := parseDashed4(l); ok {
		return a, true
	}
	return parseDashed6(l)
}

// parseDashed4 parses "a-b-c-d" with canonical decimal octets.
func parseDashed4(l []byte) (netip.Addr, bool) {
	var ip [4]byte
	part := 0
	for part < 4 {
		v, n := 0, 0
		for n < len(l) && l[n] >= '0' && l[n] <= '9' {
			v = v*10 + int(l[n]-'0')
			n++
			if n > 3 {
				return netip.Addr{}, false
			}
		}
		if n == 0 || v > 255 || (n > 1 && l[0] == '0') {
			return netip.Addr{}, false
		}
		ip[part] = byte(v)
		part++
		l = l[n:]
		if part < 4 {
			if len(l) == 0 || l[0] != '-' {
				return netip.Addr{}, false
			}
			l = l[1:]
		}
	}
	if len(l) != 0 {
		return netip.Addr{}, false
	}
	return netip.AddrFrom4(ip), true
}

func hexVal(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// parseDashed6 parses an IPv6 address written with '-' instead of ':'
// ("fd00--1", "fd00-0-0-0-0-0-0-1", "0--1", "--1", "fd00--0", "fd00--").
func parseDashed6(l []byte) (netip.Addr, bool) {
	var ip [16]byte
	ellipsis := -1
	i := 0
	if len(l) >= 2 && l[0] == '-' && l[1] == '-' {
		ellipsis = 0
		l = l[2:]
	}
	for i < 16 && len(l) > 0 {
		v, n := 0, 0
		for n < len(l) && n < 5 {
			h := hexVal(l[n])
			if h < 0 {
				break
			}
			v = v<<4 | h
			n++
		}
		if n == 0 || n > 4 {
			return netip.Addr{}, false
		}
		ip[i], ip[i+1] = byte(v>>8), byte(v)
		i += 2
		l = l[n:]
		if len(l) == 0 {
			break
		}
		if l[0] != '-' {
			return netip.Addr{}, false
		}
		l = l[1:]
		if len(l) > 0 && l[0] == '-' {
			if ellipsis >= 0 {
				return netip.Addr{}, false
			}
			ellipsis = i
			l = l[1:]
		} else if len(l) == 0 {
			return netip.Addr{}, false
		}
	}
	if len(l) != 0 {
		return netip.Addr{}, false
	}
	if i < 16 {
		if ellipsis < 0 {
			return netip.Addr{}, false
		}
		n := 16 - i
		copy(ip[ellipsis+n:], ip[ellipsis:i])
		clear(ip[ellipsis : ellipsis+n])
	} else if ellipsis >= 0 {
		return netip.Addr{}, false
	}
	return netip.AddrFrom16(ip), true
}
