// Package handoff passes listening sockets from a running nodedns to the
// instance that replaces it, so that an upgrade loses no query.
//
// Why pass the sockets themselves: two instances bound to one address with
// SO_REUSEPORT each own a socket of their own, and closing a UDP socket
// drops the datagrams queued in it (kubernetes/dns#310 measured seconds of
// lost DNS per upgrade; issue 5 measured 1 in 56,000 even with overlapping
// instances). A socket whose file descriptor was passed over a Unix socket
// (SCM_RIGHTS, unix(7)) is one kernel socket with two holders: when the old
// process closes its descriptor, the socket and its queue live on in the new
// process. Nothing queued is lost, and there is no moment without a reader.
//
// # Protocol
//
// The running instance listens on a SOCK_SEQPACKET Unix socket at a fixed
// path (a hostPath in the DaemonSet). Every message is one JSON object in
// one packet; SEQPACKET keeps message boundaries, so file descriptors arrive
// attached to exactly the message that names them.
//
//	new -> old  {"v":1,"op":"handoff","netns":..,"want":[{proto,addr}..]}
//	old -> new  {"v":1,"id":..,"pid":..,"netns":..,"ready":..,"serving":[..],
//	             "sockets":[{proto,addr}..]}  + SCM_RIGHTS, one fd per entry
//	new -> old  {"v":1,"op":"serving"}  (or "abort" with an error)
//
// The new instance checks every descriptor against its header (socket type,
// listening state, bound address and port) and the header against what it
// asked for; any mismatch aborts the whole handoff and it binds afresh. A
// "status" request gets the same reply without sockets: it is how an
// instance asks, at shutdown, whether another one serves its addresses.
//
// Both sides refuse peers in another network namespace (a socket serves the
// namespace it was created in) and, on the old side, peers of another user
// (SO_PEERCRED). Instances are told apart by a random ID, not the PID:
// every container may be PID 1 of its own PID namespace.
//
// # Who owns the path
//
// The newest instance. A new instance binds a temporary name next to the
// path and renames it over the path (rename(2) replaces atomically), so
// there is never a moment with no socket file, and a stale file left by a
// SIGKILLed instance needs no unlink: connecting to it fails with
// ECONNREFUSED, which counts as "no running instance", and the rename
// replaces it. Unlinking on ECONNREFUSED instead would race with another
// instance starting at the same moment (it could unlink that one's fresh
// socket). For the same reason no instance unlinks the path when it stops:
// it may be a successor's by then.
package handoff

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"sync"
	"syscall"
	"time"
)

// Key names a listening socket: its protocol and its address as configured,
// "host:port" (the host may be empty for all addresses, as in ":9253").
// Old and new instance use the same strings for the same flags, so keys
// match exactly; the descriptors themselves are checked against them too.
type Key struct {
	Proto string `json:"proto"` // "udp" or "tcp" (a TCP listener)
	Addr  string `json:"addr"`
}

func (k Key) String() string { return k.Proto + "/" + k.Addr }

// Offer is a socket a running instance hands over on request. The Server
// duplicates Conn's descriptor; Conn stays its owner's.
type Offer struct {
	Key
	Conn syscall.Conn
}

// Socket is a socket received from the running instance. The caller owns
// File (and closes it after net.FileConn or net.FileListener, which dup it).
type Socket struct {
	Key
	File *os.File
}

// Status describes a running instance.
type Status struct {
	ID    string `json:"id"` // random, per process: see InstanceID
	PID   int    `json:"pid"`
	NetNS string `json:"netns"` // e.g. "net:[4026531840]"
	Ready bool   `json:"ready"`
	// Serving are the sockets it would hand over: the ones it serves.
	Serving []Key `json:"serving,omitempty"`
}

// Serves reports whether s serves every key of keys.
func (s Status) Serves(keys []Key) bool {
	for _, k := range keys {
		found := false
		for _, sk := range s.Serving {
			if sk == k {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

var (
	// ErrNoInstance: nothing listens at the path (no file, or a stale file
	// left by an instance that was killed).
	ErrNoInstance = errors.New("handoff: no running instance")
	// ErrOtherNetNS: the instance at the path runs in another network
	// namespace; its sockets would serve that namespace, not ours.
	ErrOtherNetNS = errors.New("handoff: the running instance is in another network namespace")
	// ErrRefused: the instance answered but did not hand over (it is
	// stopping, speaks another protocol version, or refused our user).
	ErrRefused = errors.New("handoff: refused")
	// ErrMismatch: a received descriptor is not what its header says, or
	// not what was asked for. All received descriptors are closed.
	ErrMismatch = errors.New("handoff: socket mismatch")
)

const (
	version = 1
	// DefaultTimeout bounds one exchange, on both sides: a wedged peer
	// costs at most this much before the new instance binds afresh.
	DefaultTimeout = 3 * time.Second
	// DefaultServingTimeout bounds how long a successor may take to
	// confirm it serves the sockets it got.
	DefaultServingTimeout = time.Minute
	maxMsg                = 64 << 10
	// maxFDs is the kernel's SCM_MAX_FD: more descriptors than this in one
	// message fail with EINVAL.
	maxFDs = 253

	opHandoff = "handoff"
	opStatus  = "status"
	opServing = "serving"
	opAbort   = "abort"

	codeNetNS   = "netns"
	codeRefused = "refused"
)

type request struct {
	V     int    `json:"v"`
	Op    string `json:"op"`
	ID    string `json:"id,omitempty"`
	PID   int    `json:"pid,omitempty"`
	NetNS string `json:"netns,omitempty"`
	Want  []Key  `json:"want,omitempty"`
	Error string `json:"error,omitempty"` // with opAbort
}

type reply struct {
	V int `json:"v"`
	Status
	Sockets []Key  `json:"sockets,omitempty"` // one per descriptor, in order
	Code    string `json:"code,omitempty"`    // codeNetNS, codeRefused
	Error   string `json:"error,omitempty"`
}

// InstanceID is this process's random ID, the same for every call.
var InstanceID = sync.OnceValue(func() string {
	var b [8]byte
	rand.Read(b[:]) // never fails (crypto/rand)
	return hex.EncodeToString(b[:])
})
