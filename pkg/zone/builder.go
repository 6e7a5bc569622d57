package zone

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"
)

// Builder keeps the current objects, rebuilds the parts of the zone that
// changed and publishes new Snapshots to a Store. Its Set/Delete methods are
// safe for concurrent use; they only record the change and wake Run.
//
// Objects are keyed by namespace/name. A change marks its service (or, for
// Pods, its namespace's pod addresses) dirty; a build repacks only dirty
// services, reuses every other service's and namespace's immutable data,
// and publishes one new Snapshot with one atomic pointer swap. Changes that
// arrive within Config.Debounce of each other share one build.
type Builder struct {
	cfg     Config
	domains []domain
	store   *Store
	kick    chan struct{}
	now     func() time.Time

	mu        sync.Mutex // guards the fields below
	objs      map[string]*nsObjects
	dirty     map[string]*dirtyNS
	synced    bool
	lastKnown *lastKnown // loaded objects not confirmed by the sources; nil when none
	onPublish func(PublishInfo)
	counts    objectCounts

	buildMu sync.Mutex // serializes builds; guards the fields below
	cur     *Snapshot
	serial  uint32
	pk      packer
}

// domain is a configured cluster domain, prepared.
type domain struct {
	name    string
	wire    []byte
	nlabels int
	mname   []byte // ns.dns.<zone>
	rname   []byte // hostmaster.<zone>
}

type dirtyBits uint8

const (
	dirtyServices dirtyBits = 1 << iota // services or endpoint slices
	dirtyPods
	dirtyExists // only the explicit namespace flag
)

// dirtyNS is what changed in one namespace since the last build.
type dirtyNS struct {
	bits dirtyBits
	// all: rebuild every service of the namespace (ReplaceAll); otherwise
	// only the services in svcs (keys of nsObjects.groups).
	all  bool
	svcs map[string]struct{}
}

type nsObjects struct {
	explicit bool // SetNamespace'd
	services map[string]*Service
	slices   map[string]*EndpointSlice
	pods     map[string]*Pod
	// groups files Services and slices under the lowercased service name
	// (svcKey), so one service is rebuilt from its own objects.
	groups map[string]*svcGroup
}

// svcGroup is the objects of one service name: normally one Service and
// its slices. Slices without a service name are in no group.
type svcGroup struct {
	services []*Service
	slices   []*EndpointSlice
}

func svcKey(name string) string { return strings.ToLower(name) }

func newNSObjects() *nsObjects {
	return &nsObjects{
		services: make(map[string]*Service),
		slices:   make(map[string]*EndpointSlice),
		pods:     make(map[string]*Pod),
		groups:   make(map[string]*svcGroup),
	}
}

func (o *nsObjects) group(key string) *svcGroup {
	g := o.groups[key]
	if g == nil {
		g = &svcGroup{}
		o.groups[key] = g
	}
	return g
}

// fileService puts svc into its group, replacing the Service of the same
// name; unfileService takes the Service named name out.
func (o *nsObjects) fileService(svc *Service) {
	g := o.group(svcKey(svc.Name))
	g.services = slices.DeleteFunc(g.services, func(x *Service) bool { return x.Name == svc.Name })
	g.services = append(g.services, svc)
}

func (o *nsObjects) unfileService(name string) {
	key := svcKey(name)
	if g := o.groups[key]; g != nil {
		g.services = slices.DeleteFunc(g.services, func(x *Service) bool { return x.Name == name })
		o.dropIfEmpty(key, g)
	}
}

func (o *nsObjects) fileSlice(es *EndpointSlice) {
	if es.ServiceName == "" {
		return
	}
	g := o.group(svcKey(es.ServiceName))
	g.slices = append(g.slices, es)
}

func (o *nsObjects) unfileSlice(es *EndpointSlice) {
	key := svcKey(es.ServiceName)
	if g := o.groups[key]; g != nil {
		g.slices = slices.DeleteFunc(g.slices, func(x *EndpointSlice) bool { return x == es })
		o.dropIfEmpty(key, g)
	}
}

func (o *nsObjects) dropIfEmpty(key string, g *svcGroup) {
	if len(g.services) == 0 && len(g.slices) == 0 {
		delete(o.groups, key)
	}
}

// exists: a namespace exists if it was set, or any object lives in it (the
// API server cannot hold an object in a namespace that does not exist).
func (o *nsObjects) exists() bool {
	return o.explicit || len(o.services) > 0 || len(o.slices) > 0 || len(o.pods) > 0
}

type objectCounts struct {
	services, slices, endpoints, pods int
}

// PublishInfo describes one published Snapshot, for metrics and tests.
type PublishInfo struct {
	Serial uint32
	// Synced: built from fully synced sources. LastKnown: built from a
	// previous run's objects (LoadLastKnown) the sources have not
	// confirmed yet; such a zone answers too, but is not Synced.
	Synced, LastKnown bool
	// BuildDuration is the time spent building the snapshot.
	BuildDuration time.Duration
	// Namespaces is the number of namespaces in the snapshot; Rebuilt how
	// many of them this build touched, Repacked how many services.
	Namespaces int
	Rebuilt    int
	Repacked   int
	// Objects held by the Builder when the build started.
	Services, EndpointSlices, Endpoints, Pods int
}

// NewBuilder validates cfg and returns a Builder publishing to store. It
// publishes an unsynced snapshot at once, so cluster names get SERVFAIL
// (not forwarded) until SetSynced and the next build.
func NewBuilder(cfg Config, store *Store) (*Builder, error) {
	if store == nil {
		return nil, errors.New("zone: nil store")
	}
	if len(cfg.Domains) == 0 {
		return nil, errors.New("zone: no cluster domain")
	}
	if cfg.TTL == 0 {
		cfg.TTL = 5
	}
	if cfg.SOATTL == 0 {
		cfg.SOATTL = 30
	}
	if cfg.Debounce <= 0 {
		cfg.Debounce = 20 * time.Millisecond
	}
	if cfg.PodMode < PodsInsecure || cfg.PodMode > PodsDisabled {
		return nil, fmt.Errorf("zone: pod mode %d: unknown", cfg.PodMode)
	}
	b := &Builder{
		store: store,
		kick:  make(chan struct{}, 1),
		now:   time.Now,
		objs:  make(map[string]*nsObjects),
		dirty: make(map[string]*dirtyNS),
	}
	seen := make(map[string]bool)
	for _, d := range cfg.Domains {
		name := strings.ToLower(strings.TrimSuffix(d, "."))
		w, ok := wireName(name)
		if !ok || len(w)+len("\x0bdns-version") > 255 {
			return nil, fmt.Errorf("zone: cluster domain %q: not a valid domain name", d)
		}
		if seen[name] {
			return nil, fmt.Errorf("zone: cluster domain %q: listed twice", d)
		}
		seen[name] = true
		b.domains = append(b.domains, domain{
			name:    name,
			wire:    w,
			nlabels: strings.Count(name, ".") + 1,
			mname:   append([]byte("\x02ns\x03dns"), w...),
			rname:   append([]byte("\x0ahostmaster"), w...),
		})
	}
	var addrs []netip.Addr
	for _, in := range cfg.NSAddrs {
		a, ok := normAddr(in)
		if !ok {
			return nil, fmt.Errorf("zone: nameserver address %v: not usable", in)
		}
		addrs = append(addrs, a)
	}
	cfg.NSAddrs = sortAddrs(addrs)
	cfg.Domains = append([]string(nil), cfg.Domains...)
	b.cfg = cfg

	b.buildMu.Lock()
	b.cur = &Snapshot{podMode: cfg.PodMode, ttl: cfg.TTL, ns: map[string]*nsData{}, ip: &ipIndex{}}
	b.publishLocked(b.cur, PublishInfo{}, nil)
	b.buildMu.Unlock()
	return b, nil
}

// OnPublish sets a function called after each publish, from the goroutine
// that built the snapshot (Run or Flush). It must be quick and must not call
// Flush. Safe for concurrent use.
func (b *Builder) OnPublish(fn func(PublishInfo)) {
	b.mu.Lock()
	b.onPublish = fn
	b.mu.Unlock()
}

// wake tells Run there is work, without blocking.
func (b *Builder) wake() {
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

// ns returns the objects of namespace name, creating them; b.mu held.
func (b *Builder) ns(name string) *nsObjects {
	o := b.objs[name]
	if o == nil {
		o = newNSObjects()
		b.objs[name] = o
	}
	return o
}

// touch marks namespace name dirty, with the services of svcKeys, and
// drops it when empty; b.mu held.
func (b *Builder) touch(name string, bits dirtyBits, svcKeys ...string) {
	d := b.dirty[name]
	if d == nil {
		d = &dirtyNS{}
		b.dirty[name] = d
	}
	d.bits |= bits
	for _, k := range svcKeys {
		if k == "" {
			continue // a slice without a service name is in no service
		}
		if d.svcs == nil {
			d.svcs = make(map[string]struct{})
		}
		d.svcs[k] = struct{}{}
	}
	if o := b.objs[name]; o != nil && !o.exists() {
		delete(b.objs, name)
	}
}

// SetNamespace records that a namespace exists (its <ns>.svc.<zone> is
// then NODATA rather than NXDOMAIN, SPEC R11).
func (b *Builder) SetNamespace(name string) {
	b.mu.Lock()
	b.lastKnown.confirm(kindNamespace, name)
	o := b.ns(name)
	if !o.explicit {
		o.explicit = true
		b.touch(name, dirtyExists)
	}
	b.mu.Unlock()
	b.wake()
}

// DeleteNamespace forgets the namespace itself; objects still in it keep
// it alive until their own deletes arrive.
func (b *Builder) DeleteNamespace(name string) {
	b.mu.Lock()
	b.deleteNamespaceLocked(name)
	b.mu.Unlock()
	b.wake()
}

func (b *Builder) deleteNamespaceLocked(name string) {
	b.lastKnown.confirm(kindNamespace, name)
	if o := b.objs[name]; o != nil && o.explicit {
		o.explicit = false
		b.touch(name, dirtyExists)
	}
}

// SetService adds or replaces a Service. nil is ignored.
func (b *Builder) SetService(svc *Service) {
	if svc == nil {
		return
	}
	b.mu.Lock()
	b.lastKnown.confirm(kindService, svc.Namespace+"/"+svc.Name)
	o := b.ns(svc.Namespace)
	if o.services[svc.Name] == nil {
		b.counts.services++
	}
	o.services[svc.Name] = svc
	o.fileService(svc)
	b.touch(svc.Namespace, dirtyServices, svcKey(svc.Name))
	b.mu.Unlock()
	b.wake()
}

// DeleteService removes a Service.
func (b *Builder) DeleteService(namespace, name string) {
	b.mu.Lock()
	b.deleteServiceLocked(namespace, name)
	b.mu.Unlock()
	b.wake()
}

func (b *Builder) deleteServiceLocked(namespace, name string) {
	b.lastKnown.confirm(kindService, namespace+"/"+name)
	if o := b.objs[namespace]; o != nil && o.services[name] != nil {
		delete(o.services, name)
		o.unfileService(name)
		b.counts.services--
		b.touch(namespace, dirtyServices, svcKey(name))
	}
}

// SetEndpointSlice adds or replaces an EndpointSlice. nil is ignored.
func (b *Builder) SetEndpointSlice(es *EndpointSlice) {
	if es == nil {
		return
	}
	b.mu.Lock()
	b.lastKnown.confirm(kindSlice, es.Namespace+"/"+es.Name)
	o := b.ns(es.Namespace)
	oldKey := ""
	if old := o.slices[es.Name]; old != nil {
		b.counts.endpoints -= len(old.Endpoints)
		o.unfileSlice(old)
		oldKey = svcKey(old.ServiceName)
	} else {
		b.counts.slices++
	}
	o.slices[es.Name] = es
	o.fileSlice(es)
	b.counts.endpoints += len(es.Endpoints)
	// Both services when the slice moved from one to another.
	b.touch(es.Namespace, dirtyServices, oldKey, svcKey(es.ServiceName))
	b.mu.Unlock()
	b.wake()
}

// DeleteEndpointSlice removes an EndpointSlice.
func (b *Builder) DeleteEndpointSlice(namespace, name string) {
	b.mu.Lock()
	b.deleteEndpointSliceLocked(namespace, name)
	b.mu.Unlock()
	b.wake()
}

func (b *Builder) deleteEndpointSliceLocked(namespace, name string) {
	b.lastKnown.confirm(kindSlice, namespace+"/"+name)
	if o := b.objs[namespace]; o != nil && o.slices[name] != nil {
		old := o.slices[name]
		b.counts.endpoints -= len(old.Endpoints)
		b.counts.slices--
		delete(o.slices, name)
		o.unfileSlice(old)
		b.touch(namespace, dirtyServices, svcKey(old.ServiceName))
	}
}

// SetPod adds or replaces a Pod. nil is ignored.
func (b *Builder) SetPod(p *Pod) {
	if p == nil {
		return
	}
	b.mu.Lock()
	b.lastKnown.confirm(kindPod, p.Namespace+"/"+p.Name)
	o := b.ns(p.Namespace)
	if o.pods[p.Name] == nil {
		b.counts.pods++
	}
	o.pods[p.Name] = p
	b.touch(p.Namespace, dirtyPods)
	b.mu.Unlock()
	b.wake()
}

// DeletePod removes a Pod.
func (b *Builder) DeletePod(namespace, name string) {
	b.mu.Lock()
	b.deletePodLocked(namespace, name)
	b.mu.Unlock()
	b.wake()
}

func (b *Builder) deletePodLocked(namespace, name string) {
	b.lastKnown.confirm(kindPod, namespace+"/"+name)
	if o := b.objs[namespace]; o != nil && o.pods[name] != nil {
		delete(o.pods, name)
		b.counts.pods--
		b.touch(namespace, dirtyPods)
	}
}

// ReplaceAll swaps the whole object set (zone-file mode). Only namespaces
// whose objects differ from the current ones are marked dirty, so a reload
// of an unchanged file rebuilds nothing. Objects without a name are
// skipped; of two objects with the same namespace/name the last wins.
func (b *Builder) ReplaceAll(objs Objects) {
	next := make(map[string]*nsObjects)
	get := func(name string) *nsObjects {
		o := next[name]
		if o == nil {
			o = newNSObjects()
			next[name] = o
		}
		return o
	}
	var counts objectCounts
	for _, ns := range objs.Namespaces {
		get(ns).explicit = true
	}
	for _, s := range objs.Services {
		if s != nil {
			get(s.Namespace).services[s.Name] = s
		}
	}
	for _, es := range objs.EndpointSlices {
		if es != nil {
			get(es.Namespace).slices[es.Name] = es
		}
	}
	for _, p := range objs.Pods {
		if p != nil {
			get(p.Namespace).pods[p.Name] = p
		}
	}
	for _, o := range next {
		for _, s := range o.services {
			o.fileService(s)
		}
		for _, es := range o.slices {
			o.fileSlice(es)
		}
		counts.services += len(o.services)
		counts.slices += len(o.slices)
		counts.pods += len(o.pods)
		for _, es := range o.slices {
			counts.endpoints += len(es.Endpoints)
		}
	}

	b.mu.Lock()
	mark := func(name string, bits dirtyBits) {
		if bits == 0 {
			return
		}
		d := b.dirty[name]
		if d == nil {
			d = &dirtyNS{}
			b.dirty[name] = d
		}
		d.bits |= bits
		if bits&dirtyServices != 0 {
			d.all = true // a file reload: compare per namespace, not per service
		}
	}
	for name, o := range next {
		mark(name, diffNamespace(b.objs[name], o))
	}
	for name, o := range b.objs {
		if next[name] == nil {
			mark(name, diffNamespace(o, nil))
		}
	}
	b.objs = next
	b.counts = counts
	b.mu.Unlock()
	b.wake()
}

// SetSynced marks the sources synced; snapshots published from then on
// answer cluster names instead of SERVFAIL. After LoadLastKnown, it also
// deletes every loaded object the sources did not set or delete since:
// the sources have listed everything, so those are gone.
func (b *Builder) SetSynced() {
	b.mu.Lock()
	b.synced = true
	if lk := b.lastKnown; lk != nil {
		b.lastKnown = nil
		for key := range lk.keys[kindService] {
			ns, name, _ := strings.Cut(key, "/")
			b.deleteServiceLocked(ns, name)
		}
		for key := range lk.keys[kindSlice] {
			ns, name, _ := strings.Cut(key, "/")
			b.deleteEndpointSliceLocked(ns, name)
		}
		for key := range lk.keys[kindPod] {
			ns, name, _ := strings.Cut(key, "/")
			b.deletePodLocked(ns, name)
		}
		for name := range lk.keys[kindNamespace] {
			b.deleteNamespaceLocked(name)
		}
	}
	b.mu.Unlock()
	b.wake()
}

// LoadLastKnown serves objs, the zone's objects as a previous run last
// knew them (SaveLastKnown), until the sources sync: the cluster names of
// a node whose nodedns restarts while the API server is unreachable keep
// answering, as they do for one that keeps running. Call it before the
// sources start. What the sources set or delete replaces the loaded
// object; what they never mention is deleted at SetSynced.
func (b *Builder) LoadLastKnown(objs Objects) {
	lk := &lastKnown{}
	for _, ns := range objs.Namespaces {
		lk.add(kindNamespace, ns)
	}
	for _, s := range objs.Services {
		if s != nil {
			lk.add(kindService, s.Namespace+"/"+s.Name)
		}
	}
	for _, es := range objs.EndpointSlices {
		if es != nil {
			lk.add(kindSlice, es.Namespace+"/"+es.Name)
		}
	}
	for _, p := range objs.Pods {
		if p != nil {
			lk.add(kindPod, p.Namespace+"/"+p.Name)
		}
	}
	b.ReplaceAll(objs)
	b.mu.Lock()
	b.lastKnown = lk
	b.synced = true
	b.mu.Unlock()
	b.wake()
}

// Objects returns the objects the zone is built from, for SaveLastKnown.
// They are shared with the Builder and must not be modified.
func (b *Builder) Objects() Objects {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := Objects{
		Services:       make([]*Service, 0, b.counts.services),
		EndpointSlices: make([]*EndpointSlice, 0, b.counts.slices),
		Pods:           make([]*Pod, 0, b.counts.pods),
	}
	for name, o := range b.objs {
		if o.explicit {
			out.Namespaces = append(out.Namespaces, name)
		}
		for _, s := range o.services {
			out.Services = append(out.Services, s)
		}
		for _, es := range o.slices {
			out.EndpointSlices = append(out.EndpointSlices, es)
		}
		for _, p := range o.pods {
			out.Pods = append(out.Pods, p)
		}
	}
	return out
}

type objectKind int

const (
	kindNamespace objectKind = iota
	kindService
	kindSlice
	kindPod
	objectKinds
)

// lastKnown is what LoadLastKnown loaded and the sources have not
// mentioned yet, by kind: namespace names and namespace/name keys.
type lastKnown struct {
	keys [objectKinds]map[string]struct{}
}

func (lk *lastKnown) add(kind objectKind, key string) {
	if lk.keys[kind] == nil {
		lk.keys[kind] = make(map[string]struct{})
	}
	lk.keys[kind][key] = struct{}{}
}

// confirm forgets key: the sources have told its fate. A nil lastKnown
// (nothing loaded, or synced since) does nothing.
func (lk *lastKnown) confirm(kind objectKind, key string) {
	if lk != nil {
		delete(lk.keys[kind], key)
	}
}

// Run publishes a snapshot after each burst of changes until ctx ends: the
// first change of a burst starts the debounce timer, and everything that
// arrives before it fires goes into the same build. Bursts longer than the
// debounce thus publish once per debounce period, never starve.
func (b *Builder) Run(ctx context.Context) {
	t := time.NewTimer(b.cfg.Debounce)
	t.Stop()
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-b.kick:
		}
		t.Reset(b.cfg.Debounce)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		b.Flush()
	}
}

// Flush builds and publishes pending changes now; for tests and start-up.
// It publishes nothing when nothing changed. Safe for concurrent use.
func (b *Builder) Flush() {
	b.buildMu.Lock()
	defer b.buildMu.Unlock()
	b.buildLocked()
}
