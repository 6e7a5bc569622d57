package resolver

import (
	"bytes"
	"context"
	"math/rand/v2"
	"net/netip"
	"time"

	"github.com/nodedns/nodedns/internal/dnswire"
	"github.com/nodedns/nodedns/pkg/metrics"
	"github.com/nodedns/nodedns/pkg/zone"
)

// Server-side search (Config.Autopath, issue 4 part 2).
//
// A Pod in namespace ns with the default ClusterFirst resolv.conf (search
// <ns>.svc.<zone> svc.<zone> <zone> <node search domains>, ndots:5) that
// looks up X first asks X.<ns>.svc.<zone>. When the zone says that name does
// not exist, and the query comes from a Pod of namespace ns on this node,
// we walk the rest of that search list ourselves:
//
//	X.svc.<zone>, X.<zone>, X.<d> for each node search domain d, X.
//
// The first candidate that exists (NOERROR, with or without records of the
// asked type: A and AAAA therefore always stop at the same candidate) is the
// answer: a CNAME from the asked name to it, then its answer records, with
// its rcode. Cluster candidates come from the zone and never go upstream;
// the others go through the cache and the coalesced flights like any
// forwarded query, so they are cached and shared with plain lookups.
//
// When every candidate is NXDOMAIN, or anything goes wrong on the way (an
// upstream failure, the zone not synced, no in-flight slot), the client
// gets exactly the NXDOMAIN the zone gave for the asked name, and walks its
// search list itself as it would without autopath: only the number of round
// trips ever changes, never the outcome.
//
// Only queries that Handle receives with a Sender (UDP) take this path:
// Resolve (TCP) has no client address, so TCP queries are answered from the
// zone alone. A client that fell back to TCP after a truncated autopath
// answer therefore gets the NXDOMAIN and walks its list itself. Queries with
// the DO bit (our CNAME is not signed) and type ANY are not autopathed.
//
// A Pod with its own dnsConfig (another search list or ndots) does not send
// X.<ns>.svc.<zone> for its own namespace first, or does so with a search
// list we cannot know; we only act on the exact default first suffix from a
// source whose namespace matches, which is the best we can detect.

// autopathJob is a query being autopathed. It owns copies of the query and
// of the zone's NXDOMAIN answer (sent as-is on a miss).
type autopathJob struct {
	q     dnswire.Query
	msg   []byte
	nx    []byte         // the zone's answer to the asked name
	src   metrics.Source // its metrics source (zone or search_suffix)
	xLen  int            // q.Name()[:xLen] are X's labels
	d     []byte         // the cluster domain, wire
	proto Proto
	snd   Sender
	addr  netip.AddrPort
	start time.Time
}

// autopathMatch reports whether name (lowercase wire) is X.<ns>.svc.<d>
// with X not empty, d a cluster domain and ns the namespace of the Pod at
// src; it returns len(X) in wire octets and d. It does not allocate.
func (r *Resolver) autopathMatch(name []byte, src netip.Addr) (int, []byte, bool) {
	prev, prev2 := -1, -1 // offsets of the previous two labels
	for off := 0; off < len(name) && name[off] != 0; off += int(name[off]) + 1 {
		for i, svc := range r.svc {
			if prev2 < 0 || !bytes.Equal(name[off:], svc) {
				continue
			}
			// name[prev:off] is the namespace label, name[:prev] is X.
			ns, ok := r.podNS(src)
			if !ok || string(name[prev+1:off]) != ns {
				return 0, nil, false
			}
			return prev, r.cluster[i], true
		}
		prev2, prev = prev, off
	}
	return 0, nil, false
}

// startAutopath starts the autopath of the query in s (parsed from msg),
// whose zone answer is nx, when it qualifies. It reports whether it did:
// the answer is then sent later through snd.
func (r *Resolver) startAutopath(s *Scratch, nx, msg []byte, proto Proto, snd Sender, addr netip.AddrPort, start time.Time) bool {
	q := &s.q
	if q.DO || q.Type == dnswire.TypeANY || !addr.IsValid() {
		return false
	}
	xLen, d, ok := r.autopathMatch(q.Name(), addr.Addr())
	if !ok || !r.acquire() {
		return false
	}
	j := &autopathJob{q: *q, src: s.src, xLen: xLen, d: d, proto: proto, snd: snd, addr: addr, start: start}
	buf := make([]byte, 0, len(msg)+len(nx))
	buf = append(buf, msg...)
	j.msg = buf[:len(msg):len(msg)]
	j.nx = append(buf, nx...)[len(msg):]
	go r.runAutopath(j)
	return true
}

// runAutopath walks the candidates of j and sends the answer.
func (r *Resolver) runAutopath(j *autopathJob) {
	defer r.release()
	ctx, cancel := context.WithTimeout(r.base, r.timeout)
	defer cancel()
	bp := r.bufs.Get().(*[]byte)
	out, src := r.autopath(ctx, j, (*bp)[:0])
	if out == nil {
		out, src = append((*bp)[:0], j.nx...), j.src
	}
	r.observe(out, &j.q, j.proto, src, j.start) // before: the client finds it counted
	j.snd.Send(out, j.addr)
	if cap(out) <= 64<<10 {
		*bp = out[:0]
	}
	r.bufs.Put(bp)
}

// autopathCandidates returns X's search candidates, in order, without
// duplicates or names too long.
func (r *Resolver) autopathCandidates(j *autopathJob) [][]byte {
	x := j.q.Name()[:j.xLen]
	suffixes := make([][]byte, 0, 3+len(r.search))
	suffixes = append(suffixes, r.svc[indexOf(r.cluster, j.d)], j.d)
	suffixes = append(suffixes, r.search...)
	suffixes = append(suffixes, []byte{0})
	var cands [][]byte
next:
	for _, sfx := range suffixes {
		if len(x)+len(sfx) > dnswire.MaxNameLen {
			continue
		}
		c := append(append(make([]byte, 0, len(x)+len(sfx)), x...), sfx...)
		for _, o := range cands {
			if bytes.Equal(o, c) {
				continue next
			}
		}
		cands = append(cands, c)
	}
	return cands
}

func indexOf(list [][]byte, v []byte) int {
	for i, e := range list {
		if bytes.Equal(e, v) {
			return i
		}
	}
	return 0
}

// autopath resolves j's candidates and appends the answer to dst; nil
// means no candidate exists or the walk failed: the zone's NXDOMAIN stands.
func (r *Resolver) autopath(ctx context.Context, j *autopathJob, dst []byte) ([]byte, metrics.Source) {
	zbuf := make([]byte, 0, 1024)
	for _, cand := range r.autopathCandidates(j) {
		res := r.auth.Lookup(cand, j.q.Type, zbuf[:0])
		switch res.Kind {
		case zone.KindNXDomain, zone.KindSearchSuffix:
			continue
		case zone.KindAnswer, zone.KindNoData, zone.KindChase:
			return r.autopathZone(ctx, j, cand, &res, dst)
		case zone.KindForward:
			if r.inCluster(cand) {
				continue // never upstream (SPEC R12); as good as absent
			}
			reply, ok := r.autopathUpstream(ctx, &j.q, cand)
			if !ok {
				return nil, 0
			}
			if dnswire.Rcode(reply) == dnswire.RcodeNameError {
				continue
			}
			return r.autopathReply(j, cand, reply, dst)
		default: // not synced: cannot tell
			return nil, 0
		}
	}
	return nil, 0
}

// cnameTo starts the answer records: a CNAME from the question (0xC00C) to
// target, TTL patched later. It returns the records and the offset in the
// answer of the CNAME's RDATA (target written out), for compression.
func cnameTo(q *dnswire.Query, target []byte) ([]byte, int) {
	recs := make([]byte, 0, 1024)
	recs = append(recs, 0xC0, 0x0C, 0, byte(dnswire.TypeCNAME), 0, 1, 0, 0, 0, 0,
		byte(len(target)>>8), byte(len(target)))
	recs = append(recs, target...)
	at := q.QEnd + 12
	if at > 0x3FFF {
		at = -1
	}
	return recs, at
}

// setCNAMETTL sets the CNAME's TTL (recs[0]) to the smallest of the zone's
// negative TTL for the asked name (the SOA in nx) and the TTLs of the other
// records: the CNAME holds while both the NXDOMAIN and the target do.
func setCNAMETTL(j *autopathJob, recs []byte) {
	ttl := uint32(5)
	if _, _, ns, _ := dnswire.Counts(j.nx); ns > 0 {
		if rr, _, err := dnswire.ReadRR(j.nx, j.q.QEnd); err == nil {
			ttl = rr.TTL
		}
	}
	_, off, err := dnswire.ReadRR(recs, 0)
	for err == nil && off < len(recs) {
		var rr dnswire.RR
		if rr, off, err = dnswire.ReadRR(recs, off); err == nil && rr.TTL < ttl {
			ttl = rr.TTL
		}
	}
	recs[6], recs[7], recs[8], recs[9] = byte(ttl>>24), byte(ttl>>16), byte(ttl>>8), byte(ttl)
}

// autopathZone answers j with cand, which the zone has (res).
func (r *Resolver) autopathZone(ctx context.Context, j *autopathJob, cand []byte, res *zone.Result, dst []byte) ([]byte, metrics.Source) {
	recs, at := cnameTo(&j.q, cand)
	recs, err := appendOwnedBy(recs, res.Records, int(res.An), cand, at)
	if err != nil {
		return nil, 0
	}
	setCNAMETTL(j, recs)
	an := 1 + res.An
	if res.Kind == zone.KindChase {
		// An ExternalName: follow it like a direct query would.
		cj := job{q: j.q, msg: j.msg, proto: j.proto, act: actChase, rec: recs, an: an, chase: bytes.Clone(res.Chase)}
		return r.chase(ctx, &cj, dst), metrics.SourceUpstream
	}
	a := dnswire.Answer{AA: true, Records: recs, An: an}
	return r.respond(dst, j.msg, &j.q, j.proto, &a), metrics.SourceZone
}

// autopathReply answers j with cand, whose answer from the upstream (or
// the cache) is reply.
func (r *Resolver) autopathReply(j *autopathJob, cand, reply, dst []byte) ([]byte, metrics.Source) {
	recs, _ := cnameTo(&j.q, cand)
	_, n, _, _ := dnswire.Counts(reply)
	off, err := dnswire.SkipName(reply, dnswire.HeaderLen)
	if err != nil {
		return nil, 0
	}
	off += 4
	for range n {
		if recs, off, err = dnswire.AppendRRExpanded(recs, reply, off); err != nil {
			return nil, 0
		}
	}
	setCNAMETTL(j, recs)
	a := dnswire.Answer{Rcode: dnswire.Rcode(reply), AA: true, Records: recs, An: 1 + n}
	return r.respond(dst, j.msg, &j.q, j.proto, &a), metrics.SourceUpstream
}

// autopathUpstream asks for cand (type and CD of q) through the cache and
// the flights, as a forwarded query of its own. ok is false when there is
// no usable answer (failure, timeout, an rcode other than NOERROR or
// NXDOMAIN).
func (r *Resolver) autopathUpstream(ctx context.Context, q *dnswire.Query, cand []byte) ([]byte, bool) {
	flags := dnswire.FlagRD | q.Flags&dnswire.FlagCD
	msg := dnswire.AppendQuery(make([]byte, 0, dnswire.HeaderLen+len(cand)+4+dnswire.OPTLen),
		uint16(rand.Uint32()), flags, cand, q.Type, uint16(r.udpSize), false)
	var cq dnswire.Query
	if err := dnswire.ParseQuery(msg, &cq); err != nil {
		return nil, false
	}
	var reply []byte
	if r.cache != nil {
		if out, hit, prefetch := r.cache.Get(nil, msg, &cq); hit {
			if prefetch {
				r.prefetch(&cq, msg)
			}
			reply = out
		}
	}
	if reply == nil {
		fl := r.await(&cq, msg)
		select {
		case <-fl.done:
			reply, _ = r.answer(nil, fl, msg, &cq, TCP)
		case <-ctx.Done():
			return nil, false
		}
	}
	if len(reply) < dnswire.HeaderLen || dnswire.Flags(reply)&dnswire.FlagTC != 0 {
		return nil, false
	}
	switch dnswire.Rcode(reply) {
	case dnswire.RcodeSuccess, dnswire.RcodeNameError:
		return reply, true
	}
	return nil, false
}
