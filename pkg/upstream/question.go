package upstream

import (
	"encoding/binary"
	"errors"
)

const headerLen = 12

var (
	errShort      = errors.New("message too short")
	errNotQuery   = errors.New("message is a response, not a query")
	errQDCount    = errors.New("query must have exactly one question")
	errNameLabel  = errors.New("compressed or extended label in question name")
	errNameLength = errors.New("question name longer than 255 bytes")
)

// questionEnd checks that msg is a query with exactly one question and
// returns the offset just past it (name, type, class). The name must be
// uncompressed: as the first name in the message it has nothing earlier
// to point at.
func questionEnd(msg []byte) (int, error) {
	if len(msg) < headerLen {
		return 0, errShort
	}
	if msg[2]&0x80 != 0 {
		return 0, errNotQuery
	}
	if binary.BigEndian.Uint16(msg[4:]) != 1 {
		return 0, errQDCount
	}
	off := headerLen
	for {
		if off >= len(msg) {
			return 0, errShort
		}
		l := int(msg[off])
		if l&0xC0 != 0 {
			return 0, errNameLabel
		}
		off += 1 + l
		if off-headerLen > 255 { // RFC 1035 3.1
			return 0, errNameLength
		}
		if l == 0 {
			break
		}
	}
	if off+4 > len(msg) {
		return 0, errShort
	}
	return off + 4, nil
}

// matches reports whether reply answers the question q (the question
// section of the query as sent: name, type, class) with ID id: QR set, one
// question, same ID, name equal ignoring ASCII case, same type and class
// (RFC 5452 9.1).
func matches(reply []byte, id uint16, q []byte) bool {
	if len(reply) < headerLen+len(q) ||
		binary.BigEndian.Uint16(reply) != id ||
		reply[2]&0x80 == 0 ||
		binary.BigEndian.Uint16(reply[4:]) != 1 {
		return false
	}
	rq := reply[headerLen : headerLen+len(q)]
	nameLen := len(q) - 4
	// Length octets are at most 63, below 'A', so folding every byte is
	// safe for the name; type and class are compared exactly.
	for i := range nameLen {
		if lower(rq[i]) != lower(q[i]) {
			return false
		}
	}
	return string(rq[nameLen:]) == string(q[nameLen:])
}

func lower(b byte) byte {
	if 'A' <= b && b <= 'Z' {
		return b + ('a' - 'A')
	}
	return b
}
