package cache

import (
	"github.com/nodedns/nodedns/internal/dnswire"
)

// Hit says what Get found, so the caller can label the answer's source.
type Hit uint8

const (
	Miss     Hit = iota // no answer; dst unchanged
	Fresh               // the stored answer, TTLs lowered by its age
	Prefetch            // Fresh, and the caller should refresh the entry now
	Stale               // an expired answer, served while the upstream fails
	Failed              // SERVFAIL remembered for a failing upstream
)

// Get appends to dst the cached answer to q, which was parsed from msg,
// and says what it was (Miss: none). It neither blocks on anything but a
// shard's mutex nor allocates. The answer is, by the entry's state:
//
//   - fresh: the stored answer, TTLs lowered by its age;
//   - expired, but the key failed to resolve less than StaleTTL seconds
//     ago and the answer is within StaleWindow: the stale answer, TTLs
//     StaleTTL (RFC 8767 §4, §5), counted in Stats.Stale;
//   - a failure mark less than ServFailTTL old: SERVFAIL;
//   - anything else: Miss, dst unchanged.
//
// Prefetch is returned at most once per stored answer: on a hit that makes
// the entry popular (PrefetchHits hits) while less than a tenth of its
// TTL remains, when Config.Prefetch is set. The caller should then
// refresh the entry (Set with a new reply) in the background.
func (c *Cache) Get(dst, msg []byte, q *dnswire.Query) ([]byte, Hit) {
	fl, h, s := c.locate(q)
	now := c.clock()
	s.mu.Lock()
	e, ok := s.lru.Get(h)
	if !ok || !e.matches(q, fl) {
		s.st.misses++
		s.mu.Unlock()
		return dst, Miss
	}
	if e.msg != nil && now < e.expires {
		e.hits++
		kind := Fresh
		if c.prefetch && !e.prefetched && e.hits >= c.hotHits && (e.expires-now)*prefetchPart <= e.expires-e.stored {
			e.prefetched = true
			kind = Prefetch
			s.st.prefetches++
		}
		s.st.hits++
		s.mu.Unlock()
		if out, ok := c.appendFresh(dst, msg, q, e, now); ok {
			return out, kind
		}
		return dst, Miss
	}
	if now < e.failUntil {
		switch {
		case e.msg == nil:
			s.st.failHits++
			s.mu.Unlock()
			a := dnswire.Answer{Rcode: dnswire.RcodeServerFailure, EDNSSize: c.ednsSize}
			return dnswire.AppendResponse(dst, msg, q, &a, dnswire.MaxMsgLen), Failed
		case now < e.staleEnd:
			s.st.stale++
			s.mu.Unlock()
			if out, ok := c.appendStale(dst, msg, q, e); ok {
				return out, Stale
			}
			return dst, Miss
		}
	}
	if e.msg == nil || now >= e.staleEnd {
		s.lru.Remove(h) // of no use any more
	}
	s.st.misses++
	s.mu.Unlock()
	return dst, Miss
}

// Stale appends to dst the best answer the cache has for q after the
// upstream failed to answer it: the fresh answer if there is one (another
// query may have stored it meanwhile), else the stale one within
// StaleWindow with TTLs StaleTTL (counted in Stats.Stale). It reports
// false, with dst unchanged, when there is neither. It does not allocate.
func (c *Cache) Stale(dst, msg []byte, q *dnswire.Query) ([]byte, bool) {
	fl, h, s := c.locate(q)
	now := c.clock()
	s.mu.Lock()
	e, ok := s.lru.Get(h)
	switch {
	case !ok || !e.matches(q, fl) || e.msg == nil || now >= e.staleEnd:
		s.mu.Unlock()
		return dst, false
	case now < e.expires:
		s.st.hits++
		s.mu.Unlock()
		return c.appendFresh(dst, msg, q, e, now)
	}
	s.st.stale++
	s.mu.Unlock()
	return c.appendStale(dst, msg, q, e)
}

// appendFresh appends e's answer to q, TTLs lowered by its age.
func (c *Cache) appendFresh(dst, msg []byte, q *dnswire.Query, e *entry, now int64) ([]byte, bool) {
	start := len(dst)
	out, ok := dnswire.AppendRelay(dst, msg, q, e.msg, &e.layout, c.ednsSize)
	if !ok {
		return dst, false
	}
	if age := uint32((now - e.stored) / 1e9); age > 0 {
		if _, err := dnswire.SubTTLs(out[start:], e.layout.QEnd, e.layout.Records(), age); err != nil {
			return dst, false // not reached: Set checked the records
		}
	}
	return out, true
}

// appendStale appends e's answer to q with every TTL StaleTTL.
func (c *Cache) appendStale(dst, msg []byte, q *dnswire.Query, e *entry) ([]byte, bool) {
	start := len(dst)
	out, ok := dnswire.AppendRelay(dst, msg, q, e.msg, &e.layout, c.ednsSize)
	if !ok {
		return dst, false
	}
	if _, err := dnswire.SetTTLs(out[start:], e.layout.QEnd, e.layout.Records(), StaleTTL); err != nil {
		return dst, false // not reached: Set checked the records
	}
	return out, true
}

// Set offers reply, the upstream's answer to q. It stores it when it is
// cacheable (see ttl; and a TC reply, a malformed one, one larger than
// MaxEntryBytes or one that does not answer q's question are not), and
// then caps the TTLs in reply itself to the ones the cache will serve, so
// that the answer relayed now agrees with the hits that follow. A valid
// NOERROR or NXDOMAIN answer that is not cacheable (TTL 0, negative
// without SOA, too large) replaces whatever the key held: no older answer
// is kept to be served stale. reply is not kept.
func (c *Cache) Set(q *dnswire.Query, reply []byte) {
	var l dnswire.Reply
	if dnswire.ParseReply(reply, &l) != nil || l.Flags&dnswire.FlagTC != 0 || !questionIs(reply, &l, q) {
		return
	}
	if l.Rcode != dnswire.RcodeSuccess && l.Rcode != dnswire.RcodeNameError {
		return // failures go to Fail; other rcodes are relayed, not cached
	}
	fl, h, s := c.locate(q)
	secs := ttl(reply, &l, c.maxTTL, c.maxNeg)
	if secs == 0 || l.End > c.maxEntry {
		s.mu.Lock()
		if e, ok := s.lru.Peek(h); ok && e.matches(q, fl) {
			s.lru.Remove(h)
		}
		s.mu.Unlock()
		return
	}
	if _, err := dnswire.ClampTTLs(reply, l.QEnd, l.Records(), secs); err != nil {
		return // not reached: ParseReply walked these records
	}
	e := c.newEntry(reply, &l, fl, secs, c.clock())
	s.mu.Lock()
	if s.lru.Add(h, e) {
		s.st.evictions++
	}
	s.st.inserts++
	s.mu.Unlock()
}

// Fail records that resolving q failed (the upstream timed out, or
// answered SERVFAIL or REFUSED). For the next StaleTTL seconds Get serves
// the key's stale answer, if it has one within StaleWindow, without
// asking again (RFC 8767 §5); without one, Get answers SERVFAIL for
// ServFailTTL (RFC 2308 §7, RFC 9520 §3).
func (c *Cache) Fail(q *dnswire.Query) {
	fl, h, s := c.locate(q)
	now := c.clock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.lru.Peek(h); ok && e.matches(q, fl) && e.msg != nil && now < e.staleEnd {
		e.failUntil = now + StaleTTL*1e9
		return
	}
	if s.lru.Add(h, newFailMark(q, fl, now+c.servFail)) {
		s.st.evictions++
	}
}
