// Package gen makes the cluster data of nodedns's benchmarks: Services and
// EndpointSlices of a configurable shape (Objects), written into an API
// server through client-go by concurrent workers (Load), and endpoint churn
// at a set rate (Churner).
//
// Everything is deterministic: the same Spec gives the same objects, so a
// zone file written from them (bench/kubeload) answers exactly as the API
// server does.
package gen

import (
	"errors"
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// ManagedBy is the endpointslice.kubernetes.io/managed-by label of every
// generated slice: no controller runs in the test API server, so the slices
// are written by hand (shared/TESTENV.md).
const ManagedBy = "nodedns-bench"

// Spec is the shape of the generated data. Services are numbered from 1
// (svc-0001, svc-0002, …, in creation order).
type Spec struct {
	// Services is the number of Services.
	Services int
	// Endpoints is the number of ready endpoints per Service that has
	// endpoints (see ClusterIPEndpoints).
	Endpoints int
	// Namespace is the namespace of every Service when ServicesPerNamespace
	// is 0; otherwise the prefix of namespaces <Namespace>-000, -001, …
	// holding ServicesPerNamespace Services each.
	Namespace            string
	ServicesPerNamespace int
	// HeadlessEvery makes every HeadlessEvery'th Service headless
	// (clusterIP: None); 0 makes none headless.
	HeadlessEvery int
	// ClusterIPEndpoints gives ClusterIP Services endpoints too (as a
	// selector would); otherwise only headless Services have EndpointSlices.
	ClusterIPEndpoints bool
	// EndpointsPerSlice splits a Service's endpoints over slices of at most
	// this many, as the EndpointSlice controller does (at 100 by default);
	// 0 puts them all in one slice.
	EndpointsPerSlice int
	// HostnameEvery gives the endpoints of every HostnameEvery'th Service a
	// hostname (<svc>-<n>, as a StatefulSet's Pods have); 0: none.
	HostnameEvery int
	// ServiceCIDR is the API server's --service-cluster-ip-range; ClusterIP
	// Services get fixed addresses from its second /24 on (the first holds
	// default/kubernetes).
	ServiceCIDR netip.Prefix
	// PodCIDR holds the endpoint addresses, one per endpoint, and the
	// fresh addresses the Churner hands out. It must not overlap
	// ServiceCIDR.
	PodCIDR netip.Prefix
}

// ScaleSpec is the shape of the large-cluster benchmark (issue #8):
// services Services with perService endpoints each, 100 Services per
// namespace, every other one headless, endpoints in slices of 5, hostnames
// on every fourth Service (so on half of the headless ones).
func ScaleSpec(services, perService int, serviceCIDR netip.Prefix) Spec {
	return Spec{
		Services:             services,
		Endpoints:            perService,
		Namespace:            "scale",
		ServicesPerNamespace: 100,
		HeadlessEvery:        2,
		ClusterIPEndpoints:   true,
		EndpointsPerSlice:    5,
		HostnameEvery:        4,
		ServiceCIDR:          serviceCIDR,
		PodCIDR:              netip.MustParsePrefix("10.128.0.0/9"),
	}
}

// Validate reports a Spec that cannot be generated.
func (s Spec) Validate() error {
	switch {
	case s.Services < 1:
		return errors.New("gen: Services < 1")
	case s.Endpoints < 0 || s.HeadlessEvery < 0 || s.ServicesPerNamespace < 0 || s.EndpointsPerSlice < 0 || s.HostnameEvery < 0:
		return errors.New("gen: negative count")
	case s.Namespace == "":
		return errors.New("gen: no Namespace")
	case !s.ServiceCIDR.IsValid() || !s.ServiceCIDR.Addr().Is4():
		return errors.New("gen: ServiceCIDR must be an IPv4 prefix")
	case !s.PodCIDR.IsValid() || !s.PodCIDR.Addr().Is4():
		return errors.New("gen: PodCIDR must be an IPv4 prefix")
	case s.ServiceCIDR.Overlaps(s.PodCIDR):
		return fmt.Errorf("gen: PodCIDR %v overlaps ServiceCIDR %v", s.PodCIDR, s.ServiceCIDR)
	}
	// The last address of the range is its broadcast address, which the
	// API server does not hand out.
	if size := uint64(1) << (32 - s.ServiceCIDR.Bits()); uint64(256+s.Services) >= size-1 {
		return fmt.Errorf("gen: %d Services do not fit ServiceCIDR %v", s.Services, s.ServiceCIDR)
	}
	if size := uint64(1) << (32 - s.PodCIDR.Bits()); uint64(s.Services)*uint64(s.Endpoints)*4 >= size {
		return fmt.Errorf("gen: %d×%d endpoints (and churn) do not fit PodCIDR %v", s.Services, s.Endpoints, s.PodCIDR)
	}
	return nil
}

// Objects is the generated data.
type Objects struct {
	spec       Spec
	Namespaces []string
	Services   []*corev1.Service
	Slices     []*discoveryv1.EndpointSlice
	// Endpoints is the number of endpoints in Slices.
	Endpoints int
	// NextPodIP is the first PodCIDR address no endpoint has (the
	// Churner's first fresh address).
	NextPodIP uint32
}

// ServiceName is the name of Service i (1-based).
func ServiceName(i int) string { return fmt.Sprintf("svc-%04d", i) }

// NamespaceOf is the namespace of Service i (1-based).
func (s Spec) NamespaceOf(i int) string {
	if s.ServicesPerNamespace == 0 {
		return s.Namespace
	}
	return fmt.Sprintf("%s-%03d", s.Namespace, (i-1)/s.ServicesPerNamespace)
}

// Headless reports whether Service i is headless.
func (s Spec) Headless(i int) bool { return s.HeadlessEvery > 0 && i%s.HeadlessEvery == 0 }

// Hostnames reports whether the endpoints of Service i have hostnames.
func (s Spec) Hostnames(i int) bool { return s.HostnameEvery > 0 && i%s.HostnameEvery == 0 }

// Hostname is the hostname of endpoint j (0-based) of Service i.
func Hostname(i, j int) string { return fmt.Sprintf("%s-%d", ServiceName(i), j) }

// PodName is the name of a Deployment's Pod of service svc, unique per
// address number n, as long as real ones.
func PodName(svc string, n uint32) string { return fmt.Sprintf("%s-6b7f9c4d8-%06d", svc, n%1000000) }

// ClusterIP is the fixed ClusterIP of Service i.
func (s Spec) ClusterIP(i int) netip.Addr { return addrAt(s.ServiceCIDR, uint32(256+i)) }

// PodIP is the n'th address of PodCIDR (n from 1).
func (s Spec) PodIP(n uint32) netip.Addr { return addrAt(s.PodCIDR, n) }

// podIndex is the n with PodIP(n) == a, if a is in PodCIDR.
func (o *Objects) podIndex(s string) (uint32, bool) {
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() || !o.spec.PodCIDR.Contains(a) {
		return 0, false
	}
	b, base := a.As4(), o.spec.PodCIDR.Masked().Addr().As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	w := uint32(base[0])<<24 | uint32(base[1])<<16 | uint32(base[2])<<8 | uint32(base[3])
	return v - w, true
}

func addrAt(p netip.Prefix, n uint32) netip.Addr {
	b := p.Masked().Addr().As4()
	v := (uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])) + n
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// Objects generates the data; s must be valid.
func (s Spec) Objects() Objects {
	o := Objects{spec: s}
	tcp := corev1.ProtocolTCP
	ip := uint32(1)
	for i := 1; i <= s.Services; i++ {
		ns, name := s.NamespaceOf(i), ServiceName(i)
		if len(o.Namespaces) == 0 || o.Namespaces[len(o.Namespaces)-1] != ns {
			o.Namespaces = append(o.Namespaces, ns)
		}
		svc := &corev1.Service{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: corev1.ServiceSpec{
				Type:  corev1.ServiceTypeClusterIP,
				Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: tcp, TargetPort: intstr.FromInt32(8080)}},
			},
		}
		headless := s.Headless(i)
		if headless {
			svc.Spec.ClusterIP, svc.Spec.ClusterIPs = corev1.ClusterIPNone, []string{corev1.ClusterIPNone}
		} else {
			a := s.ClusterIP(i).String()
			svc.Spec.ClusterIP, svc.Spec.ClusterIPs = a, []string{a}
		}
		o.Services = append(o.Services, svc)
		if s.Endpoints == 0 || !(headless || s.ClusterIPEndpoints) {
			continue
		}
		per := s.EndpointsPerSlice
		if per == 0 {
			per = s.Endpoints
		}
		for k := 0; k*per < s.Endpoints; k++ {
			es := &discoveryv1.EndpointSlice{
				TypeMeta: metav1.TypeMeta{APIVersion: "discovery.k8s.io/v1", Kind: "EndpointSlice"},
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%d", name, k), Namespace: ns, Labels: map[string]string{
					discoveryv1.LabelServiceName: name,
					discoveryv1.LabelManagedBy:   ManagedBy,
				}},
				AddressType: discoveryv1.AddressTypeIPv4,
				Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080), Protocol: &tcp}},
			}
			for j := k * per; j < min(s.Endpoints, (k+1)*per); j++ {
				ep := discoveryv1.Endpoint{
					Addresses:  []string{s.PodIP(ip).String()},
					Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
					TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: PodName(name, ip)},
				}
				if s.Hostnames(i) {
					ep.Hostname = ptr.To(Hostname(i, j))
					ep.TargetRef.Name = *ep.Hostname // a StatefulSet's Pod
				}
				ip++
				es.Endpoints = append(es.Endpoints, ep)
				o.Endpoints++
			}
			o.Slices = append(o.Slices, es)
		}
	}
	o.NextPodIP = ip
	return o
}
