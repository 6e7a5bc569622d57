package hostile

import (
	"encoding/binary"
	"strings"
)

// Raw packet builders: the corpus needs messages that no DNS library would
// produce.

// hdr is a 12-octet header.
func hdr(id, flags, qd, an, ns, ar uint16) []byte {
	b := make([]byte, 12)
	binary.BigEndian.PutUint16(b[0:], id)
	binary.BigEndian.PutUint16(b[2:], flags)
	binary.BigEndian.PutUint16(b[4:], qd)
	binary.BigEndian.PutUint16(b[6:], an)
	binary.BigEndian.PutUint16(b[8:], ns)
	binary.BigEndian.PutUint16(b[10:], ar)
	return b
}

const (
	flagRD = 1 << 8
	flagQR = 1 << 15
)

// opcode returns the flags word with opcode op and RD.
func opcode(op uint16) uint16 { return op<<11 | flagRD }

// wname is the uncompressed wire form of a dotted name ("" or "." is the root).
func wname(name string) []byte {
	var b []byte
	for l := range strings.SplitSeq(strings.TrimSuffix(name, "."), ".") {
		if l == "" {
			continue
		}
		b = append(b, byte(len(l)))
		b = append(b, l...)
	}
	return append(b, 0)
}

// q is a question: name (wire form), type, class.
func q(name []byte, qtype, class uint16) []byte {
	return binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(append([]byte(nil), name...), qtype), class)
}

// rr is a resource record with a wire-form owner.
func rr(owner []byte, typ, class uint16, ttl uint32, rdata []byte) []byte {
	b := append([]byte(nil), owner...)
	b = binary.BigEndian.AppendUint16(b, typ)
	b = binary.BigEndian.AppendUint16(b, class)
	b = binary.BigEndian.AppendUint32(b, ttl)
	b = binary.BigEndian.AppendUint16(b, uint16(len(rdata)))
	return append(b, rdata...)
}

// opt is an OPT record (RFC 6891): owner, payload size, version, options.
func opt(owner []byte, size uint16, version uint8, options []byte) []byte {
	return rr(owner, 41, size, uint32(version)<<16, options)
}

// option is one EDNS option: code, length, data.
func option(code uint16, data []byte) []byte {
	b := binary.BigEndian.AppendUint16(nil, code)
	b = binary.BigEndian.AppendUint16(b, uint16(len(data)))
	return append(b, data...)
}

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

// frame adds the TCP length prefix (RFC 1035 §4.2.2).
func frame(msg []byte) []byte {
	return append(binary.BigEndian.AppendUint16(nil, uint16(len(msg))), msg...)
}

// label returns a label of n octets, n <= 255 (longer than 63 is invalid).
func label(n int) string { return strings.Repeat("a", n) }
