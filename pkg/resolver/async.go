package resolver

import (
	"bytes"
	"context"
	"log/slog"
	"net/netip"

	"github.com/nodedns/nodedns/internal/dnswire"
	"github.com/nodedns/nodedns/pkg/zone"
)

// job is a query finished away from the read loop. It owns copies of
// everything it needs from the read buffers.
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

// runAsync finishes j on its own goroutine and sends the answer.
func (r *Resolver) runAsync(j *job) {
	defer r.release()
	ctx, cancel := context.WithTimeout(r.base, r.timeout)
	defer cancel()
	bp := r.bufs.Get().(*[]byte)
	out := r.finish(ctx, j, (*bp)[:0])
	if out != nil {
		j.snd.Send(out, j.addr)
	}
	if cap(out) <= 64<<10 {
		*bp = out[:0] // keep the buffer if it grew, within reason
	}
	r.bufs.Put(bp)
}

// finish does the network part of j and appends the answer to dst.
func (r *Resolver) finish(ctx context.Context, j *job, dst []byte) []byte {
	if j.act == actChase {
		return r.chase(ctx, j, dst)
	}
	return r.forward(ctx, j, dst)
}

// forward sends the client's query upstream and relays the reply with the
// client's ID, truncated (TC) if it exceeds what the client takes over UDP.
func (r *Resolver) forward(ctx context.Context, j *job, dst []byte) []byte {
	// Seam for pkg/cache: a miss was seen in local(); identical misses are
	// to be coalesced by the Upstream.
	reply, err := r.up.Exchange(ctx, j.msg)
	if err == nil && !sameQuestion(reply, j.msg, j.q.QEnd) {
		err = errMismatch
	}
	if err != nil {
		r.log.LogAttrs(ctx, slog.LevelDebug, "upstream exchange failed",
			slog.String("name", nameString(j.q.Name())), slog.Int("qtype", int(j.q.Type)), slog.Any("err", err))
		return r.respond(dst, j.msg, &j.q, j.proto, &dnswire.Answer{Rcode: dnswire.RcodeServerFailure})
	}
	if r.cache != nil {
		r.cache.Set(j.msg, &j.q, reply)
	}
	dnswire.SetID(reply, j.q.ID)
	start := len(dst)
	return r.fit(append(dst, reply...), start, j.msg, &j.q, j.proto)
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
