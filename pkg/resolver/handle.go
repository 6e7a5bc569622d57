package resolver

import (
	"bytes"
	"context"
	"net/netip"
	"time"

	"github.com/nodedns/nodedns/internal/dnswire"
	"github.com/nodedns/nodedns/pkg/cache"
	"github.com/nodedns/nodedns/pkg/metrics"
	"github.com/nodedns/nodedns/pkg/zone"
)

// action is what the synchronous part decided.
type action uint8

const (
	actReply   action = iota // the answer is in dst
	actDrop                  // send nothing
	actForward               // ask the upstream
	actChase                 // follow an ExternalName CNAME
)

// Handle answers msg, a query that came from addr over proto. It never
// waits for the network.
//
// When the answer is known at once (the cluster zone, a cache hit, an error)
// Handle appends it to dst and returns the extended slice, which the caller
// sends. Otherwise it returns nil: either the message is to be dropped, or
// Handle has copied it and the answer will be sent later, from another
// goroutine, through snd.Send(answer, addr); with a nil snd such queries
// get SERVFAIL at once (or a stale answer, RFC 8767). The zone path and
// cache hits do not allocate. Handle does not keep msg, dst or s.
//
// With Config.Autopath, a zone NXDOMAIN for X.<ns>.svc.<zone> from a Pod of
// namespace ns (addr) is finished later through snd too (autopath.go).
func (r *Resolver) Handle(s *Scratch, dst, msg []byte, proto Proto, snd Sender, addr netip.AddrPort) []byte {
	start := time.Now()
	out, act, res := r.local(s, dst, msg, proto)
	switch act {
	case actReply:
		if s.nx && r.podNS != nil && snd != nil {
			if xLen, d, ok := r.autopathCheck(s, addr); ok {
				if r.acquire() {
					j := newAutopathJob(s, out[len(dst):], msg, xLen, d, proto, addr, start)
					j.snd = snd
					go r.runAutopath(j)
					return nil // answered by runAutopath
				}
				r.metrics.Autopath(metrics.AutopathFailed) // too busy: the zone's NXDOMAIN
			}
		}
		r.observe(out[len(dst):], &s.q, proto, s.src, start, addr)
		return out
	case actDrop:
		return nil
	}
	if snd == nil || !r.acquire() {
		src := metrics.SourceLocal
		if act == actForward {
			out, src = r.fallback(dst, msg, &s.q, proto)
		} else {
			out = r.respond(dst, msg, &s.q, proto, &dnswire.Answer{Rcode: dnswire.RcodeServerFailure})
		}
		r.observe(out[len(dst):], &s.q, proto, src, start, addr)
		return out
	}
	j := newJob(&s.q, msg, proto, act, &res)
	j.snd, j.addr, j.start = snd, addr, start
	if act == actForward {
		r.join(j)
		return nil
	}
	go r.runAsync(j)
	return nil
}

// Resolve answers msg, which came from addr, like Handle but waits for the
// upstream when needed, on the calling goroutine: for TCP connections, which
// answer in order, and for tests. ctx bounds the wait (UpstreamTimeout
// applies too). It returns dst with the answer appended, or nil when the
// message is to be dropped. addr is what autopath and the query log know
// the client by; the zero AddrPort turns autopath off for the query.
func (r *Resolver) Resolve(ctx context.Context, s *Scratch, dst, msg []byte, proto Proto, addr netip.AddrPort) []byte {
	start := time.Now()
	out, act, res := r.local(s, dst, msg, proto)
	switch act {
	case actReply:
		if s.nx && r.podNS != nil {
			if xLen, d, ok := r.autopathCheck(s, addr); ok {
				// The job owns a copy of the zone's NXDOMAIN: the answer
				// is written over it, at dst.
				j := newAutopathJob(s, out[len(dst):], msg, xLen, d, proto, addr, start)
				ctx, cancel := context.WithTimeout(ctx, r.timeout)
				defer cancel()
				out, src := r.finishAutopath(ctx, j, dst)
				r.observe(out[len(dst):], &s.q, proto, src, start, addr)
				return out
			}
		}
		r.observe(out[len(dst):], &s.q, proto, s.src, start, addr)
		return out
	case actDrop:
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	src := metrics.SourceUpstream
	if act == actForward {
		out, src = r.resolveForward(ctx, dst, msg, &s.q, proto)
	} else {
		j := job{q: s.q, msg: msg, proto: proto, act: act, rec: res.Records, an: res.An, chase: res.Chase}
		out = r.chase(ctx, &j, dst)
	}
	if out != nil {
		r.observe(out[len(dst):], &s.q, proto, src, start, addr)
	}
	return out
}

// local parses msg and answers everything that needs no network. It runs on
// the caller's goroutine and must not allocate.
func (r *Resolver) local(s *Scratch, dst, msg []byte, proto Proto) ([]byte, action, zone.Result) {
	q := &s.q
	s.nx = false
	if err := dnswire.ParseQuery(msg, q); err != nil {
		e, _ := err.(dnswire.Error) // always one; the zero Error means FORMERR
		rcode, reply := e.Rcode()
		if !reply {
			return nil, actDrop, zone.Result{}
		}
		s.src = metrics.SourceLocal
		return r.respond(dst, msg, q, proto, &dnswire.Answer{Rcode: rcode}), actReply, zone.Result{}
	}
	s.src = metrics.SourceLocal // errors and refusals below; the zone and cache say otherwise
	if q.EDNS && q.Version > 0 {
		// RFC 6891 §6.1.3: answer BADVERS, with our version (0), unprocessed.
		return r.respond(dst, msg, q, proto, &dnswire.Answer{Rcode: dnswire.RcodeBadVers}), actReply, zone.Result{}
	}
	if q.Class != dnswire.ClassIN {
		// The cluster zone exists in class IN only and we forward nothing
		// else (CH "version.bind" would reveal the upstream): refused by
		// policy, RFC 1035 §4.1.1.
		return r.respond(dst, msg, q, proto, &dnswire.Answer{Rcode: dnswire.RcodeRefused}), actReply, zone.Result{}
	}
	if q.Type == dnswire.TypeAXFR || q.Type == dnswire.TypeIXFR {
		// No zone transfers: "the name server does not support the
		// requested kind of query", RFC 1035 §4.1.1.
		return r.respond(dst, msg, q, proto, &dnswire.Answer{Rcode: dnswire.RcodeNotImplemented}), actReply, zone.Result{}
	}

	res := r.auth.Lookup(q.Name(), q.Type, s.zbuf[:0])
	a := dnswire.Answer{AA: true, Records: res.Records, An: res.An, Ns: res.Ns, Ar: res.Ar}
	s.src = metrics.SourceZone
	if res.Kind == zone.KindSearchSuffix {
		s.src = metrics.SourceSearchSuffix
	}
	switch res.Kind {
	case zone.KindAnswer, zone.KindNoData:
		a.Rcode = dnswire.RcodeSuccess
	case zone.KindNXDomain, zone.KindSearchSuffix:
		a.Rcode = dnswire.RcodeNameError
		s.nx = true
	case zone.KindNotSynced:
		// SERVFAIL, never a false NXDOMAIN, until synced (SPEC).
		a = dnswire.Answer{Rcode: dnswire.RcodeServerFailure}
	case zone.KindChase:
		return nil, actChase, res
	case zone.KindForward:
		return r.outside(s, dst, msg, proto)
	default:
		a = dnswire.Answer{Rcode: dnswire.RcodeServerFailure}
	}
	return r.respond(dst, msg, q, proto, &a), actReply, zone.Result{}
}

// outside handles a name the zone does not own.
func (r *Resolver) outside(s *Scratch, dst, msg []byte, proto Proto) ([]byte, action, zone.Result) {
	q := &s.q
	s.src = metrics.SourceLocal
	if r.inCluster(q.Name()) {
		return r.respond(dst, msg, q, proto, &dnswire.Answer{Rcode: dnswire.RcodeServerFailure}), actReply, zone.Result{}
	}
	if q.Type == dnswire.TypeANY {
		// RFC 8482 §4.2: a minimal synthesized HINFO instead of the RRsets;
		// never forwarded, so we cannot be used to amplify.
		a := dnswire.Answer{Records: anyHINFO[:], An: 1}
		return r.respond(dst, msg, q, proto, &a), actReply, zone.Result{}
	}
	if r.cache != nil {
		if out, hit := r.cache.Get(dst, msg, q); hit != cache.Miss {
			s.src = metrics.SourceCache
			switch hit {
			case cache.Stale:
				s.src = metrics.SourceStale
			case cache.Prefetch:
				r.prefetch(q, msg) // allocates, once per entry's life
			}
			return r.fit(out, len(dst), msg, q, proto), actReply, zone.Result{}
		}
	}
	return nil, actForward, zone.Result{}
}

// anyHINFO is the RFC 8482 §4.2 answer: owner = the question name (0xC00C),
// HINFO, IN, TTL 3600 (our choice; the RFC leaves it to the operator), CPU
// "RFC8482", OS empty.
var anyHINFO = [...]byte{
	0xC0, 0x0C, 0, byte(dnswire.TypeHINFO), 0, 1, 0, 0, 0x0E, 0x10, 0, 9,
	7, 'R', 'F', 'C', '8', '4', '8', '2', 0,
}

// inCluster reports whether name (lowercase wire format) is at or under a
// cluster domain. It compares at label boundaries only.
func (r *Resolver) inCluster(name []byte) bool {
	if len(r.cluster) == 0 {
		return false
	}
	for off := 0; off < len(name) && name[off] != 0; off += int(name[off]) + 1 {
		for _, d := range r.cluster {
			if bytes.Equal(name[off:], d) {
				return true
			}
		}
	}
	return false
}

// limit is the largest answer the client takes over proto.
func (r *Resolver) limit(q *dnswire.Query, proto Proto) int {
	if proto == TCP {
		return dnswire.MaxMsgLen
	}
	return q.UDPLimit(r.udpSize)
}

// respond appends the answer a to q.
func (r *Resolver) respond(dst, msg []byte, q *dnswire.Query, proto Proto, a *dnswire.Answer) []byte {
	a.EDNSSize = uint16(r.udpSize)
	return dnswire.AppendResponse(dst, msg, q, a, r.limit(q, proto))
}

// fit returns out (whose answer starts at out[start:]) if the answer fits
// the client's limit, else replaces it by a truncated one.
func (r *Resolver) fit(out []byte, start int, msg []byte, q *dnswire.Query, proto Proto) []byte {
	reply := out[start:]
	if len(reply) <= r.limit(q, proto) {
		return out
	}
	flags := dnswire.Flags(reply)
	a := dnswire.Answer{Rcode: flags & 0xF, AA: flags&dnswire.FlagAA != 0, EDNSSize: uint16(r.udpSize)}
	return dnswire.AppendTruncated(out[:start], msg, q, &a)
}
