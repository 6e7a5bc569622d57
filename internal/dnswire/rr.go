package dnswire

// RR locates one resource record inside a message.
type RR struct {
	NameEnd  int // offset just past the owner name
	Type     uint16
	Class    uint16
	TTL      uint32
	RDataOff int // offset of the RDATA; it is RDLen octets long
	RDLen    int
}

// SkipName returns the offset just past the (possibly compressed) name at
// off, without following pointers.
func SkipName(msg []byte, off int) (int, error) {
	n := 0
	for {
		if off >= len(msg) {
			return 0, ErrTruncated
		}
		l := int(msg[off])
		switch {
		case l == 0:
			return off + 1, nil
		case l&0xC0 == 0xC0:
			if off+2 > len(msg) {
				return 0, ErrTruncated
			}
			return off + 2, nil
		case l&0xC0 != 0:
			return 0, ErrLabel
		}
		n += l + 1
		if n+1 > MaxNameLen {
			return 0, ErrNameTooLong
		}
		off += l + 1
	}
}

// ReadRR reads the fixed part of the record at off and returns it with the
// offset of the next record.
func ReadRR(msg []byte, off int) (RR, int, error) {
	end, err := SkipName(msg, off)
	if err != nil {
		return RR{}, 0, err
	}
	if end+10 > len(msg) {
		return RR{}, 0, ErrTruncated
	}
	rr := RR{
		NameEnd:  end,
		Type:     be16(msg, end),
		Class:    be16(msg, end+2),
		TTL:      be32(msg, end+4),
		RDLen:    int(be16(msg, end+8)),
		RDataOff: end + 10,
	}
	next := rr.RDataOff + rr.RDLen
	if next > len(msg) {
		return RR{}, 0, ErrTruncated
	}
	return rr, next, nil
}

// AppendExpandedName appends the name at off to dst with every compression
// pointer followed, and returns the offset just past the name as it sits at
// off. Pointers must point backwards, each before the last, so that a loop
// cannot be followed (RFC 1035 §4.1.4 only compresses to prior names). On
// error dst is returned with nothing appended.
func AppendExpandedName(dst, msg []byte, off int) ([]byte, int, error) {
	start := len(dst)
	next := -1
	limit := off
	n := 0
	for {
		if off >= len(msg) {
			return dst[:start], 0, ErrTruncated
		}
		l := int(msg[off])
		switch {
		case l == 0:
			dst = append(dst, 0)
			if next < 0 {
				next = off + 1
			}
			return dst, next, nil
		case l&0xC0 == 0xC0:
			if off+2 > len(msg) {
				return dst[:start], 0, ErrTruncated
			}
			if next < 0 {
				next = off + 2
			}
			p := int(be16(msg, off) & 0x3FFF)
			if p >= limit {
				return dst[:start], 0, ErrPointer
			}
			limit, off = p, p
			continue
		case l&0xC0 != 0:
			return dst[:start], 0, ErrLabel
		}
		n += l + 1
		if n+1 > MaxNameLen {
			return dst[:start], 0, ErrNameTooLong
		}
		if off+1+l > len(msg) {
			return dst[:start], 0, ErrTruncated
		}
		dst = append(dst, msg[off:off+1+l]...)
		off += 1 + l
	}
}

// AppendRRExpanded appends the record at off to dst with its owner name and
// the names in its RDATA decompressed, so that the copy is valid at any
// offset of another message. Names are expanded in the types that RFC 3597
// §4 lists as compressible, and in SRV, MX-like types and RP whose names some
// servers compress; other RDATA is copied as is.
func AppendRRExpanded(dst, msg []byte, off int) ([]byte, int, error) {
	start := len(dst)
	dst, nameEnd, err := AppendExpandedName(dst, msg, off)
	if err != nil {
		return dst[:start], 0, err
	}
	if nameEnd+10 > len(msg) {
		return dst[:start], 0, ErrTruncated
	}
	typ := be16(msg, nameEnd)
	rdOff := nameEnd + 10
	end := rdOff + int(be16(msg, nameEnd+8))
	if end > len(msg) {
		return dst[:start], 0, ErrTruncated
	}
	dst = append(dst, msg[nameEnd:nameEnd+8]...) // type, class, TTL
	lenAt := len(dst)
	dst = append(dst, 0, 0)
	prefix, names, suffix := rdataLayout(typ)
	if names == 0 {
		dst = append(dst, msg[rdOff:end]...)
	} else {
		body := msg[:end]
		p := rdOff + prefix
		if p > end {
			return dst[:start], 0, ErrTruncated
		}
		dst = append(dst, msg[rdOff:p]...)
		for range names {
			dst, p, err = AppendExpandedName(dst, body, p)
			if err != nil {
				return dst[:start], 0, err
			}
		}
		if p+suffix != end {
			return dst[:start], 0, ErrTruncated
		}
		dst = append(dst, msg[p:end]...)
	}
	rdLen := len(dst) - lenAt - 2
	if rdLen > MaxMsgLen {
		return dst[:start], 0, ErrTruncated
	}
	put16(dst, lenAt, uint16(rdLen))
	return dst, end, nil
}

// rdataLayout describes RDATA as fixed octets, then names, then fixed
// octets; names == 0 means opaque.
func rdataLayout(typ uint16) (prefix, names, suffix int) {
	switch typ {
	case TypeNS, TypeMD, TypeMF, TypeCNAME, TypeMB, TypeMG, TypeMR, TypePTR:
		return 0, 1, 0
	case TypeSOA:
		return 0, 2, 20
	case TypeMINFO, 17: // 17: RP
		return 0, 2, 0
	case TypeMX, 18, 21, 36: // AFSDB, RT, KX
		return 2, 1, 0
	case TypeSRV:
		return 6, 1, 0
	}
	return 0, 0, 0
}
