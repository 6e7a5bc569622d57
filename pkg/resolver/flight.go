package resolver

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"

	"github.com/nodedns/nodedns/internal/dnswire"
	"github.com/nodedns/nodedns/pkg/metrics"
)

// Coalescing: identical misses in the air go upstream once (SPEC: "Identical
// misses in flight are sent upstream once"). A flight is one upstream
// exchange for one key (lowercased name, type, class, DO, CD: the cache's
// key); the queries that miss while it is in the air wait on it, and each
// gets the reply readdressed to itself (its ID, question case, RD, OPT).
//
// It lives here rather than in pkg/cache or pkg/upstream because the
// resolver owns what a waiter is (a copied query, a Sender, an in-flight
// slot that Drain waits for) and builds the upstream query; the cache stays
// a passive store. The same flights carry prefetches, so a refresh and the
// misses of the same name never go upstream side by side.
//
// Waiters do not get a goroutine each: the leader's goroutine answers them
// all once the exchange ends. Resolve (TCP) waits on the flight's done
// channel on its own goroutine.

// flight is one upstream exchange and the queries waiting on it.
type flight struct {
	key  string
	q    dnswire.Query // the first query's: its key, for the cache
	name []byte        // the first query's question name, as sent
	slot bool          // holds an in-flight slot of its own (a prefetch)

	waiters []*job // guarded by Resolver.fmu until lead detaches them

	// Set by lead before done is closed; read-only after.
	done   chan struct{}
	reply  []byte
	layout dnswire.Reply
	err    error
}

// flightKey is q's key: lowercased name, type, class, DO and CD bits.
func flightKey(q *dnswire.Query) string {
	name := q.Name()
	var fl byte
	if q.DO {
		fl |= 1
	}
	if q.CD() {
		fl |= 2
	}
	var b strings.Builder
	b.Grow(len(name) + 5)
	b.Write(name)
	b.Write([]byte{byte(q.Type >> 8), byte(q.Type), byte(q.Class >> 8), byte(q.Class), fl})
	return b.String()
}

func newFlight(key string, q *dnswire.Query, msg []byte) *flight {
	return &flight{key: key, q: *q, name: bytes.Clone(msg[dnswire.HeaderLen : q.QEnd-4]), done: make(chan struct{})}
}

// join makes j wait on the flight of its key, starting one when none is in
// the air. j holds an in-flight slot, released once it is answered.
func (r *Resolver) join(j *job) {
	key := flightKey(&j.q)
	r.fmu.Lock()
	if fl := r.flights[key]; fl != nil {
		fl.waiters = append(fl.waiters, j)
		r.fmu.Unlock()
		return
	}
	fl := newFlight(key, &j.q, j.msg)
	fl.waiters = append(fl.waiters, j)
	r.flights[key] = fl
	r.fmu.Unlock()
	go r.lead(fl)
}

// await returns the flight of q's key (q parsed from msg), starting one
// when none is in the air.
func (r *Resolver) await(q *dnswire.Query, msg []byte) *flight {
	key := flightKey(q)
	r.fmu.Lock()
	fl := r.flights[key]
	if fl == nil {
		fl = newFlight(key, q, msg)
		r.flights[key] = fl
		r.fmu.Unlock()
		go r.lead(fl)
		return fl
	}
	r.fmu.Unlock()
	return fl
}

// prefetch refreshes the cache entry of q (parsed from msg) in the
// background, unless an exchange for its key is in the air already or
// MaxInFlight is reached.
func (r *Resolver) prefetch(q *dnswire.Query, msg []byte) {
	if !r.acquire() {
		return
	}
	key := flightKey(q)
	r.fmu.Lock()
	if r.flights[key] != nil {
		r.fmu.Unlock()
		r.release()
		return
	}
	fl := newFlight(key, q, msg)
	fl.slot = true
	r.flights[key] = fl
	r.fmu.Unlock()
	go r.lead(fl)
}

// resolveForward waits for the flight of q (parsed from msg) and appends
// the answer to dst: Resolve's forward.
func (r *Resolver) resolveForward(ctx context.Context, dst, msg []byte, q *dnswire.Query, proto Proto) ([]byte, metrics.Source) {
	fl := r.await(q, msg)
	select {
	case <-fl.done:
		return r.answer(dst, fl, msg, q, proto)
	case <-ctx.Done():
		return r.fallback(dst, msg, q, proto)
	}
}

// lead does fl's exchange, offers the result to the cache, and answers
// every query waiting.
func (r *Resolver) lead(fl *flight) {
	ctx, cancel := context.WithTimeout(r.base, r.timeout)
	defer cancel()
	fl.reply, fl.err = r.exchange(ctx, fl)
	if fl.err != nil {
		r.log.LogAttrs(ctx, slog.LevelDebug, "upstream exchange failed",
			slog.String("name", nameString(fl.q.Name())), slog.Int("qtype", int(fl.q.Type)), slog.Any("err", fl.err))
		if r.cache != nil && r.base.Err() == nil { // a Drain's cancel is not the upstream's failure
			r.cache.Fail(&fl.q)
		}
	} else if r.cache != nil {
		r.cache.Set(&fl.q, fl.reply)
	}
	// Stored before the flight leaves the map: a query that misses the
	// flight finds the cache filled (or marked failed).
	r.fmu.Lock()
	delete(r.flights, fl.key)
	waiters := fl.waiters
	fl.waiters = nil
	r.fmu.Unlock()
	close(fl.done)

	bp := r.bufs.Get().(*[]byte)
	for _, w := range waiters {
		out, src := r.answer((*bp)[:0], fl, w.msg, &w.q, w.proto)
		// Counted before it is sent: whoever got the answer finds it counted.
		r.observe(out, &w.q, w.proto, src, w.start, w.addr)
		w.snd.Send(out, w.addr)
		if cap(out) <= 64<<10 {
			*bp = out[:0] // keep the buffer if it grew, within reason
		}
		r.release()
	}
	r.bufs.Put(bp)
	if fl.slot {
		r.release()
	}
}

// exchange asks the upstream fl's question and returns a reply that
// answers it, laid out in fl.layout. The query is ours, not the client's:
// RD, the CD and DO bits of the key, our EDNS payload size, no client
// options (a cookie or a client subnet must not be shared by everyone the
// cache answers). A reply with rcode SERVFAIL or REFUSED is an error.
func (r *Resolver) exchange(ctx context.Context, fl *flight) ([]byte, error) {
	flags := dnswire.FlagRD | fl.q.Flags&dnswire.FlagCD
	query := make([]byte, 0, dnswire.HeaderLen+len(fl.name)+4+dnswire.OPTLen)
	query = dnswire.AppendQuery(query, uint16(rand.Uint32()), flags, fl.name, fl.q.Type, uint16(r.udpSize), fl.q.DO)
	reply, err := r.up.Exchange(ctx, query)
	if err != nil {
		return nil, err
	}
	if !sameQuestion(reply, query, len(query)-dnswire.OPTLen) {
		return nil, errMismatch
	}
	if err := dnswire.ParseReply(reply, &fl.layout); err != nil {
		return nil, fmt.Errorf("upstream reply: %w", err)
	}
	switch fl.layout.Rcode {
	case dnswire.RcodeServerFailure, dnswire.RcodeRefused:
		return nil, fmt.Errorf("upstream answered rcode %d", fl.layout.Rcode)
	}
	return reply, nil
}

// answer appends fl's result readdressed to the query q parsed from msg,
// and says where it came from.
func (r *Resolver) answer(dst []byte, fl *flight, msg []byte, q *dnswire.Query, proto Proto) ([]byte, metrics.Source) {
	if fl.err == nil {
		if out, ok := dnswire.AppendRelay(dst, msg, q, fl.reply, &fl.layout, uint16(r.udpSize)); ok {
			return r.fit(out, len(dst), msg, q, proto), metrics.SourceUpstream
		}
	}
	return r.fallback(dst, msg, q, proto)
}

// fallback answers a query the upstream could not: from stale data when
// the cache has some (RFC 8767), else SERVFAIL.
func (r *Resolver) fallback(dst, msg []byte, q *dnswire.Query, proto Proto) ([]byte, metrics.Source) {
	if r.cache != nil {
		if out, ok := r.cache.Stale(dst, msg, q); ok {
			return r.fit(out, len(dst), msg, q, proto), metrics.SourceStale
		}
	}
	return r.respond(dst, msg, q, proto, &dnswire.Answer{Rcode: dnswire.RcodeServerFailure}), metrics.SourceLocal
}
