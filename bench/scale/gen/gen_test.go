package gen

import (
	"net/netip"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

var serviceCIDR = netip.MustParsePrefix("10.96.0.0/16")

func TestScaleObjects(t *testing.T) {
	s := ScaleSpec(1000, 10, serviceCIDR)
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	o := s.Objects()
	if len(o.Services) != 1000 || o.Endpoints != 10000 || len(o.Slices) != 2000 || len(o.Namespaces) != 10 {
		t.Fatalf("%d services, %d endpoints, %d slices, %d namespaces; want 1000, 10000, 2000, 10",
			len(o.Services), o.Endpoints, len(o.Slices), len(o.Namespaces))
	}
	headless, clusterIPs := 0, map[string]bool{}
	for i, svc := range o.Services {
		if svc.Name != ServiceName(i+1) || svc.Namespace != s.NamespaceOf(i+1) {
			t.Fatalf("service %d is %s/%s", i+1, svc.Namespace, svc.Name)
		}
		if svc.Spec.ClusterIP == corev1.ClusterIPNone {
			headless++
			continue
		}
		a := netip.MustParseAddr(svc.Spec.ClusterIP)
		if !serviceCIDR.Contains(a) || a.As4()[2] == 0 || clusterIPs[svc.Spec.ClusterIP] {
			t.Fatalf("service %s: ClusterIP %s outside %v, in its first /24, or taken twice", svc.Name, a, serviceCIDR)
		}
		clusterIPs[svc.Spec.ClusterIP] = true
	}
	if headless != 500 {
		t.Errorf("%d headless services, want 500", headless)
	}
	addrs, hostnames := map[string]bool{}, 0
	for _, es := range o.Slices {
		if len(es.Endpoints) != 5 || es.Labels[discoveryv1.LabelServiceName] == "" || es.Labels[discoveryv1.LabelManagedBy] != ManagedBy {
			t.Fatalf("slice %s: %d endpoints, labels %v", es.Name, len(es.Endpoints), es.Labels)
		}
		for _, ep := range es.Endpoints {
			a := netip.MustParseAddr(ep.Addresses[0])
			if !s.PodCIDR.Contains(a) || serviceCIDR.Contains(a) || addrs[ep.Addresses[0]] {
				t.Fatalf("slice %s: address %s outside %v or taken twice", es.Name, a, s.PodCIDR)
			}
			addrs[ep.Addresses[0]] = true
			if ep.Hostname != nil {
				hostnames++
			}
		}
	}
	if hostnames != 2500 {
		t.Errorf("%d endpoints with a hostname, want 2500", hostnames)
	}
	if got := s.PodIP(o.NextPodIP).String(); addrs[got] {
		t.Errorf("NextPodIP %s is taken", got)
	}
}

func TestValidate(t *testing.T) {
	ok := ScaleSpec(10000, 10, serviceCIDR)
	if err := ok.Validate(); err != nil {
		t.Fatalf("10k/10 in a /16: %v", err)
	}
	for name, s := range map[string]Spec{
		"too many for the CIDR": ScaleSpec(70000, 1, serviceCIDR),
		"overlap":               func() Spec { s := ok; s.PodCIDR = netip.MustParsePrefix("10.0.0.0/8"); return s }(),
		"no services":           ScaleSpec(0, 10, serviceCIDR),
	} {
		if s.Validate() == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
