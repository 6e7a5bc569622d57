package cache

// Purge removes the entries whose question name satisfies match, fresh,
// stale and failure marks alike, and returns how many it removed; a nil
// match removes every entry. match gets the name in lowercase wire format,
// root label included, and must not call the Cache. Purge locks one shard
// at a time, so queries are answered meanwhile; an answer stored in a
// shard after Purge passed it stays.
//
// For a change of where names are forwarded (upstreams, stub domains):
// answers of the old upstream then do not outlive the change.
func (c *Cache) Purge(match func(name []byte) bool) int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		if match == nil {
			n += s.lru.Len()
			s.lru.Purge()
		} else {
			for _, h := range s.lru.Keys() {
				if e, ok := s.lru.Peek(h); ok && match(e.question[:len(e.question)-4]) {
					s.lru.Remove(h)
					n++
				}
			}
		}
		s.mu.Unlock()
	}
	return n
}
