package zone

// STUB: signatures only; replaced by the real builder/snapshot.

import (
	"context"
	"errors"
)

// Snapshot is an immutable view of the cluster zone. Safe for concurrent
// use by any number of readers.
type Snapshot struct {
	synced bool
}

var emptySnapshot = &Snapshot{}

// Synced reports whether the snapshot was built after the sources synced.
func (s *Snapshot) Synced() bool { return s.synced }

// Lookup answers a query. name is the lowercased, uncompressed wire-format
// query name including the terminating root label; qtype is the query type.
// Dynamic records (pod names) are appended to dst, which may be nil; Records
// may alias dst or the snapshot and must not be modified. It does not
// allocate when dst has room.
func (s *Snapshot) Lookup(name []byte, qtype uint16, dst []byte) Result {
	return Result{}
}

// Builder keeps the current objects, rebuilds the parts of the zone that
// changed and publishes new Snapshots to a Store. Its Set/Delete methods are
// safe for concurrent use; they only record the change and wake Run.
type Builder struct{}

// NewBuilder validates cfg and returns a Builder publishing to store.
func NewBuilder(cfg Config, store *Store) (*Builder, error) { return nil, errors.New("todo") }

func (b *Builder) SetNamespace(name string)                   {}
func (b *Builder) DeleteNamespace(name string)                {}
func (b *Builder) SetService(svc *Service)                    {}
func (b *Builder) DeleteService(namespace, name string)       {}
func (b *Builder) SetEndpointSlice(es *EndpointSlice)         {}
func (b *Builder) DeleteEndpointSlice(namespace, name string) {}
func (b *Builder) SetPod(p *Pod)                              {}
func (b *Builder) DeletePod(namespace, name string)           {}

// ReplaceAll swaps the whole object set (zone-file mode).
func (b *Builder) ReplaceAll(objs Objects) {}

// SetSynced marks the sources synced; snapshots published from then on
// answer cluster names instead of SERVFAIL.
func (b *Builder) SetSynced() {}

// Run publishes a snapshot after each burst of changes until ctx ends.
func (b *Builder) Run(ctx context.Context) {}

// Flush builds and publishes pending changes now; for tests and start-up.
func (b *Builder) Flush() {}
