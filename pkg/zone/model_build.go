package zone

import (
	"cmp"
	"net/netip"
	"slices"
	"strings"
)

// This file turns one namespace's objects into a domain-independent model:
// which names exist below each service and which addresses and SRV targets
// they have. pack_build.go then packs the model once per domain.

type svcKind uint8

const (
	kindClusterIP svcKind = iota
	kindHeadless
	kindExternal
)

type svcModel struct {
	name string
	kind svcKind
	// ips: ClusterIPs (kindClusterIP) or every ready endpoint address
	// (kindHeadless), sorted and deduplicated.
	ips []netip.Addr
	ext []byte // ExternalName target, wire format
	// names are the endpoint names below the service (SPEC R5, R6, R6b),
	// sorted by label.
	names []epName
	srv   []srvModel // sorted by key
}

type epName struct {
	label string
	addrs []netip.Addr // sorted, deduplicated
	// named: a hostname or Pod name gave the label (otherwise it is the
	// dashed form of its one address).
	named bool
}

type srvModel struct {
	key     string // wire labels "\x05_http\x04_tcp"
	targets []srvTarget
}

// srvTarget is one SRV record: label "" is the service name itself
// (ClusterIP services), otherwise an endpoint name below it.
type srvTarget struct {
	label string
	port  uint16
}

// protoKey returns the "_<proto>" ENT key of an SRV key.
func (m *srvModel) protoKey() string {
	return m.key[1+int(m.key[0]):]
}

// servable says whether an endpoint is published (SPEC "Endpoint
// readiness"). Ready (nil = true) counts, Terminating never does, unless
// the Service sets publishNotReadyAddresses: the API then says to disregard
// readiness (the EndpointSlice controller marks such endpoints ready even
// while terminating, and CoreDNS, which checks only ready, serves them), so
// StatefulSet peers keep finding each other through a rolling restart.
func servable(ep *Endpoint, publishNotReady bool) bool {
	return publishNotReady || (ep.Ready && !ep.Terminating)
}

// sliceFamily: 4, 6, 0 (unset: take each address as it is) or -1 (FQDN or
// unknown: ignored).
func sliceFamily(t string) int {
	switch t {
	case "IPv4":
		return 4
	case "IPv6":
		return 6
	case "":
		return 0
	}
	return -1
}

// portKey validates a named port and returns its SRV key.
func portKey(p Port) (key string, port uint16, ok bool) {
	if p.Name == "" || p.Port <= 0 || p.Port > 65535 {
		return "", 0, false
	}
	name, ok := lowerLabel(p.Name)
	if !ok || len(name) > 62 {
		return "", 0, false
	}
	var proto string
	switch strings.ToLower(p.Protocol) {
	case "", "tcp":
		proto = "_tcp"
	case "udp":
		proto = "_udp"
	case "sctp":
		proto = "_sctp"
	default:
		return "", 0, false
	}
	b := make([]byte, 0, 2+1+len(name)+len(proto))
	b = appendLabel(b, "_"+name)
	b = appendLabel(b, proto)
	return string(b), uint16(p.Port), true
}

// modelGroup builds the model of the service named key (lowercased) from
// the objects filed under that key: normally one Service and its slices.
// Objects that cannot give a valid record are skipped, never a panic. Two
// Services whose names differ only in case (a hand-written file) collapse
// to one name: the first of them by name that gives a model wins.
func modelGroup(key string, svcs []*Service, eps []*EndpointSlice, podNames bool) *svcModel {
	if !isLabel(key) {
		return nil
	}
	var mine []*EndpointSlice
	for _, es := range eps {
		if es == nil {
			continue
		}
		if name, ok := lowerLabel(es.ServiceName); ok && name == key {
			mine = append(mine, es)
		}
	}
	cands := make([]*Service, 0, len(svcs))
	for _, svc := range svcs {
		if svc == nil {
			continue
		}
		if name, ok := lowerLabel(svc.Name); ok && name == key {
			cands = append(cands, svc)
		}
	}
	slices.SortFunc(cands, func(a, b *Service) int { return strings.Compare(a.Name, b.Name) })
	for _, svc := range cands {
		if m := modelService(svc, key, mine, podNames); m != nil {
			return m
		}
	}
	return nil
}

func modelService(svc *Service, name string, eps []*EndpointSlice, podNames bool) *svcModel {
	m := &svcModel{name: name}
	switch {
	case svc.ExternalName != "":
		// CoreDNS answers only name targets; an IP literal is no CNAME target.
		if _, err := netip.ParseAddr(svc.ExternalName); err == nil {
			return nil
		}
		w, ok := wireName(svc.ExternalName)
		if !ok {
			return nil
		}
		m.kind, m.ext = kindExternal, w
		return m
	case svc.Headless:
		m.kind = kindHeadless
	default:
		for _, a := range svc.ClusterIPs {
			if a, ok := normAddr(a); ok {
				m.ips = append(m.ips, a)
			}
		}
		if len(m.ips) == 0 {
			return nil
		}
		m.ips = sortAddrs(m.ips)
		srv := make(map[string][]srvTarget)
		for _, p := range svc.Ports {
			if key, port, ok := portKey(p); ok {
				srv[key] = append(srv[key], srvTarget{port: port})
			}
		}
		m.srv = srvModels(srv)
	}

	// Endpoint names exist for every service with endpoints, headless or
	// not: CoreDNS answers them for ClusterIP services too, and the
	// Kubernetes docs promise <pod-ip>.<deployment>.<ns>.svc.<zone> for Pods
	// exposed by a Service (a schema extension, spec §3).
	names := make(map[string]*epName)
	var ready []netip.Addr
	var srv map[string][]srvTarget
	if m.kind == kindHeadless {
		srv = make(map[string][]srvTarget)
	}
	type namedPort struct {
		key  string
		port uint16
	}
	var ports []namedPort
	for _, es := range eps {
		fam := sliceFamily(es.AddressType)
		if fam < 0 {
			continue
		}
		ports = ports[:0]
		if srv != nil {
			for _, p := range es.Ports {
				if key, port, ok := portKey(p); ok {
					ports = append(ports, namedPort{key, port})
				}
			}
		}
		for i := range es.Endpoints {
			ep := &es.Endpoints[i]
			if !servable(ep, svc.PublishNotReady) {
				continue
			}
			host := ""
			if ep.Hostname != "" {
				if h, ok := lowerLabel(ep.Hostname); ok {
					host = h
				}
			}
			if host == "" && podNames && ep.PodName != "" {
				if p, ok := lowerLabel(ep.PodName); ok {
					host = p // SPEC R6b: a Pod name that fits one label
				}
			}
			for _, a := range ep.Addresses {
				a, ok := normAddr(a)
				if !ok || (fam == 4 && !a.Is4()) || (fam == 6 && a.Is4()) {
					continue
				}
				ready = append(ready, a)
				lbl := host
				if lbl == "" {
					lbl = dashedIP(a)
				}
				n := names[lbl]
				if n == nil {
					n = &epName{label: lbl}
					names[lbl] = n
				}
				n.addrs = append(n.addrs, a)
				n.named = n.named || host != ""
				for _, p := range ports {
					srv[p.key] = append(srv[p.key], srvTarget{label: lbl, port: p.port})
				}
			}
		}
	}
	if m.kind == kindHeadless {
		if len(ready) == 0 {
			return nil // SPEC R4: NXDOMAIN when no endpoint is ready
		}
		m.ips = sortAddrs(ready)
		m.srv = srvModels(srv)
	}
	m.names = make([]epName, 0, len(names))
	for _, n := range names {
		n.addrs = sortAddrs(n.addrs)
		m.names = append(m.names, *n)
	}
	slices.SortFunc(m.names, func(a, b epName) int { return strings.Compare(a.label, b.label) })
	return m
}

func sortAddrs(a []netip.Addr) []netip.Addr {
	slices.SortFunc(a, netip.Addr.Compare)
	return slices.Clip(slices.Compact(a))
}

func srvModels(srv map[string][]srvTarget) []srvModel {
	if len(srv) == 0 {
		return nil
	}
	out := make([]srvModel, 0, len(srv))
	for key, t := range srv {
		slices.SortFunc(t, func(a, b srvTarget) int {
			return cmp.Or(strings.Compare(a.label, b.label), cmp.Compare(a.port, b.port))
		})
		out = append(out, srvModel{key: key, targets: slices.Clip(slices.Compact(t))})
	}
	slices.SortFunc(out, func(a, b srvModel) int { return strings.Compare(a.key, b.key) })
	return out
}
