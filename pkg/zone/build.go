package zone

import (
	"maps"
	"net/netip"
	"slices"
	"time"
)

// nsInput is a consistent copy of what changed in one namespace, taken
// under b.mu so the build itself runs without holding it.
type nsInput struct {
	name   string
	bits   dirtyBits
	exists bool
	// all: groups holds every service of the namespace, and services of
	// the previous build not in it are gone. Otherwise groups holds only
	// the services to rebuild (a zero svcGroup: the service is gone).
	all    bool
	groups map[string]svcGroup
	pods   []*Pod
}

// buildLocked builds and publishes a snapshot if anything changed; b.buildMu
// held.
func (b *Builder) buildLocked() {
	start := time.Now()
	old := b.cur

	b.mu.Lock()
	work := make([]nsInput, 0, len(b.dirty))
	for name, dn := range b.dirty {
		prev := old.ns[name]
		in := nsInput{name: name, bits: dn.bits, all: dn.all || prev == nil}
		if prev == nil {
			in.bits |= dirtyServices | dirtyPods // new: build everything
		}
		o := b.objs[name]
		if o != nil {
			in.exists = o.exists()
			if in.bits&dirtyPods != 0 {
				in.pods = slices.Collect(maps.Values(o.pods))
			}
		}
		if in.bits&dirtyServices != 0 {
			// Copies: the groups' slices change in place after b.mu is released.
			in.groups = make(map[string]svcGroup, len(dn.svcs))
			copyGroup := func(key string) {
				var g svcGroup
				if o != nil && o.groups[key] != nil {
					g.services = slices.Clone(o.groups[key].services)
					g.slices = slices.Clone(o.groups[key].slices)
				}
				in.groups[key] = g
			}
			if in.all {
				if o != nil {
					for key := range o.groups {
						copyGroup(key)
					}
				}
			} else {
				for key := range dn.svcs {
					copyGroup(key)
				}
			}
		}
		work = append(work, in)
	}
	clear(b.dirty)
	synced, lastKnown := b.synced, b.lastKnown != nil
	info := PublishInfo{
		Services:       b.counts.services,
		EndpointSlices: b.counts.slices,
		Endpoints:      b.counts.endpoints,
		Pods:           b.counts.pods,
	}
	fn := b.onPublish
	b.mu.Unlock()

	if len(work) == 0 && synced == old.synced && lastKnown == old.lastKnown {
		return
	}
	snap := &Snapshot{
		synced:        synced,
		lastKnown:     lastKnown,
		podMode:       b.cfg.PodMode,
		ttl:           b.cfg.TTL,
		ns:            old.ns,
		podNamespaces: old.podNamespaces,
		ip:            old.ip,
	}
	if len(work) > 0 {
		snap.ns = maps.Clone(old.ns)
		w := newIPIndexWriter(old.ip)
		for i := range work {
			in := &work[i]
			prev := old.ns[in.name]
			if prev != nil && in.exists && in.bits == dirtyExists {
				continue // still exists; nothing else changed
			}
			var d *nsData
			if in.exists && isLabel(in.name) {
				d = b.buildNamespace(in, prev, w, &info)
			} else if prev != nil {
				for _, nodes := range prev.svcs {
					w.replacePtrs(nodes[0], nil)
				}
			}
			var oldPods, newPods []netip.Addr
			if prev != nil {
				oldPods = prev.pods
				if len(prev.pods) > 0 {
					snap.podNamespaces--
				}
			}
			if d != nil {
				newPods = d.pods
				if len(d.pods) > 0 {
					snap.podNamespaces++
				}
				snap.ns[in.name] = d
			} else {
				delete(snap.ns, in.name)
			}
			if prev == nil || d == nil || in.bits&dirtyPods != 0 {
				w.replacePods(in.name, oldPods, newPods)
			}
			info.Rebuilt++
		}
		snap.ip = w.result()
	}
	info.BuildDuration = time.Since(start)
	b.publishLocked(snap, info, fn)
}

// buildNamespace builds the data of one existing namespace, reusing what
// did not change from prev (nil for a new namespace), and updates the PTR
// records of the services it repacks in w.
func (b *Builder) buildNamespace(in *nsInput, prev *nsData, w *ipIndexWriter, info *PublishInfo) *nsData {
	d := &nsData{name: in.name}
	switch {
	case in.bits&dirtyServices == 0:
		d.svcs = prev.svcs
	case in.all:
		d.svcs = make(map[string][]*svcNode, len(in.groups))
	default:
		d.svcs = maps.Clone(prev.svcs)
	}
	if in.bits&dirtyServices != 0 {
		for key, g := range in.groups {
			var old []*svcNode
			if prev != nil {
				old = prev.svcs[key]
			}
			nodes := b.buildService(in.name, key, g, old)
			info.Repacked++
			if nodes == nil {
				delete(d.svcs, key)
			} else {
				d.svcs[key] = nodes
			}
			w.replacePtrs(first(old), first(nodes))
		}
		if in.all && prev != nil {
			for key, old := range prev.svcs {
				if _, ok := in.groups[key]; !ok {
					w.replacePtrs(old[0], nil)
				}
			}
		}
	}
	if prev != nil && in.bits&dirtyPods == 0 {
		d.pods = prev.pods
	} else {
		d.pods = podAddrs(in.pods)
	}
	return d
}

func first(nodes []*svcNode) *svcNode {
	if len(nodes) == 0 {
		return nil
	}
	return nodes[0]
}

// buildService packs the service key of namespace ns, once per domain; nil
// when it has no records. old is its previous build (nil if none), whose
// svcIdent it keeps.
func (b *Builder) buildService(ns, key string, g svcGroup, old []*svcNode) []*svcNode {
	m := modelGroup(key, g.services, g.slices, b.cfg.EndpointPodNames)
	if m == nil {
		return nil
	}
	id := &svcIdent{}
	if len(old) > 0 {
		id = old[0].id
	} else {
		id.wire = svcWireName(m.name, ns, b.domains[0].wire)
	}
	nodes := make([]*svcNode, len(b.domains))
	for zi := range b.domains {
		svcWire := id.wire
		if zi > 0 {
			svcWire = svcWireName(m.name, ns, b.domains[zi].wire)
		}
		nodes[zi] = b.pk.packService(m, svcWire, b.cfg.TTL)
		nodes[zi].id = id
	}
	return nodes
}

// podAddrs returns the addresses of a namespace's Pods; hostNetwork Pods
// share the node's address and never identify a namespace.
func podAddrs(pods []*Pod) []netip.Addr {
	var out []netip.Addr
	for _, p := range pods {
		if p == nil || p.HostNetwork {
			continue
		}
		for _, a := range p.IPs {
			if a, ok := normAddr(a); ok {
				out = append(out, a)
			}
		}
	}
	if len(out) == 0 {
		return nil
	}
	return sortAddrs(out)
}

// publishLocked completes snap with the per-domain apex data and a new
// serial, and publishes it; b.buildMu held.
func (b *Builder) publishLocked(snap *Snapshot, info PublishInfo, fn func(PublishInfo)) {
	serial := uint32(b.now().Unix())
	if serial <= b.serial {
		serial = b.serial + 1 // RFC 1982 increment; one per publish
	}
	b.serial = serial
	snap.serial = serial
	snap.zones = make([]*zoneData, len(b.domains))
	for i := range b.domains {
		snap.zones[i] = b.zoneData(i, serial)
	}
	slices.SortStableFunc(snap.zones, func(x, y *zoneData) int { return y.nlabels - x.nlabels })
	b.store.Publish(snap)
	b.cur = snap
	if fn != nil {
		info.Serial, info.Namespaces = serial, len(snap.ns)
		info.Synced, info.LastKnown = snap.synced && !snap.lastKnown, snap.lastKnown
		fn(info)
	}
}

// zoneData packs the apex records of domain i (SPEC R1, R2).
func (b *Builder) zoneData(i int, serial uint32) *zoneData {
	d := &b.domains[i]
	ttl, soaTTL := b.cfg.TTL, b.cfg.SOATTL
	z := &zoneData{idx: i, wire: d.wire, nlabels: d.nlabels}
	// RFC 2308 §4: the SOA minimum is the negative TTL; §3: the SOA in a
	// negative answer has the TTL min(SOA TTL, minimum).
	z.neg = appendSOA(nil, d.wire, min(soaTTL, ttl), d.mname, d.rname, serial, ttl)
	soa := appendSOA(nil, nil, soaTTL, d.mname, d.rname, serial, ttl)
	ns := appendNameRR(nil, nil, typeNS, soaTTL, d.mname)
	for _, a := range b.cfg.NSAddrs {
		ns = appendAddrRR(ns, d.mname, soaTTL, a)
	}
	z.apex.sets = []rrset{
		{typ: typeSOA, an: 1, rec: soa},
		{typ: typeNS, an: 1, ar: uint16(len(b.cfg.NSAddrs)), rec: ns},
	}
	z.version.sets = []rrset{{typ: typeTXT, an: 1, rec: appendTXT(nil, nil, soaTTL, "1.1.0")}}
	for _, want4 := range [2]bool{true, false} {
		var rec []byte
		var an uint16
		for _, a := range b.cfg.NSAddrs {
			if a.Is4() == want4 {
				rec = appendAddrRR(rec, nil, soaTTL, a)
				an++
			}
		}
		if an > 0 {
			typ := typeAAAA
			if want4 {
				typ = typeA
			}
			z.nsHost.sets = append(z.nsHost.sets, rrset{typ: typ, an: an, rec: rec})
		}
	}
	return z
}

// diffNamespace says what differs between two object sets of a namespace
// (either may be nil).
func diffNamespace(a, b *nsObjects) dirtyBits {
	var bits dirtyBits
	var ae, be bool
	var as, bs map[string]*Service
	var aes, bes map[string]*EndpointSlice
	var ap, bp map[string]*Pod
	if a != nil {
		ae, as, aes, ap = a.explicit, a.services, a.slices, a.pods
	}
	if b != nil {
		be, bs, bes, bp = b.explicit, b.services, b.slices, b.pods
	}
	if ae != be {
		bits |= dirtyExists
	}
	if !maps.EqualFunc(as, bs, serviceEqual) || !maps.EqualFunc(aes, bes, sliceEqual) {
		bits |= dirtyServices
	}
	if !maps.EqualFunc(ap, bp, podEqual) {
		bits |= dirtyPods
	}
	return bits
}

func portsEqual(a, b []Port) bool { return slices.Equal(a, b) }

func serviceEqual(a, b *Service) bool {
	if a == b {
		return true
	}
	return a.Namespace == b.Namespace && a.Name == b.Name && a.Headless == b.Headless &&
		a.ExternalName == b.ExternalName && a.PublishNotReady == b.PublishNotReady &&
		slices.Equal(a.ClusterIPs, b.ClusterIPs) && portsEqual(a.Ports, b.Ports)
}

func sliceEqual(a, b *EndpointSlice) bool {
	if a == b {
		return true
	}
	return a.Namespace == b.Namespace && a.Name == b.Name && a.ServiceName == b.ServiceName &&
		a.AddressType == b.AddressType && portsEqual(a.Ports, b.Ports) &&
		slices.EqualFunc(a.Endpoints, b.Endpoints, func(x, y Endpoint) bool {
			return x.Hostname == y.Hostname && x.Ready == y.Ready && x.Terminating == y.Terminating &&
				x.PodName == y.PodName && slices.Equal(x.Addresses, y.Addresses)
		})
}

func podEqual(a, b *Pod) bool {
	if a == b {
		return true
	}
	return a.Namespace == b.Namespace && a.Name == b.Name && a.HostNetwork == b.HostNetwork &&
		slices.Equal(a.IPs, b.IPs)
}
