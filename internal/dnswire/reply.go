package dnswire

// Answer is what a response adds to the query it answers.
type Answer struct {
	// Rcode is the 12-bit rcode; values above 15 need the query's OPT record
	// to carry their upper 8 bits (RFC 6891 §6.1.3).
	Rcode uint16
	AA    bool
	// Records are packed resource records in section order, An answer
	// records, then Ns authority records, then Ar additional records.
	// Names in them may only point into the header and question.
	Records []byte
	An      uint16
	Ns      uint16
	Ar      uint16
	// EDNSSize is the payload size of our OPT record; 0 means
	// DefaultUDPSize.
	EDNSSize uint16
}

// AppendResponse appends to dst the response to q, which was parsed from msg:
// header (ID, opcode, RD and CD from the query; QR, RA, AA, rcode), the
// question copied verbatim from msg, a.Records, and an OPT record when the
// query had one (RFC 6891 §6.1.1; DO copied per RFC 3225 §3). When the
// response would be longer than limit octets it appends AppendTruncated
// instead. It does not allocate when dst has room.
func AppendResponse(dst, msg []byte, q *Query, a *Answer, limit int) []byte {
	qs := question(msg, q)
	size := HeaderLen + len(qs) + len(a.Records)
	ar := int(a.Ar)
	if q.EDNS {
		size += OPTLen
		ar++
	}
	if size > limit || size > MaxMsgLen || ar > 0xFFFF {
		return AppendTruncated(dst, msg, q, a)
	}
	dst = appendHeader(dst, len(qs) != 0, q.ID, replyFlags(q, a), a.An, a.Ns, uint16(ar))
	dst = append(dst, qs...)
	dst = append(dst, a.Records...)
	if q.EDNS {
		dst = appendOPT(dst, a.Rcode, a.EDNSSize, q.DO)
	}
	return dst
}

// AppendTruncated appends header, question and OPT (when the query had
// one) with TC set and no records: the client is to retry over TCP
// (RFC 2181 §9, RFC 7766 §5).
func AppendTruncated(dst, msg []byte, q *Query, a *Answer) []byte {
	var ar uint16
	if q.EDNS {
		ar = 1
	}
	qs := question(msg, q)
	dst = appendHeader(dst, len(qs) != 0, q.ID, replyFlags(q, a)|FlagTC, 0, 0, ar)
	dst = append(dst, qs...)
	if q.EDNS {
		dst = appendOPT(dst, a.Rcode, a.EDNSSize, q.DO)
	}
	return dst
}

// AppendQuery appends a query for name (uncompressed wire format), qtype
// and class IN with the given header flags. When ednsSize is not 0 it adds
// an OPT record with that payload size and the DO bit.
func AppendQuery(dst []byte, id, flags uint16, name []byte, qtype uint16, ednsSize uint16, do bool) []byte {
	var ar byte
	if ednsSize != 0 {
		ar = 1
	}
	dst = append(dst, byte(id>>8), byte(id), byte(flags>>8), byte(flags), 0, 1, 0, 0, 0, 0, 0, ar)
	dst = append(dst, name...)
	dst = append(dst, byte(qtype>>8), byte(qtype), 0, byte(ClassIN))
	if ednsSize != 0 {
		dst = appendOPT(dst, 0, ednsSize, do)
	}
	return dst
}

// question returns the question of msg as q located it; none when q has
// no question or does not fit msg.
func question(msg []byte, q *Query) []byte {
	if q.QEnd <= HeaderLen || q.QEnd > len(msg) {
		return nil
	}
	return msg[HeaderLen:q.QEnd]
}

func replyFlags(q *Query, a *Answer) uint16 {
	f := FlagQR | FlagRA | q.Flags&(0xF<<11|FlagRD|FlagCD) | a.Rcode&0xF
	if a.AA {
		f |= FlagAA
	}
	return f
}

func appendHeader(dst []byte, hasQuestion bool, id, flags, an, ns, ar uint16) []byte {
	var qd byte
	if hasQuestion {
		qd = 1
	}
	return append(dst,
		byte(id>>8), byte(id), byte(flags>>8), byte(flags),
		0, qd, byte(an>>8), byte(an), byte(ns>>8), byte(ns), byte(ar>>8), byte(ar))
}

// appendOPT appends an OPT record: root owner, our payload size as class,
// the upper rcode bits, version 0 and DO in the TTL, no options.
func appendOPT(dst []byte, rcode, size uint16, do bool) []byte {
	if size == 0 {
		size = DefaultUDPSize
	}
	var flags byte
	if do {
		flags = 0x80
	}
	return append(dst, 0, 0, byte(TypeOPT), byte(size>>8), byte(size),
		byte(rcode>>4), 0, flags, 0, 0, 0)
}
