// Package dnswire reads and writes the few parts of DNS messages that the hot
// path needs, straight on the wire bytes and without allocating: the header
// and question of a query, its EDNS0 OPT record, responses assembled from
// pre-packed records, and small patches (ID, TC) of stored messages.
//
// Nothing here keeps a reference to the buffers it is given. All functions
// are safe for concurrent use on distinct buffers.
package dnswire

// Sizes (RFC 1035 §2.3.4, §4.2.1; RFC 6891 §6.2.5).
const (
	HeaderLen   = 12
	MaxNameLen  = 255 // octets of a wire-format name, length bytes and root included
	MaxLabelLen = 63
	MinUDPSize  = 512   // the limit of a UDP reply to a query without OPT
	MaxMsgLen   = 65535 // the limit of a TCP reply (2-byte length prefix)
	// DefaultUDPSize is the EDNS0 payload size nodedns advertises and the
	// largest UDP reply it sends: 1232 avoids IP fragmentation on IPv6
	// paths with a 1280 MTU (DNS Flag Day 2020; RFC 9715).
	DefaultUDPSize = 1232
	// OPTLen is the size of an OPT record without options.
	OPTLen = 11
)

// Types, classes, opcodes and rcodes that nodedns treats specially.
const (
	TypeA     uint16 = 1
	TypeNS    uint16 = 2
	TypeMD    uint16 = 3
	TypeMF    uint16 = 4
	TypeCNAME uint16 = 5
	TypeSOA   uint16 = 6
	TypeMB    uint16 = 7
	TypeMG    uint16 = 8
	TypeMR    uint16 = 9
	TypePTR   uint16 = 12
	TypeHINFO uint16 = 13
	TypeMINFO uint16 = 14
	TypeMX    uint16 = 15
	TypeTXT   uint16 = 16
	TypeAAAA  uint16 = 28
	TypeSRV   uint16 = 33
	TypeOPT   uint16 = 41
	TypeIXFR  uint16 = 251
	TypeAXFR  uint16 = 252
	TypeMAILB uint16 = 253
	TypeMAILA uint16 = 254
	TypeANY   uint16 = 255

	ClassIN uint16 = 1

	OpcodeQuery uint8 = 0

	RcodeSuccess        uint16 = 0
	RcodeFormatError    uint16 = 1
	RcodeServerFailure  uint16 = 2
	RcodeNameError      uint16 = 3
	RcodeNotImplemented uint16 = 4
	RcodeRefused        uint16 = 5
	RcodeBadVers        uint16 = 16 // extended: needs the OPT record (RFC 6891 §6.1.3)
)

// Header flag bits (RFC 1035 §4.1.1, RFC 4035 §3.2.2).
const (
	FlagQR uint16 = 1 << 15
	FlagAA uint16 = 1 << 10
	FlagTC uint16 = 1 << 9
	FlagRD uint16 = 1 << 8
	FlagRA uint16 = 1 << 7
	FlagAD uint16 = 1 << 5
	FlagCD uint16 = 1 << 4
)
