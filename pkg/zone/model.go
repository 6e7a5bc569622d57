// Package zone holds the cluster zone: the slimmed Kubernetes objects it is
// built from, the Builder that turns them into immutable Snapshots, and the
// Store that publishes a Snapshot to readers with one atomic pointer swap.
package zone

import "net/netip"

// Objects below are the DNS-relevant remains of API objects, slimmed at ingest
// (pkg/kube, pkg/zonefile). They are treated as immutable once handed to the
// Builder: callers must not modify an object after passing it in.

// Port is a named service or endpoint port. Name may be empty (unnamed ports
// get no SRV record).
type Port struct {
	Name     string
	Protocol string // "TCP", "UDP" or "SCTP"; empty means TCP
	Port     int32
}

// Service is a slimmed core/v1 Service.
type Service struct {
	Namespace string
	Name      string
	// Headless is true for clusterIP: None.
	Headless bool
	// ClusterIPs is spec.clusterIPs (both families when dual-stack); empty for
	// headless and ExternalName services.
	ClusterIPs []netip.Addr
	// ExternalName is spec.externalName for type ExternalName, lowercased,
	// without trailing dot; empty otherwise.
	ExternalName string
	Ports        []Port
	// PublishNotReady is spec.publishNotReadyAddresses.
	PublishNotReady bool
}

// Endpoint is one endpoint of an EndpointSlice.
type Endpoint struct {
	Addresses []netip.Addr
	// Hostname is endpoints[].hostname (lowercase DNS label) or empty.
	Hostname string
	// Ready is conditions.ready, with nil counted as true.
	Ready bool
	// Terminating is conditions.terminating, with nil counted as false.
	Terminating bool
	// PodName is targetRef.name when targetRef.kind is Pod, else empty.
	PodName string
}

// EndpointSlice is a slimmed discovery/v1 EndpointSlice.
type EndpointSlice struct {
	Namespace string
	Name      string
	// ServiceName is the kubernetes.io/service-name label; slices without it
	// are ignored by the Builder.
	ServiceName string
	// AddressType is "IPv4", "IPv6" or "FQDN" (FQDN slices are ignored).
	AddressType string
	Ports       []Port
	Endpoints   []Endpoint
}

// Pod is a slimmed core/v1 Pod: only what pod records (verified mode) and
// autopath need.
type Pod struct {
	Namespace string
	Name      string
	IPs       []netip.Addr
	// HostNetwork pods share the node's IP and never identify a namespace.
	HostNetwork bool
}

// PodMode selects how <a-b-c-d>.<ns>.pod.<zone> is answered (SPEC R10).
type PodMode int

const (
	PodsInsecure PodMode = iota // answer any well-formed dashed IP
	PodsVerified                // only IPs of a known Pod in that namespace
	PodsDisabled                // never
)

// ParsePodMode maps the --pods flag value to a PodMode.
func ParsePodMode(s string) (PodMode, bool) {
	switch s {
	case "insecure", "":
		return PodsInsecure, true
	case "verified":
		return PodsVerified, true
	case "disabled":
		return PodsDisabled, true
	}
	return 0, false
}

func (m PodMode) String() string {
	switch m {
	case PodsVerified:
		return "verified"
	case PodsDisabled:
		return "disabled"
	}
	return "insecure"
}

// Objects is a complete set of objects, as read from a zone file.
type Objects struct {
	Namespaces     []string
	Services       []*Service
	EndpointSlices []*EndpointSlice
	Pods           []*Pod
}
