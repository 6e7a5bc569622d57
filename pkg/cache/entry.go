package cache

import (
	"github.com/nodedns/nodedns/internal/dnswire"
)

// entry is what the cache holds for one key. msg, layout, question, flags
// and the times are set at creation and never change, so that a hit can
// copy msg after releasing the shard's lock; the fields below them are
// guarded by the shard's mutex.
type entry struct {
	// msg is the stored answer: the upstream's reply up to its OPT record
	// (layout.End), TTLs capped to ttl, question lowercased. nil for a
	// failure mark, which only says "SERVFAIL until failUntil".
	msg    []byte
	layout dnswire.Reply
	// question is the key's lowercase name, type and class (aliasing msg
	// when there is one): compared on every hit.
	question []byte
	flags    uint8 // keyDO, keyCD

	stored   int64 // cache clock, ns
	expires  int64 // stored + TTL
	staleEnd int64 // expires + StaleWindow

	hits       uint32
	prefetched bool  // Get asked for a refresh already
	failUntil  int64 // a failed resolution: answer without asking until then
}

// matches reports whether e is the entry of q's key: the check that makes
// a hash collision a miss.
func (e *entry) matches(q *dnswire.Query, fl uint8) bool {
	name := q.Name()
	qs := e.question
	return e.flags == fl && len(qs) == len(name)+4 &&
		string(qs[:len(name)]) == string(name) &&
		be16(qs, len(name)) == q.Type && be16(qs, len(name)+2) == q.Class
}

// ttl returns how many seconds reply (laid out in l) may be cached, 0 when
// it must not be:
//
//   - NOERROR with answers: the smallest TTL of the answer and authority
//     records, capped by maxTTL;
//   - NXDOMAIN, or NOERROR without answers (NODATA): only with an SOA in
//     the authority section (RFC 2308 §5), whose TTL counts as the
//     smaller of its TTL and its MINIMUM field (RFC 2308 §5), capped by
//     maxNeg;
//   - anything else (other rcodes, TC set, a record with TTL 0): 0.
//
// A TTL with the top bit set counts as large, not 0 (RFC 8767 §4), and is
// capped like any other.
func ttl(reply []byte, l *dnswire.Reply, maxTTL, maxNeg uint32) uint32 {
	if l.Flags&dnswire.FlagTC != 0 {
		return 0
	}
	var negative bool
	switch l.Rcode {
	case dnswire.RcodeSuccess:
		negative = l.An == 0
	case dnswire.RcodeNameError:
		negative = true
	default:
		return 0
	}
	least := ^uint32(0)
	soa := false
	off := l.QEnd
	for i := range int(l.An) + int(l.Ns) {
		rr, next, err := dnswire.ReadRR(reply, off)
		if err != nil {
			return 0
		}
		t := rr.TTL
		if i >= int(l.An) && rr.Type == dnswire.TypeSOA && rr.RDLen >= 22 {
			soa = true
			t = min(t, be32(reply, rr.RDataOff+rr.RDLen-4)) // MINIMUM: the last field
		}
		least = min(least, t)
		off = next
	}
	if negative {
		if !soa {
			return 0
		}
		return min(least, maxNeg)
	}
	return min(least, maxTTL)
}

// questionIs reports whether the question of reply (laid out in l) is q's:
// the name compared ignoring ASCII case (RFC 4343), type and class.
func questionIs(reply []byte, l *dnswire.Reply, q *dnswire.Query) bool {
	name := q.Name()
	qs := reply[dnswire.HeaderLen:l.QEnd]
	if len(qs) != len(name)+4 || be16(qs, len(name)) != q.Type || be16(qs, len(name)+2) != q.Class {
		return false
	}
	for i, c := range qs[:len(name)] {
		if c-'A' < 26 {
			c += 'a' - 'A'
		}
		if c != name[i] {
			return false
		}
	}
	return true
}

// newEntry stores reply (laid out in l), whose TTLs are capped to ttl
// already, as the entry of q's key, now.
func (c *Cache) newEntry(reply []byte, l *dnswire.Reply, fl uint8, ttl uint32, now int64) *entry {
	m := make([]byte, l.End)
	copy(m, reply)
	m[0], m[1] = 0, 0
	nameEnd := l.QEnd - 4
	for i := dnswire.HeaderLen; i < nameEnd; i++ {
		if c := m[i]; c-'A' < 26 {
			m[i] = c + ('a' - 'A') // length octets are below 64: never changed
		}
	}
	e := &entry{msg: m, layout: *l, question: m[dnswire.HeaderLen:l.QEnd], flags: fl, stored: now}
	e.expires = now + int64(ttl)*1e9
	e.staleEnd = e.expires + c.stale
	return e
}

// newFailMark is the entry of q's key that only says SERVFAIL until
// failUntil.
func newFailMark(q *dnswire.Query, fl uint8, failUntil int64) *entry {
	name := q.Name()
	qs := make([]byte, len(name)+4)
	n := copy(qs, name)
	qs[n], qs[n+1], qs[n+2], qs[n+3] = byte(q.Type>>8), byte(q.Type), byte(q.Class>>8), byte(q.Class)
	return &entry{question: qs, flags: fl, failUntil: failUntil}
}

func be16(b []byte, off int) uint16 { return uint16(b[off])<<8 | uint16(b[off+1]) }

func be32(b []byte, off int) uint32 {
	return uint32(b[off])<<24 | uint32(b[off+1])<<16 | uint32(b[off+2])<<8 | uint32(b[off+3])
}
