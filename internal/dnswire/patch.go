package dnswire

// Patches of a stored or forwarded message in place. Each is a no-op (or
// returns 0) on a message shorter than a header.

// ID returns the message ID.
func ID(msg []byte) uint16 {
	if len(msg) < HeaderLen {
		return 0
	}
	return be16(msg, 0)
}

// SetID sets the message ID.
func SetID(msg []byte, id uint16) {
	if len(msg) >= HeaderLen {
		put16(msg, 0, id)
	}
}

// Flags returns the header flags word.
func Flags(msg []byte) uint16 {
	if len(msg) < HeaderLen {
		return 0
	}
	return be16(msg, 2)
}

// SetTC sets the TC (truncated) bit.
func SetTC(msg []byte) {
	if len(msg) >= HeaderLen {
		msg[2] |= byte(FlagTC >> 8)
	}
}

// Rcode returns the 4-bit header rcode.
func Rcode(msg []byte) uint16 { return Flags(msg) & 0xF }

// Counts returns QDCOUNT, ANCOUNT, NSCOUNT and ARCOUNT.
func Counts(msg []byte) (qd, an, ns, ar uint16) {
	if len(msg) < HeaderLen {
		return 0, 0, 0, 0
	}
	return be16(msg, 4), be16(msg, 6), be16(msg, 8), be16(msg, 10)
}
