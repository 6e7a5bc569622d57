package resolver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"

	"github.com/nodedns/nodedns/internal/dnswire"
	"github.com/nodedns/nodedns/pkg/zone"
)

// chase answers an ExternalName (SPEC R9): the CNAME from the zone, then
// the records of its target, followed through the zone while the targets
// are ours and through the upstream once one is not, at most MaxChase hops.
// The rcode is the last name's (RFC 6604 §3).
func (r *Resolver) chase(ctx context.Context, j *job, dst []byte) []byte {
	// Records go right after the question, at offset base of the answer.
	base := j.q.QEnd
	end, err := sectionEnd(j.rec, int(j.an))
	if err != nil {
		return r.chaseFailed(ctx, j, dst, err)
	}
	recs := append(make([]byte, 0, 1024), j.rec[:end]...)
	an := j.an
	target := j.chase
	targetAt := findTarget(recs, 0, base, target)
	rcode := dnswire.RcodeSuccess
	zbuf := make([]byte, 0, 1024)
	for hop := 1; ; hop++ {
		if hop > r.maxChase {
			rcode = dnswire.RcodeServerFailure // a CNAME loop, or too long a chain
			break
		}
		res := r.auth.Lookup(target, j.q.Type, zbuf[:0])
		if res.Kind == zone.KindAnswer || res.Kind == zone.KindChase {
			n0 := len(recs)
			if recs, err = appendOwnedBy(recs, res.Records, int(res.An), target, targetAt); err != nil {
				return r.chaseFailed(ctx, j, dst, err)
			}
			an += res.An
			if res.Kind == zone.KindAnswer {
				break
			}
			// Copy: Chase may alias zbuf, which the next Lookup overwrites.
			target = bytes.Clone(res.Chase)
			targetAt = findTarget(recs, n0, base, target)
			continue
		}
		switch res.Kind {
		case zone.KindNoData:
		case zone.KindNXDomain, zone.KindSearchSuffix:
			rcode = dnswire.RcodeNameError
		case zone.KindForward:
			if recs, an, rcode, err = r.chaseUpstream(ctx, j, target, recs, an); err != nil {
				return r.chaseFailed(ctx, j, dst, err)
			}
		default: // KindNotSynced
			rcode = dnswire.RcodeServerFailure
		}
		break
	}
	a := dnswire.Answer{Rcode: rcode, AA: true, Records: recs, An: an}
	return r.respond(dst, j.msg, &j.q, j.proto, &a)
}

func (r *Resolver) chaseFailed(ctx context.Context, j *job, dst []byte, err error) []byte {
	r.log.LogAttrs(ctx, slog.LevelDebug, "chasing CNAME failed",
		slog.String("name", nameString(j.q.Name())), slog.Int("qtype", int(j.q.Type)), slog.Any("err", err))
	return r.respond(dst, j.msg, &j.q, j.proto, &dnswire.Answer{Rcode: dnswire.RcodeServerFailure})
}

// chaseUpstream asks the upstream for target and appends the answer section
// of its reply, names decompressed.
func (r *Resolver) chaseUpstream(ctx context.Context, j *job, target, recs []byte, an uint16) ([]byte, uint16, uint16, error) {
	if r.inCluster(target) {
		return recs, an, 0, errors.New("cluster name not in the zone")
	}
	// Not through the cache or a flight: the chase is rare and its answer
	// mixes zone records with these (resolver.Config.Cache).
	flags := dnswire.FlagRD | j.q.Flags&dnswire.FlagCD
	query := dnswire.AppendQuery(make([]byte, 0, 512), uint16(rand.Uint32()), flags, target, j.q.Type, uint16(r.udpSize), j.q.DO)
	reply, err := r.up.Exchange(ctx, query)
	if err != nil {
		return recs, an, 0, err
	}
	qend := len(query) - dnswire.OPTLen
	if !sameQuestion(reply, query, qend) {
		return recs, an, 0, errMismatch
	}
	rcode := dnswire.Rcode(reply)
	if rcode != dnswire.RcodeSuccess && rcode != dnswire.RcodeNameError {
		return recs, an, 0, fmt.Errorf("upstream rcode %d", rcode)
	}
	_, n, _, _ := dnswire.Counts(reply)
	off := qend // past the question, which we checked
	for range n {
		if recs, off, err = dnswire.AppendRRExpanded(recs, reply, off); err != nil {
			return recs, an, 0, err
		}
		an++
	}
	return recs, an, rcode, nil
}

// sectionEnd returns the offset in recs past its first n records.
func sectionEnd(recs []byte, n int) (int, error) {
	off := 0
	for range n {
		_, next, err := dnswire.ReadRR(recs, off)
		if err != nil {
			return 0, err
		}
		off = next
	}
	return off, nil
}

// appendOwnedBy appends the first n records of src, which come from a zone
// lookup of target: their owners that point at the question (0xC00C) are
// made to point at targetAt, an offset in the answer where target is
// written out, or are written out when there is none.
func appendOwnedBy(recs, src []byte, n int, target []byte, targetAt int) ([]byte, error) {
	off := 0
	for range n {
		rr, next, err := dnswire.ReadRR(src, off)
		if err != nil {
			return recs, err
		}
		owner := src[off:rr.NameEnd]
		switch {
		case len(owner) == 2 && owner[0] == 0xC0 && owner[1] == 0x0C:
			if targetAt >= 0 {
				recs = append(recs, 0xC0|byte(targetAt>>8), byte(targetAt))
			} else {
				recs = append(recs, target...)
			}
		case owner[len(owner)-1] != 0:
			return recs, errors.New("zone record compressed other than 0xC00C")
		default:
			recs = append(recs, owner...)
		}
		recs = append(recs, src[rr.NameEnd:next]...)
		off = next
	}
	return recs, nil
}

// findTarget returns the offset in the answer of a CNAME RDATA in
// recs[from:] equal to target (recs start at base in the answer), usable as
// a compression pointer; -1 when there is none.
func findTarget(recs []byte, from, base int, target []byte) int {
	at := -1
	for off := from; off < len(recs); {
		rr, next, err := dnswire.ReadRR(recs, off)
		if err != nil {
			return -1
		}
		if rr.Type == dnswire.TypeCNAME && asciiEqualFold(recs[rr.RDataOff:next], target) {
			at = base + rr.RDataOff
		}
		off = next
	}
	if at > 0x3FFF {
		return -1
	}
	return at
}
