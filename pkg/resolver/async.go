package resolver

import (
	"bytes"
	"context"
	"net/netip"
	"time"

	"github.com/nodedns/nodedns/internal/dnswire"
	"github.com/nodedns/nodedns/pkg/metrics"
	"github.com/nodedns/nodedns/pkg/zone"
)

// job is a query finished away from the read loop: an ExternalName chase,
// or a forwarded query waiting on a flight. It owns copies of everything it
// needs from the read buffers.
type job struct {
	q     dnswire.Query
	msg   []byte
	proto Proto
	act   action
	rec   []byte // actChase: the records of the first lookup
	an    uint16 // actChase: how many of them are answers
	chase []byte // actChase: the CNAME target
	snd   Sender
	addr  netip.AddrPort
	start time.Time // when the query was read, for the duration metric
}

// newJob copies the query, and for a chase the records and target, into
// one allocation.
func newJob(q *dnswire.Query, msg []byte, proto Proto, act action, res *zone.Result) *job {
	j := &job{q: *q, proto: proto, act: act}
	n := len(msg)
	if act == actChase {
		n += len(res.Records) + len(res.Chase)
	}
	buf := make([]byte, 0, n)
	buf = append(buf, msg...)
	j.msg = buf[:len(msg):len(msg)]
	if act == actChase {
		buf = append(buf, res.Records...)
		j.rec = buf[len(msg):len(buf):len(buf)]
		buf = append(buf, res.Chase...)
		j.chase = buf[len(msg)+len(res.Records):]
		j.an = res.An
	}
	return j
}

// runAsync chases j on its own goroutine and sends the answer. (Forwarded
// queries join a flight instead: flight.go.)
func (r *Resolver) runAsync(j *job) {
	defer r.release()
	ctx, cancel := context.WithTimeout(r.base, r.timeout)
	defer cancel()
	bp := r.bufs.Get().(*[]byte)
	out := r.chase(ctx, j, (*bp)[:0])
	if out != nil {
		j.snd.Send(out, j.addr)
		r.observe(out, &j.q, j.proto, metrics.SourceUpstream, j.start, j.addr)
	}
	if cap(out) <= 64<<10 {
		*bp = out[:0] // keep the buffer if it grew, within reason
	}
	r.bufs.Put(bp)
}

type mismatchError struct{}

func (mismatchError) Error() string { return "upstream reply does not match the query" }

var errMismatch error = mismatchError{}

// sameQuestion checks what the Upstream promises: a response to query
// whose question (ending at qend) is the query's, the name compared
// case-insensitively as 0x20 randomization may change its case.
func sameQuestion(reply, query []byte, qend int) bool {
	if len(reply) < qend || dnswire.Flags(reply)&dnswire.FlagQR == 0 {
		return false
	}
	if qd, _, _, _ := dnswire.Counts(reply); qd != 1 {
		return false
	}
	nameEnd := qend - 4
	return asciiEqualFold(reply[dnswire.HeaderLen:nameEnd], query[dnswire.HeaderLen:nameEnd]) &&
		bytes.Equal(reply[nameEnd:qend], query[nameEnd:qend])
}

// asciiEqualFold compares wire names ignoring ASCII case only (RFC 4343).
func asciiEqualFold(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i, c := range a {
		d := b[i]
		if c-'A' < 26 {
			c += 'a' - 'A'
		}
		if d-'A' < 26 {
			d += 'a' - 'A'
		}
		if c != d {
			return false
		}
	}
	return true
}

// nameString renders a wire name for logs (not on the hot path).
func nameString(name []byte) string {
	var b []byte
	for off := 0; off < len(name) && name[off] != 0; off += int(name[off]) + 1 {
		end := min(off+1+int(name[off]), len(name))
		b = append(b, name[off+1:end]...)
		b = append(b, '.')
	}
	if len(b) == 0 {
		return "."
	}
	return string(b)
}
