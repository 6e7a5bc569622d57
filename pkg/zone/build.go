package zone

import (
	"maps"
	"net/netip"
	"slices"
	"time"
)

// nsInput is a consistent copy of one dirty namespace, taken under b.mu so
// the build itself runs without holding it.
type nsInput struct {
	name     string
	bits     dirtyBits
	exists   bool
	services []*Service
	slices   []*EndpointSlice
	pods     []*Pod
}

// buildLocked builds and publishes a snapshot if anything changed; b.buildMu
// held.
func (b *Builder) buildLocked() {
	start := time.Now()
	old := b.cur

	b.mu.Lock()
	work := make([]nsInput, 0, len(b.dirty))
	for name, bits := range b.dirty {
		if old.ns[name] == nil {
			bits |= dirtyServices | dirtyPods // new: build everything
		}
		in := nsInput{name: name, bits: bits}
		if o := b.objs[name]; o != nil {
			in.exists = o.exists()
			if bits&dirtyServices != 0 {
				in.services = slices.Collect(maps.Values(o.services))
				in.slices = slices.Collect(maps.Values(o.slices))
			}
			if bits&dirtyPods != 0 {
				in.pods = slices.Collect(maps.Values(o.pods))
			}
		}
		work = append(work, in)
	}
	clear(b.dirty)
	synced := b.synced
	info := PublishInfo{
		Services:       b.counts.services,
		EndpointSlices: b.counts.slices,
		Endpoints:      b.counts.endpoints,
		Pods:           b.counts.pods,
	}
	fn := b.onPublish
	b.mu.Unlock()

	if len(work) == 0 && synced == old.synced {
		return
	}
	snap := &Snapshot{
		synced:        synced,
		podMode:       b.cfg.PodMode,
		ttl:           b.cfg.TTL,
		ns:            old.ns,
		podNamespaces: old.podNamespaces,
		ip:            old.ip,
	}
	if len(work) > 0 {
		snap.ns = maps.Clone(old.ns)
		w := newIPIndexWriter(old.ip, b.cfg.TTL)
		for i := range work {
			in := &work[i]
			prev := old.ns[in.name]
			if prev != nil && in.exists && in.bits == dirtyExists {
				continue // still exists; nothing else changed
			}
			var d *nsData
			if in.exists && isLabel(in.name) {
				d = b.buildNamespace(in, prev)
			}
			var oldPtrs, newPtrs []ptrContrib
			var oldPods, newPods []netip.Addr
			if prev != nil {
				oldPtrs, oldPods = prev.ptrs, prev.pods
				if len(prev.pods) > 0 {
					snap.podNamespaces--
				}
			}
			if d != nil {
				newPtrs, newPods = d.ptrs, d.pods
				if len(d.pods) > 0 {
					snap.podNamespaces++
				}
				snap.ns[in.name] = d
			} else {
				delete(snap.ns, in.name)
			}
			gone := prev == nil || d == nil
			w.replace(in.name, oldPtrs, newPtrs, oldPods, newPods,
				gone || in.bits&dirtyServices != 0, gone || in.bits&dirtyPods != 0)
			info.Rebuilt++
		}
		snap.ip = w.result()
	}
	info.BuildDuration = time.Since(start)
	b.publishLocked(snap, info, fn)
}

// buildNamespace builds the data of one existing namespace, reusing what
// did not change from prev (nil for a new namespace).
func (b *Builder) buildNamespace(in *nsInput, prev *nsData) *nsData {
	d := &nsData{name: in.name}
	if prev != nil && in.bits&dirtyServices == 0 {
		d.zones, d.ptrs, d.services = prev.zones, prev.ptrs, prev.services
	} else {
		models := modelNamespace(in.services, in.slices, b.cfg.EndpointPodNames)
		d.services = len(models)
		nptr := 0
		for _, m := range models {
			nptr += ptrCount(m)
		}
		d.ptrs = make([]ptrContrib, 0, nptr)
		d.zones = make([]*nsZone, len(b.domains))
		for zi := range b.domains {
			nz := &nsZone{services: make(map[string]*svcNode, len(models))}
			for _, m := range models {
				svcWire := svcWireName(m.name, in.name, b.domains[zi].wire)
				nz.services[m.name] = b.pk.packService(m, svcWire, b.cfg.TTL)
				if zi == 0 {
					// PTR targets name the primary domain only, as CoreDNS.
					d.ptrs = ptrContribs(d.ptrs, m, svcWire)
				}
			}
			d.zones[zi] = nz
		}
	}
	if prev != nil && in.bits&dirtyPods == 0 {
		d.pods = prev.pods
	} else {
		d.pods = podAddrs(in.pods)
	}
	return d
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
		info.Serial, info.Synced, info.Namespaces = serial, snap.synced, len(snap.ns)
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
