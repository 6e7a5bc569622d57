package dnswire

// Relaying an upstream reply to a client, and the TTL patches a cache makes
// on a stored one.

// Reply is the layout of a response as ParseReply found it. The records
// kept are those before the additional section's OPT record: the OPT
// record is hop-by-hop (RFC 6891 §6.1.1) and is replaced by our own on
// relay, and additional records after it are dropped (RFC 2181 §9 lets a
// responder omit additional data without setting TC), so that no byte has
// to move and compression pointers stay valid.
type Reply struct {
	Flags uint16 // the raw header flags word
	// Rcode is the 12-bit rcode: the header's 4 bits and, when the reply
	// has an OPT record, its upper 8 bits (RFC 6891 §6.1.3).
	Rcode uint16
	// QEnd is the offset just past the question.
	QEnd int
	// End is the offset just past the last record kept.
	End int
	// An, Ns and Ar count the records kept in each section (Ar without
	// the OPT record).
	An, Ns, Ar uint16
	// EDNS reports an OPT record.
	EDNS bool
}

// Records returns how many records are kept, starting at QEnd.
func (l *Reply) Records() int { return int(l.An) + int(l.Ns) + int(l.Ar) }

// ParseReply lays out reply, a response with exactly one uncompressed
// question, into l. It walks every record of the answer and authority
// sections and of the additional section up to the OPT record, checking
// their framing (not their RDATA). It does not allocate. The error, when
// not nil, is always an Error.
func ParseReply(reply []byte, l *Reply) error {
	*l = Reply{}
	if len(reply) < HeaderLen {
		return ErrShortHeader
	}
	l.Flags = be16(reply, 2)
	if l.Flags&FlagQR == 0 {
		return ErrNotResponse
	}
	if be16(reply, 4) != 1 {
		return ErrQDCount
	}
	off := HeaderLen
	for {
		if off >= len(reply) {
			return ErrTruncated
		}
		n := int(reply[off])
		switch {
		case n&0xC0 == 0xC0:
			return ErrCompressedQuestion
		case n&0xC0 != 0:
			return ErrLabel
		}
		off += n + 1
		if off-HeaderLen > MaxNameLen {
			return ErrNameTooLong
		}
		if n == 0 {
			break
		}
	}
	off += 4
	if off > len(reply) {
		return ErrTruncated
	}
	l.QEnd = off
	an, ns, ar := int(be16(reply, 6)), int(be16(reply, 8)), int(be16(reply, 10))
	for range an + ns {
		rr, next, err := ReadRR(reply, off)
		if err != nil {
			return err
		}
		if rr.Type == TypeOPT {
			return ErrBadOPT // only in the additional section (RFC 6891 §6.1.1)
		}
		off = next
	}
	l.An, l.Ns = uint16(an), uint16(ns)
	l.End = off
	for range ar {
		rr, next, err := ReadRR(reply, off)
		if err != nil {
			return err
		}
		if rr.Type == TypeOPT {
			if rr.NameEnd != off+1 {
				return ErrBadOPT // not owned by the root
			}
			l.EDNS = true
			l.Rcode = uint16(rr.TTL>>24) << 4
			break
		}
		off = next
		l.Ar++
		l.End = off
	}
	l.Rcode |= l.Flags & 0xF
	return nil
}

// AppendRelay appends reply, laid out by ParseReply into l, readdressed to
// the query q that was parsed from msg and asks the same question:
//
//   - the ID of q; QR set; opcode, RD and CD from q; AA, TC, RA and the
//     rcode from the reply; AD from the reply only when q set DO or AD
//     (RFC 6840 §5.8); Z clear;
//   - the question as q sent it (its letter case, RFC 4343);
//   - the records of reply that l keeps, as they are;
//   - when q had an OPT record, one of ours: payload ednsSize (0 means
//     DefaultUDPSize), DO from q, the reply's extended rcode bits.
//
// It reports false, with dst unchanged, when the questions differ in
// length (then they are not the same question) or l does not fit reply.
// It does not allocate when dst has room.
func AppendRelay(dst, msg []byte, q *Query, reply []byte, l *Reply, ednsSize uint16) ([]byte, bool) {
	if q.QEnd != l.QEnd || q.QEnd <= HeaderLen || q.QEnd > len(msg) || l.End > len(reply) || l.End < l.QEnd {
		return dst, false
	}
	ar := l.Ar
	if q.EDNS {
		if ar == 0xFFFF {
			return dst, false
		}
		ar++
	}
	start := len(dst)
	dst = append(dst, reply[:l.End]...)
	out := dst[start:]
	put16(out, 0, q.ID)
	put16(out, 2, relayFlags(l.Flags, q))
	put16(out, 4, 1)
	put16(out, 6, l.An)
	put16(out, 8, l.Ns)
	put16(out, 10, ar)
	copy(out[HeaderLen:q.QEnd], msg[HeaderLen:q.QEnd])
	if q.EDNS {
		dst = appendOPT(dst, l.Rcode, ednsSize, q.DO)
	}
	return dst, true
}

// relayFlags is the header flags word of a reply relayed to q.
func relayFlags(reply uint16, q *Query) uint16 {
	f := reply&(FlagAA|FlagTC|FlagRA|FlagAD|0xF) | FlagQR | q.Flags&(0xF<<11|FlagRD|FlagCD)
	if !q.DO && q.Flags&FlagAD == 0 {
		f &^= FlagAD // RFC 6840 §5.8
	}
	return f
}

// TTL patches. Each walks the n records that start at off in msg (with
// ReadRR: no name is followed, nothing allocated), rewrites the TTL of
// each one except OPT records (whose TTL field holds EDNS flags, RFC 6891
// §6.1.3), and returns the offset past the last record. On a malformed
// record it stops there and returns the error; the records before it are
// already patched.

type ttlOp uint8

const (
	ttlSub   ttlOp = iota // TTL - v, not below 0
	ttlSet                // v
	ttlClamp              // min(TTL, v)
)

// SubTTLs lowers every TTL by age, to no less than 0: the TTL of a cached
// record age seconds after it was stored (RFC 1035 §3.2.1).
func SubTTLs(msg []byte, off, n int, age uint32) (int, error) {
	return patchTTLs(msg, off, n, ttlSub, age)
}

// SetTTLs sets every TTL to ttl.
func SetTTLs(msg []byte, off, n int, ttl uint32) (int, error) {
	return patchTTLs(msg, off, n, ttlSet, ttl)
}

// ClampTTLs lowers every TTL above max to max.
func ClampTTLs(msg []byte, off, n int, max uint32) (int, error) {
	return patchTTLs(msg, off, n, ttlClamp, max)
}

func patchTTLs(msg []byte, off, n int, op ttlOp, v uint32) (int, error) {
	// ReadRR's checks, without building an RR: this runs on every hit.
	for range n {
		end, err := SkipName(msg, off)
		if err != nil {
			return off, err
		}
		if end+10 > len(msg) {
			return off, ErrTruncated
		}
		next := end + 10 + int(be16(msg, end+8))
		if next > len(msg) {
			return off, ErrTruncated
		}
		if be16(msg, end) != TypeOPT {
			t := be32(msg, end+4)
			switch op {
			case ttlSub:
				t -= min(t, v)
			case ttlSet:
				t = v
			case ttlClamp:
				t = min(t, v)
			}
			put32(msg, end+4, t)
		}
		off = next
	}
	return off, nil
}

func put32(b []byte, off int, v uint32) {
	b[off] = byte(v >> 24)
	b[off+1] = byte(v >> 16)
	b[off+2] = byte(v >> 8)
	b[off+3] = byte(v)
}
