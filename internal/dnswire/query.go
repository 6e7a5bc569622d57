package dnswire

// Error is the reason ParseQuery rejected a message. Its Rcode method tells
// the caller whether to answer (and with which rcode) or to drop.
type Error uint8

// Parse errors. ErrShortHeader and ErrResponse mean "drop"; ErrOpcode means
// NOTIMP; every other one means FORMERR.
const (
	ErrShortHeader        Error = iota + 1 // fewer than 12 octets: nothing to answer
	ErrResponse                            // QR=1: a response was sent to us
	ErrOpcode                              // opcode other than QUERY
	ErrQDCount                             // QDCOUNT != 1 (RFC 9619)
	ErrTruncated                           // a name, question or record runs past the end
	ErrCompressedQuestion                  // compression pointer in the question name
	ErrLabel                               // label length > 63 or reserved label type (RFC 6891 §5)
	ErrNameTooLong                         // name longer than 255 octets (RFC 1035 §3.1)
	ErrBadOPT                              // OPT not owned by root, outside the additional section, or malformed options (RFC 6891 §6.1.1, §7)
	ErrMultipleOPT                         // more than one OPT (RFC 6891 §6.1.1)
	ErrPointer                             // compression pointer that does not point backwards
	ErrNotResponse                         // ParseReply: QR=0, the message is not a response
)

var errText = [...]string{
	ErrShortHeader:        "dnswire: message shorter than a header",
	ErrResponse:           "dnswire: message is a response",
	ErrOpcode:             "dnswire: opcode not implemented",
	ErrQDCount:            "dnswire: question count is not 1",
	ErrTruncated:          "dnswire: message truncated",
	ErrCompressedQuestion: "dnswire: compressed question name",
	ErrLabel:              "dnswire: bad label length or type",
	ErrNameTooLong:        "dnswire: name longer than 255 octets",
	ErrBadOPT:             "dnswire: malformed OPT record",
	ErrMultipleOPT:        "dnswire: more than one OPT record",
	ErrPointer:            "dnswire: bad compression pointer",
	ErrNotResponse:        "dnswire: message is not a response",
}

func (e Error) Error() string {
	if int(e) < len(errText) && errText[e] != "" {
		return errText[e]
	}
	return "dnswire: unknown error"
}

// Rcode returns the rcode to answer a message that failed with e, and false
// when no answer must be sent: a message without a full header cannot be
// answered, and answering a response could start a loop between two servers
// (RFC 1035 §7.3 discards unsolicited responses).
func (e Error) Rcode() (rcode uint16, reply bool) {
	switch e {
	case ErrShortHeader, ErrResponse:
		return 0, false
	case ErrOpcode:
		return RcodeNotImplemented, true // RFC 1035 §4.1.1
	default:
		return RcodeFormatError, true
	}
}

// Query is a parsed query. Reuse one per goroutine: ParseQuery overwrites
// every field and never allocates. The zero value is ready to use.
type Query struct {
	ID      uint16
	Flags   uint16 // the raw flags word of the header
	QDCount uint16
	ANCount uint16
	NSCount uint16
	ARCount uint16

	// Type and Class of the question.
	Type  uint16
	Class uint16
	// QEnd is the offset just past the question: msg[HeaderLen:QEnd] is the
	// question as sent (its case intact). It is 0 when the question was not
	// parsed, and then a reply carries no question.
	QEnd int

	// EDNS reports an OPT record in the additional section (RFC 6891); the
	// next three fields are meaningful only then.
	EDNS    bool
	UDPSize uint16 // the requestor's payload size as sent
	Version uint8
	DO      bool // DNSSEC OK (RFC 3225)

	nameLen int
	name    [MaxNameLen]byte
}

// Name returns the question name in lowercase uncompressed wire format,
// root label included. It aliases q: valid until the next ParseQuery.
func (q *Query) Name() []byte { return q.name[:q.nameLen] }

// Opcode returns the header opcode.
func (q *Query) Opcode() uint8 { return uint8(q.Flags>>11) & 0xF }

// RD, CD and AD report the header bits of the same name.
func (q *Query) RD() bool { return q.Flags&FlagRD != 0 }
func (q *Query) CD() bool { return q.Flags&FlagCD != 0 }
func (q *Query) AD() bool { return q.Flags&FlagAD != 0 }

// UDPLimit is the largest UDP reply the requestor accepts, capped at max:
// 512 without EDNS (RFC 1035 §4.2.1), else its payload size, raised to 512
// when smaller (RFC 6891 §6.2.5) and capped at max (our own limit).
func (q *Query) UDPLimit(max int) int {
	if max < MinUDPSize {
		max = MinUDPSize
	}
	if !q.EDNS {
		return MinUDPSize
	}
	n := int(q.UDPSize)
	if n < MinUDPSize {
		n = MinUDPSize
	}
	return min(n, max)
}

// ParseQuery parses msg's header, question and OPT record into q. Records in
// the answer and authority sections are skipped with bounds checks (their
// owner names' compression pointers checked too); other additional records
// too. The error, when not nil, is always an Error.
//
// Whatever the error, q's header fields are valid once msg holds a header,
// and q.QEnd is set when the question parsed, so that an error reply can echo
// it. q.EDNS is set when an OPT record was read, so that the error reply
// carries one: also for ErrOpcode, ErrMultipleOPT, and ErrBadOPT caused by
// malformed options.
func ParseQuery(msg []byte, q *Query) error {
	q.QEnd = 0
	q.nameLen = 0
	q.Type, q.Class = 0, 0
	q.EDNS, q.UDPSize, q.Version, q.DO = false, 0, 0, false
	if len(msg) < HeaderLen {
		return ErrShortHeader
	}
	q.ID = be16(msg, 0)
	q.Flags = be16(msg, 2)
	q.QDCount = be16(msg, 4)
	q.ANCount = be16(msg, 6)
	q.NSCount = be16(msg, 8)
	q.ARCount = be16(msg, 10)
	if q.Flags&FlagQR != 0 {
		return ErrResponse
	}
	if q.QDCount != 1 {
		if q.Opcode() != OpcodeQuery {
			return ErrOpcode
		}
		return ErrQDCount
	}
	off, err := q.parseQuestion(msg)
	if q.Opcode() != OpcodeQuery {
		if err == nil {
			_ = q.parseRecords(msg, off) // for the OPT of the NOTIMP reply
		}
		return ErrOpcode
	}
	if err != nil {
		return err
	}
	return q.parseRecords(msg, off)
}

// parseQuestion lowercases the question name into q.name and reads type and
// class; it returns the offset past the question.
func (q *Query) parseQuestion(msg []byte) (int, error) {
	// First walk the labels, then copy and lowercase the whole name in one
	// tight loop: length octets are below 64 and so never change.
	off := HeaderLen
	for {
		if off >= len(msg) {
			return 0, ErrTruncated
		}
		l := int(msg[off])
		switch {
		case l&0xC0 == 0xC0:
			return 0, ErrCompressedQuestion
		case l&0xC0 != 0:
			return 0, ErrLabel
		}
		off += l + 1
		if off-HeaderLen > MaxNameLen {
			return 0, ErrNameTooLong
		}
		if l == 0 {
			break
		}
	}
	if off+4 > len(msg) {
		return 0, ErrTruncated
	}
	n := copy(q.name[:], msg[HeaderLen:off])
	name := q.name[:n]
	for i, c := range name {
		if c-'A' < 26 {
			name[i] = c + ('a' - 'A')
		}
	}
	q.nameLen = n
	q.Type = be16(msg, off)
	q.Class = be16(msg, off+2)
	off += 4
	q.QEnd = off
	return off, nil
}

// parseRecords skips the answer and authority sections and reads the OPT
// record of the additional section.
func (q *Query) parseRecords(msg []byte, off int) error {
	other := int(q.ANCount) + int(q.NSCount)
	total := other + int(q.ARCount)
	for i := 0; i < total; i++ {
		// Owner names are never used, but a malformed one makes the
		// message malformed: FORMERR, not an answer.
		if err := checkName(msg, off); err != nil {
			return err
		}
		rr, next, err := ReadRR(msg, off)
		if err != nil {
			return err
		}
		if rr.Type == TypeOPT {
			if i < other || rr.NameEnd != off+1 || msg[off] != 0 {
				return ErrBadOPT
			}
			if q.EDNS {
				return ErrMultipleOPT
			}
			q.EDNS = true
			q.UDPSize = rr.Class
			q.Version = uint8(rr.TTL >> 16)
			q.DO = rr.TTL&(1<<15) != 0
			if !validOptions(msg[rr.RDataOff:next]) {
				// EDNS stays set: the FORMERR must carry an OPT (RFC 6891 §7).
				return ErrBadOPT
			}
		}
		off = next
	}
	// Octets after the last record are ignored, as most servers do.
	return nil
}

// checkName walks the possibly compressed name at off without copying it:
// every pointer must point before the previous one (RFC 1035 §4.1.4 only
// compresses to prior names), so loops and pointers past the end are found.
func checkName(msg []byte, off int) error {
	limit, n := off, 0
	for {
		if off >= len(msg) {
			return ErrTruncated
		}
		l := int(msg[off])
		switch {
		case l == 0:
			return nil
		case l&0xC0 == 0xC0:
			if off+2 > len(msg) {
				return ErrTruncated
			}
			p := int(be16(msg, off) & 0x3FFF)
			if p >= limit {
				return ErrPointer
			}
			limit, off = p, p
			continue
		case l&0xC0 != 0:
			return ErrLabel
		}
		n += l + 1
		if n+1 > MaxNameLen {
			return ErrNameTooLong
		}
		off += l + 1
	}
}

// validOptions reports whether rdata is a well-formed sequence of EDNS0
// options (RFC 6891 §6.1.2: code, length, data).
func validOptions(rdata []byte) bool {
	for len(rdata) > 0 {
		if len(rdata) < 4 {
			return false
		}
		l := int(be16(rdata, 2))
		if 4+l > len(rdata) {
			return false
		}
		rdata = rdata[4+l:]
	}
	return true
}

func be16(b []byte, off int) uint16 { return uint16(b[off])<<8 | uint16(b[off+1]) }

func be32(b []byte, off int) uint32 {
	return uint32(b[off])<<24 | uint32(b[off+1])<<16 | uint32(b[off+2])<<8 | uint32(b[off+3])
}

func put16(b []byte, off int, v uint16) {
	b[off] = byte(v >> 8)
	b[off+1] = byte(v)
}
