package resolver

import (
	"bytes"
	"context"
	"math/rand/v2"
	"net/netip"
	"time"

	"github.com/nodedns/nodedns/internal/dnswire"
	"github.com/nodedns/nodedns/pkg/cache"
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
// UDP queries (Handle, with a Sender) are finished on a goroutine of their
// own; TCP queries (Resolve, with the connection's peer address) on the
// connection's goroutine, which answers in order anyway. So a client that
// retries over TCP after a truncated autopath answer gets the same answer
// whole. Queries with the DO bit (our CNAME is not signed) and type ANY are
// not autopathed.
//
// A Pod with its own dnsConfig (another search list or ndots) does not send
// X.<ns>.svc.<zone> for its own namespace first, or does so with a search
// list we cannot know; we only act on the exact default first suffix from a
// source whose namespace matches, which is the best we can detect.
//
// autopath_total counts the outcome of every zone NXDOMAIN for
// X.<ns>.svc.<zone> with <ns> an existing namespace: the names a first
// search step produces. X.svc.<zone> (the second step: its "namespace" is
// X's last label) is not counted.

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

// autopathCheck decides whether the zone NXDOMAIN for the query in s,
// from addr, is autopathed; when so it returns len(X) in wire octets and
// the cluster domain. It counts the queries it turns down (autopath_total)
// and does not allocate.
func (r *Resolver) autopathCheck(s *Scratch, addr netip.AddrPort) (int, []byte, bool) {
	q := &s.q
	name := q.Name()
	at, l1, l2 := r.aboveZone(name)
	// X.<ns>.svc.<zone> with X not empty: name[:l2] is X, name[l2:l1] the
	// namespace label.
	if at < 0 || l2 <= 0 || !bytes.Equal(name[l1:at], lblSvc) {
		return 0, nil, false
	}
	ns, known := "", false
	if addr.IsValid() {
		ns, known = r.podNS(addr.Addr())
	}
	nsLabel := name[l2+1 : l1]
	if known && string(nsLabel) == ns && !q.DO && q.Type != dnswire.TypeANY {
		return l2, name[at:], true
	}
	// Not taken. Counted only when <ns> exists (the zone's KindNXDomain
	// under svc implies it does), so that second steps are not.
	if s.src == metrics.SourceSearchSuffix && !r.isNamespace(name[l2:]) {
		return 0, nil, false
	}
	switch {
	case q.DO || q.Type == dnswire.TypeANY:
		r.metrics.Autopath(metrics.AutopathSkipped)
	case !known:
		r.metrics.Autopath(metrics.AutopathUnknownSource)
	default:
		r.metrics.Autopath(metrics.AutopathOtherNamespace)
	}
	return 0, nil, false
}

// newAutopathJob copies the query in s (parsed from msg), whose zone
// answer is nx, into a job, in one allocation.
func newAutopathJob(s *Scratch, nx, msg []byte, xLen int, d []byte, proto Proto, addr netip.AddrPort, start time.Time) *autopathJob {
	j := &autopathJob{q: s.q, src: s.src, xLen: xLen, proto: proto, addr: addr, start: start}
	// d aliases s.q's name; j.q has its own copy at the same offset.
	j.d = j.q.Name()[len(j.q.Name())-len(d):]
	buf := make([]byte, 0, len(msg)+len(nx))
	buf = append(buf, msg...)
	j.msg = buf[:len(msg):len(msg)]
	j.nx = append(buf, nx...)[len(msg):]
	return j
}

// runAutopath finishes j on its own goroutine and sends the answer.
func (r *Resolver) runAutopath(j *autopathJob) {
	defer r.release()
	ctx, cancel := context.WithTimeout(r.base, r.timeout)
	defer cancel()
	bp := r.bufs.Get().(*[]byte)
	out, src := r.finishAutopath(ctx, j, (*bp)[:0])
	r.observe(out, &j.q, j.proto, src, j.start, j.addr) // before: the client finds it counted
	j.snd.Send(out, j.addr)
	if cap(out) <= 64<<10 {
		*bp = out[:0]
	}
	r.bufs.Put(bp)
}

// finishAutopath appends j's answer to dst: the CNAME to the first
// candidate that exists, else the zone's NXDOMAIN; and counts the result.
func (r *Resolver) finishAutopath(ctx context.Context, j *autopathJob, dst []byte) ([]byte, metrics.Source) {
	out, src, res := r.autopath(ctx, j, dst)
	r.metrics.Autopath(res)
	if res != metrics.AutopathAnswered {
		return append(dst, j.nx...), j.src
	}
	return out, src
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

// autopath resolves j's candidates and appends the answer to dst. Any
// result but AutopathAnswered means the zone's NXDOMAIN stands: no
// candidate exists (AutopathNXDomain), or the walk failed.
func (r *Resolver) autopath(ctx context.Context, j *autopathJob, dst []byte) ([]byte, metrics.Source, metrics.AutopathResult) {
	zbuf := make([]byte, 0, 1024)
	for _, cand := range r.autopathCandidates(j) {
		res := r.auth.Lookup(cand, j.q.Type, zbuf[:0])
		var (
			out []byte
			src metrics.Source
		)
		switch res.Kind {
		case zone.KindNXDomain, zone.KindSearchSuffix:
			continue
		case zone.KindAnswer, zone.KindNoData, zone.KindChase:
			out, src = r.autopathZone(ctx, j, cand, &res, dst)
		case zone.KindForward:
			if r.inCluster(cand) {
				continue // never upstream (SPEC R12); as good as absent
			}
			reply, ok := r.autopathUpstream(ctx, &j.q, cand)
			if !ok {
				return nil, 0, metrics.AutopathFailed
			}
			if dnswire.Rcode(reply) == dnswire.RcodeNameError {
				continue
			}
			out, src = r.autopathReply(j, cand, reply, dst)
		default: // not synced: cannot tell
			return nil, 0, metrics.AutopathFailed
		}
		if out == nil {
			return nil, 0, metrics.AutopathFailed
		}
		return out, src, metrics.AutopathAnswered
	}
	return nil, 0, metrics.AutopathNXDomain
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
		if out, hit := r.cache.Get(nil, msg, &cq); hit != cache.Miss {
			if hit == cache.Prefetch {
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
