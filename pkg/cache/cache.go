// Package cache keeps the upstream's answers ready to send: a bounded,
// sharded LRU of wire messages with an expiry per entry.
//
// An entry is the upstream's reply as it came, stored once: its OPT record
// dropped (hop-by-hop; each answer gets our own), its TTLs capped to the
// entry's, its question lowercased. A hit copies it into the caller's
// buffer and patches the copy: the ID, the flags and the question's letter
// case from the query, every TTL lowered by the entry's age, an OPT record
// when the query had one. Nothing is unpacked and Get does not allocate.
//
// The key is the lowercased name, type, class and the DO and CD bits. The
// LRU is keyed by a seeded 64-bit hash of it and the stored question is
// compared with the query's on every hit, so a hash collision is a miss,
// never a wrong answer.
//
// Besides fresh answers the cache keeps, per key, what serve-stale
// (RFC 8767) and failure caching (RFC 2308 §7, RFC 9520) need: an expired
// answer for StaleWindow after its expiry, and the time until which a key
// whose resolution failed is answered without asking the upstream again
// (stale data, else SERVFAIL). Coalescing of identical misses lives in the
// resolver, which owns the upstream exchanges and the clients waiting.
package cache

import (
	"errors"
	"fmt"
	"hash/maphash"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"

	"github.com/nodedns/nodedns/internal/dnswire"
)

// Defaults of zero Config fields.
const (
	// DefaultSize bounds the entries. A node's pods ask for a few hundred
	// to a few thousand distinct names outside the cluster (ndots:5 search
	// names under the cluster zone are answered by the zone and never
	// cached); 10,000 holds that with room for the NXDOMAINs of node
	// search domains, and costs about 3 MB at a typical 300 octets per
	// entry, 45 MB at most (every entry MaxEntryBytes).
	DefaultSize = 10_000
	// DefaultMaxTTL caps positive answers, as NodeLocal DNSCache does, so
	// that a changed record reaches pods within 30 s.
	DefaultMaxTTL = 30 * time.Second
	// DefaultMaxNegativeTTL caps NXDOMAIN and NODATA answers.
	DefaultMaxNegativeTTL = 5 * time.Second
	// DefaultServFailTTL is how long a failed resolution without stale
	// data is answered SERVFAIL from the cache: RFC 9520 §3.2 asks for at
	// least 1 s, RFC 2308 §7.1 allows up to 5 min; short, so that a
	// recovered upstream is used at once.
	DefaultServFailTTL = 2 * time.Second
	// DefaultStaleWindow is what the --serve-stale flag defaults to; the
	// zero Config value disables serve-stale. A few hours ride out an
	// upstream outage; expired entries still count against Size, so a
	// long window costs no memory, only LRU room.
	DefaultStaleWindow = 3 * time.Hour
	// DefaultPrefetchHits is how many hits make an entry popular enough
	// to be refreshed before it expires.
	DefaultPrefetchHits = 3
	// DefaultMaxEntryBytes: larger answers are relayed, not cached. 4096
	// is the largest UDP answer most resolvers take; bigger ones (TCP)
	// are rare, and the bound keeps Size entries within a known memory.
	DefaultMaxEntryBytes = 4096
	// DefaultShards: enough that readers on different cores rarely meet
	// on a shard's mutex.
	DefaultShards = 64
)

// StaleTTL is the TTL of records in a stale answer, in seconds, and how
// long after a failed refresh stale data is served without asking the
// upstream again: RFC 8767 §4 recommends 30 s for the first, §5 at least
// 30 s between refresh attempts for the second.
const StaleTTL = 30

// prefetchPart: an entry is refreshed once less than 1/prefetchPart of its
// TTL remains.
const prefetchPart = 10

// Config configures a Cache.
type Config struct {
	// Size is the largest number of entries (fresh, stale and failure
	// marks); default DefaultSize. The cache never holds more.
	Size int
	// MaxTTL caps the TTL of positive answers; default DefaultMaxTTL.
	MaxTTL time.Duration
	// MaxNegativeTTL caps NXDOMAIN and NODATA answers; default
	// DefaultMaxNegativeTTL.
	MaxNegativeTTL time.Duration
	// ServFailTTL: after a failed resolution of a name without stale
	// data, queries for it get SERVFAIL from the cache this long;
	// default DefaultServFailTTL.
	ServFailTTL time.Duration
	// StaleWindow is how long after its expiry an answer may still be
	// served when the upstream fails (RFC 8767); 0 disables serve-stale.
	StaleWindow time.Duration
	// Prefetch enables refreshing popular entries before they expire:
	// Get asks for it once per entry (see Get).
	Prefetch bool
	// PrefetchHits is how many hits make an entry popular; default
	// DefaultPrefetchHits.
	PrefetchHits int
	// MaxEntryBytes: answers larger than this are not cached; default
	// DefaultMaxEntryBytes.
	MaxEntryBytes int
	// EDNSSize is the payload size in the OPT record of our answers;
	// default dnswire.DefaultUDPSize. Give the resolver's UDPSize.
	EDNSSize uint16
	// Shards is the number of independently locked parts, rounded up to
	// a power of two and down to at most Size; default DefaultShards.
	Shards int
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Cache is a bounded cache of upstream answers. Its methods are safe for
// concurrent use. Create one with New.
type Cache struct {
	shards    []shard
	mask      uint64
	seed      maphash.Seed
	now       func() time.Time
	epoch     time.Time
	maxTTL    uint32 // seconds
	maxNeg    uint32 // seconds
	servFail  int64  // ns
	stale     int64  // ns
	prefetch  bool
	hotHits   uint32
	maxEntry  int
	ednsSize  uint16
	testHash  func(uint64) uint64 // tests: force collisions
	shardBits uint
}

// shard is one independently locked LRU. Its counters are plain integers
// updated under mu, which every operation holds anyway.
type shard struct {
	mu   sync.Mutex
	lru  *simplelru.LRU[uint64, *entry]
	st   counters
	size int      // the lru's capacity
	_    [64]byte // keep neighbouring shards' locks off one cache line
}

type counters struct {
	hits, misses, evictions, prefetches, stale, failHits, inserts uint64
}

// Stats are the cache's counters since New.
type Stats struct {
	Hits       uint64 // fresh answers served (Get, and Stale on fresh data)
	Misses     uint64 // Get found nothing to serve
	Evictions  uint64 // entries dropped to make room
	Prefetches uint64 // refreshes asked for by Get
	Stale      uint64 // stale answers served (RFC 8767)
	FailHits   uint64 // cached SERVFAILs served
	Inserts    uint64 // answers stored
	Entries    int    // entries now held (fresh, stale and failure marks)
}

// New validates cfg and returns an empty Cache.
func New(cfg Config) (*Cache, error) {
	if cfg.Size == 0 {
		cfg.Size = DefaultSize
	}
	if cfg.MaxTTL == 0 {
		cfg.MaxTTL = DefaultMaxTTL
	}
	if cfg.MaxNegativeTTL == 0 {
		cfg.MaxNegativeTTL = DefaultMaxNegativeTTL
	}
	if cfg.ServFailTTL == 0 {
		cfg.ServFailTTL = DefaultServFailTTL
	}
	if cfg.PrefetchHits == 0 {
		cfg.PrefetchHits = DefaultPrefetchHits
	}
	if cfg.MaxEntryBytes == 0 {
		cfg.MaxEntryBytes = DefaultMaxEntryBytes
	}
	if cfg.EDNSSize == 0 {
		cfg.EDNSSize = dnswire.DefaultUDPSize
	}
	if cfg.Shards == 0 {
		cfg.Shards = DefaultShards
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	var errs []error
	if cfg.Size < 0 {
		errs = append(errs, fmt.Errorf("cache: Size %d is negative", cfg.Size))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"MaxTTL", cfg.MaxTTL}, {"MaxNegativeTTL", cfg.MaxNegativeTTL}, {"ServFailTTL", cfg.ServFailTTL}} {
		if d.v < time.Second {
			errs = append(errs, fmt.Errorf("cache: %s %v: want at least 1s (TTLs count whole seconds)", d.name, d.v))
		}
	}
	if cfg.StaleWindow < 0 || cfg.PrefetchHits < 0 || cfg.MaxEntryBytes < 0 || cfg.Shards < 0 {
		errs = append(errs, errors.New("cache: negative StaleWindow, PrefetchHits, MaxEntryBytes or Shards"))
	}
	if cfg.EDNSSize < dnswire.MinUDPSize {
		errs = append(errs, fmt.Errorf("cache: EDNSSize %d below 512", cfg.EDNSSize))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}

	c := &Cache{
		seed:     maphash.MakeSeed(), // per process: collisions cannot be planned
		now:      cfg.Now,
		maxTTL:   seconds(cfg.MaxTTL),
		maxNeg:   seconds(cfg.MaxNegativeTTL),
		servFail: int64(cfg.ServFailTTL),
		stale:    int64(cfg.StaleWindow),
		prefetch: cfg.Prefetch,
		hotHits:  uint32(min(cfg.PrefetchHits, 1<<31)),
		maxEntry: cfg.MaxEntryBytes,
		ednsSize: cfg.EDNSSize,
	}
	c.epoch = c.now()
	// A power of two of shards, no more than entries: each shard holds
	// at least one.
	for 1<<c.shardBits < cfg.Shards && 1<<(c.shardBits+1) <= cfg.Size {
		c.shardBits++
	}
	n := 1 << c.shardBits
	c.mask = uint64(n - 1)
	c.shards = make([]shard, n)
	// Split Size exactly: the shards' capacities sum to Size.
	for i := range c.shards {
		size := cfg.Size / n
		if i < cfg.Size%n {
			size++
		}
		lru, err := simplelru.NewLRU[uint64, *entry](size, nil)
		if err != nil {
			return nil, fmt.Errorf("cache: %w", err)
		}
		c.shards[i].lru, c.shards[i].size = lru, size
	}
	return c, nil
}

// seconds converts d to whole seconds, at most 2^31-1 (RFC 2181 §8).
func seconds(d time.Duration) uint32 {
	return uint32(min(d/time.Second, 1<<31-1))
}

// Stats returns the counters, summed over the shards.
func (c *Cache) Stats() Stats {
	var st Stats
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		st.Hits += s.st.hits
		st.Misses += s.st.misses
		st.Evictions += s.st.evictions
		st.Prefetches += s.st.prefetches
		st.Stale += s.st.stale
		st.FailHits += s.st.failHits
		st.Inserts += s.st.inserts
		st.Entries += s.lru.Len()
		s.mu.Unlock()
	}
	return st
}

// Len returns the number of entries.
func (c *Cache) Len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		n += s.lru.Len()
		s.mu.Unlock()
	}
	return n
}

// clock returns nanoseconds since New on the cache's clock.
func (c *Cache) clock() int64 { return int64(c.now().Sub(c.epoch)) }

// Key bits beside name, type and class.
const (
	keyDO uint8 = 1 << iota
	keyCD
)

func keyFlags(q *dnswire.Query) uint8 {
	var f uint8
	if q.DO {
		f |= keyDO
	}
	if q.CD() {
		f |= keyCD
	}
	return f
}

// locate returns q's key bits, hash and shard.
func (c *Cache) locate(q *dnswire.Query) (uint8, uint64, *shard) {
	fl := keyFlags(q)
	var b [dnswire.MaxNameLen + 5]byte
	n := copy(b[:], q.Name())
	b[n], b[n+1], b[n+2], b[n+3], b[n+4] = byte(q.Type>>8), byte(q.Type), byte(q.Class>>8), byte(q.Class), fl
	h := maphash.Bytes(c.seed, b[:n+5])
	if c.testHash != nil {
		h = c.testHash(h)
	}
	// The top bits pick the shard; the map inside hashes all 64 again.
	return fl, h, &c.shards[(h>>(64-c.shardBits))&c.mask]
}
