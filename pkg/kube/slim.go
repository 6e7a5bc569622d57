package kube

import (
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/nodedns/nodedns/pkg/zone"
)

// The Slim* functions are the one place where API objects become zone
// objects; pkg/zonefile uses them too, so the cluster and a zone file follow
// the same rules. They accept any object, including ones the API server
// would reject (nil pointers, unparsable IPs): bad parts are skipped, never a
// panic. A nil input gives a nil output. The results share no memory with the
// input.

// SlimService keeps what DNS needs of a Service (SPEC R3, R4, R7, R9).
//
// Type ExternalName gives only ExternalName (lowercased, without the trailing
// dot); clusterIP "None" gives Headless (so does clusterIPs: [None] when
// clusterIP is unset, as a hand-written file may say); otherwise ClusterIPs
// holds the parsable entries of spec.clusterIPs, or of spec.clusterIP when
// clusterIPs is empty (objects written before dual-stack, or by hand).
func SlimService(s *corev1.Service) *zone.Service {
	if s == nil {
		return nil
	}
	out := &zone.Service{
		Namespace:       s.Namespace,
		Name:            s.Name,
		PublishNotReady: s.Spec.PublishNotReadyAddresses,
	}
	ips := s.Spec.ClusterIPs
	if len(ips) == 0 && s.Spec.ClusterIP != "" {
		ips = []string{s.Spec.ClusterIP}
	}
	switch {
	case s.Spec.Type == corev1.ServiceTypeExternalName:
		out.ExternalName = NormalizeExternalName(s.Spec.ExternalName)
	case s.Spec.ClusterIP == corev1.ClusterIPNone || (s.Spec.ClusterIP == "" && len(ips) > 0 && ips[0] == corev1.ClusterIPNone):
		out.Headless = true
	default:
		for _, ip := range ips {
			if a, ok := ParseIP(ip); ok {
				out.ClusterIPs = append(out.ClusterIPs, a)
			}
		}
	}
	if len(s.Spec.Ports) > 0 {
		out.Ports = make([]zone.Port, 0, len(s.Spec.Ports))
		for _, p := range s.Spec.Ports {
			out.Ports = append(out.Ports, zone.Port{
				Name:     p.Name,
				Protocol: protocol(p.Protocol),
				Port:     p.Port,
			})
		}
	}
	return out
}

// SlimEndpointSlice keeps what DNS needs of an EndpointSlice (SPEC R4-R8).
//
// Addresses that do not parse, or are not of the slice's address type, are
// skipped, and so are endpoints left without addresses (FQDN slices thus
// keep no endpoints). Ports without a number are skipped. Ready counts nil as
// true and Terminating counts nil as false, as the API documents.
func SlimEndpointSlice(es *discoveryv1.EndpointSlice) *zone.EndpointSlice {
	if es == nil {
		return nil
	}
	out := &zone.EndpointSlice{
		Namespace:   es.Namespace,
		Name:        es.Name,
		ServiceName: es.Labels[discoveryv1.LabelServiceName],
		AddressType: intern(string(es.AddressType)),
	}
	for _, p := range es.Ports {
		if p.Port == nil {
			continue
		}
		zp := zone.Port{Port: *p.Port, Protocol: "TCP"}
		if p.Name != nil {
			zp.Name = *p.Name
		}
		if p.Protocol != nil {
			zp.Protocol = protocol(*p.Protocol)
		}
		out.Ports = append(out.Ports, zp)
	}
	// Exactly sized, in two allocations for the whole slice: a large zone
	// holds these for every endpoint (issue #8).
	naddr := 0
	for i := range es.Endpoints {
		naddr += len(es.Endpoints[i].Addresses)
	}
	all := make([]netip.Addr, 0, naddr)
	out.Endpoints = make([]zone.Endpoint, 0, len(es.Endpoints))
	for i := range es.Endpoints {
		ep := &es.Endpoints[i]
		first := len(all)
		for _, s := range ep.Addresses {
			a, ok := ParseIP(s)
			if !ok || !ofType(a, es.AddressType) {
				continue
			}
			all = append(all, a)
		}
		if len(all) == first {
			continue
		}
		zep := zone.Endpoint{Addresses: all[first:len(all):len(all)], Ready: true}
		if ep.Hostname != nil {
			zep.Hostname = strings.ToLower(*ep.Hostname)
		}
		if ep.Conditions.Ready != nil {
			zep.Ready = *ep.Conditions.Ready
		}
		if ep.Conditions.Terminating != nil {
			zep.Terminating = *ep.Conditions.Terminating
		}
		if ep.TargetRef != nil && ep.TargetRef.Kind == "Pod" {
			zep.PodName = ep.TargetRef.Name
		}
		out.Endpoints = append(out.Endpoints, zep)
	}
	if len(out.Endpoints) == 0 {
		out.Endpoints = nil
	}
	return out
}

// SlimPod keeps what pod records (verified mode) and autopath need of a Pod:
// its IPs (status.podIPs, or status.podIP when podIPs is empty) and whether
// it uses the host network. A Pod in phase Succeeded or Failed gets no IPs:
// its IPs may already belong to a newer Pod, in another namespace.
func SlimPod(p *corev1.Pod) *zone.Pod {
	if p == nil {
		return nil
	}
	out := &zone.Pod{
		Namespace:   p.Namespace,
		Name:        p.Name,
		HostNetwork: p.Spec.HostNetwork,
	}
	if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		return out
	}
	for _, ip := range PodIPs(p) {
		if a, ok := ParseIP(ip); ok {
			out.IPs = append(out.IPs, a)
		}
	}
	return out
}

// PodIPs returns the unparsed IPs of a Pod: status.podIPs, or status.podIP
// when podIPs is empty.
func PodIPs(p *corev1.Pod) []string {
	if len(p.Status.PodIPs) > 0 {
		ips := make([]string, 0, len(p.Status.PodIPs))
		for _, ip := range p.Status.PodIPs {
			ips = append(ips, ip.IP)
		}
		return ips
	}
	if p.Status.PodIP != "" {
		return []string{p.Status.PodIP}
	}
	return nil
}

// ParseIP parses an IP address as the API writes it: no zone, no brackets.
// IPv4-mapped IPv6 addresses are returned as IPv4.
func ParseIP(s string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

// NormalizeExternalName lowercases an ExternalName target and drops one
// trailing dot.
func NormalizeExternalName(s string) string {
	return strings.ToLower(strings.TrimSuffix(s, "."))
}

func ofType(a netip.Addr, t discoveryv1.AddressType) bool {
	switch t {
	case discoveryv1.AddressTypeIPv4:
		return a.Is4()
	case discoveryv1.AddressTypeIPv6:
		return a.Is6()
	}
	return false
}

// protocol defaults an empty protocol to TCP, as the API server does.
func protocol(p corev1.Protocol) string {
	if p == "" {
		return string(corev1.ProtocolTCP)
	}
	return intern(string(p))
}

// intern returns the constant for the usual protocol and address type
// values, so objects kept for the life of the process share them instead
// of holding the decoder's copies.
func intern(s string) string {
	switch s {
	case "TCP":
		return "TCP"
	case "UDP":
		return "UDP"
	case "SCTP":
		return "SCTP"
	case "IPv4":
		return "IPv4"
	case "IPv6":
		return "IPv6"
	}
	return s
}

// The equal functions decide whether an update changed anything DNS sees;
// most Pod and many EndpointSlice updates do not (conditions, container
// statuses, zone hints), and skipping them spares the Builder a rebuild.

func serviceEqual(a, b *zone.Service) bool {
	return a.Namespace == b.Namespace && a.Name == b.Name &&
		a.Headless == b.Headless && a.ExternalName == b.ExternalName &&
		a.PublishNotReady == b.PublishNotReady &&
		slices.Equal(a.ClusterIPs, b.ClusterIPs) && slices.Equal(a.Ports, b.Ports)
}

func endpointSliceEqual(a, b *zone.EndpointSlice) bool {
	return a.Namespace == b.Namespace && a.Name == b.Name &&
		a.ServiceName == b.ServiceName && a.AddressType == b.AddressType &&
		slices.Equal(a.Ports, b.Ports) &&
		slices.EqualFunc(a.Endpoints, b.Endpoints, func(x, y zone.Endpoint) bool {
			return x.Hostname == y.Hostname && x.Ready == y.Ready &&
				x.Terminating == y.Terminating && x.PodName == y.PodName &&
				slices.Equal(x.Addresses, y.Addresses)
		})
}

func podEqual(a, b *zone.Pod) bool {
	return a.Namespace == b.Namespace && a.Name == b.Name &&
		a.HostNetwork == b.HostNetwork && slices.Equal(a.IPs, b.IPs)
}
