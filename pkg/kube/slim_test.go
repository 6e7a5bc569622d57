package kube

import (
	"net/netip"
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nodedns/nodedns/pkg/zone"
)

// ptrTo returns a pointer to a copy of v.
func ptrTo[T any](v T) *T { return &v }

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

func objMeta(ns, name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Namespace: ns, Name: name}
}

func TestSlimService(t *testing.T) {
	tests := []struct {
		name string
		in   *corev1.Service
		want *zone.Service
	}{
		{"nil", nil, nil},
		{"empty", &corev1.Service{}, &zone.Service{}},
		{
			"clusterip dual-stack with named ports",
			&corev1.Service{
				ObjectMeta: objMeta("default", "web"),
				Spec: corev1.ServiceSpec{
					ClusterIP:  "10.96.0.50",
					ClusterIPs: []string{"10.96.0.50", "fd00::50"},
					Ports: []corev1.ServicePort{
						{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP},
						{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP},
						{Port: 8080}, // unnamed, no protocol
					},
				},
			},
			&zone.Service{
				Namespace: "default", Name: "web",
				ClusterIPs: addrs("10.96.0.50", "fd00::50"),
				Ports: []zone.Port{
					{Name: "http", Protocol: "TCP", Port: 80},
					{Name: "dns", Protocol: "UDP", Port: 53},
					{Protocol: "TCP", Port: 8080},
				},
			},
		},
		{
			"clusterIP only (no clusterIPs)",
			&corev1.Service{ObjectMeta: objMeta("a", "b"), Spec: corev1.ServiceSpec{ClusterIP: "10.0.0.1"}},
			&zone.Service{Namespace: "a", Name: "b", ClusterIPs: addrs("10.0.0.1")},
		},
		{
			"bad and mapped IPs",
			&corev1.Service{ObjectMeta: objMeta("a", "b"), Spec: corev1.ServiceSpec{
				ClusterIPs: []string{"10.0.0.300", "", "fe80::1%eth0", "::ffff:10.0.0.2", " 10.0.0.3", "10.0.0.4"},
			}},
			&zone.Service{Namespace: "a", Name: "b", ClusterIPs: addrs("10.0.0.2", "10.0.0.4")},
		},
		{
			"headless",
			&corev1.Service{ObjectMeta: objMeta("default", "nginx"), Spec: corev1.ServiceSpec{
				ClusterIP: "None", ClusterIPs: []string{"None"}, PublishNotReadyAddresses: true,
				Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: "TCP"}},
			}},
			&zone.Service{Namespace: "default", Name: "nginx", Headless: true, PublishNotReady: true,
				Ports: []zone.Port{{Name: "http", Protocol: "TCP", Port: 80}}},
		},
		{
			"headless by clusterIPs alone",
			&corev1.Service{ObjectMeta: objMeta("a", "b"), Spec: corev1.ServiceSpec{ClusterIPs: []string{"None"}}},
			&zone.Service{Namespace: "a", Name: "b", Headless: true},
		},
		{
			"externalname",
			&corev1.Service{ObjectMeta: objMeta("a", "ext"), Spec: corev1.ServiceSpec{
				Type: corev1.ServiceTypeExternalName, ExternalName: "DB.Example.COM.",
				ClusterIP: "None", // ignored for ExternalName
			}},
			&zone.Service{Namespace: "a", Name: "ext", ExternalName: "db.example.com"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := SlimService(tt.in)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("SlimService:\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestSlimEndpointSlice(t *testing.T) {
	in := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: "default", Name: "nginx-abc",
			Labels: map[string]string{discoveryv1.LabelServiceName: "nginx"},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports: []discoveryv1.EndpointPort{
			{Name: ptrTo("http"), Port: ptrTo[int32](80), Protocol: ptrTo(corev1.ProtocolTCP)},
			{Name: ptrTo("nameless-port"), Port: nil}, // skipped
			{Port: ptrTo[int32](9000)},                // nil name and protocol
		},
		Endpoints: []discoveryv1.Endpoint{
			{ // all conditions nil
				Addresses: []string{"10.244.1.68"},
				TargetRef: &corev1.ObjectReference{Kind: "Pod", Name: "nginx-5d59d67564-2cwdz"},
			},
			{
				Addresses:  []string{"10.244.2.209", "bogus", "fd00::1"}, // bad and wrong-family skipped
				Hostname:   ptrTo("Web-0"),
				Conditions: discoveryv1.EndpointConditions{Ready: ptrTo(false), Terminating: ptrTo(true)},
				TargetRef:  &corev1.ObjectReference{Kind: "Node", Name: "node1"},
			},
			{Addresses: []string{"not-an-ip"}}, // no address left: dropped
			{},                                 // none at all: dropped
		},
	}
	want := &zone.EndpointSlice{
		Namespace: "default", Name: "nginx-abc", ServiceName: "nginx", AddressType: "IPv4",
		Ports: []zone.Port{{Name: "http", Protocol: "TCP", Port: 80}, {Protocol: "TCP", Port: 9000}},
		Endpoints: []zone.Endpoint{
			{Addresses: addrs("10.244.1.68"), Ready: true, PodName: "nginx-5d59d67564-2cwdz"},
			{Addresses: addrs("10.244.2.209"), Hostname: "web-0", Ready: false, Terminating: true},
		},
	}
	if got := SlimEndpointSlice(in); !reflect.DeepEqual(got, want) {
		t.Errorf("SlimEndpointSlice:\n got %+v\nwant %+v", got, want)
	}

	v6 := &discoveryv1.EndpointSlice{
		AddressType: discoveryv1.AddressTypeIPv6,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.0.0.1", "fd00::1"}}},
	}
	if got := SlimEndpointSlice(v6); len(got.Endpoints) != 1 || !reflect.DeepEqual(got.Endpoints[0].Addresses, addrs("fd00::1")) {
		t.Errorf("IPv6 slice kept %+v, want only fd00::1", got.Endpoints)
	}
	fqdn := &discoveryv1.EndpointSlice{
		AddressType: discoveryv1.AddressTypeFQDN,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"example.com"}}},
	}
	if got := SlimEndpointSlice(fqdn); got.AddressType != "FQDN" || len(got.Endpoints) != 0 {
		t.Errorf("FQDN slice: got %+v, want no endpoints", got)
	}
	if SlimEndpointSlice(nil) != nil {
		t.Error("SlimEndpointSlice(nil) != nil")
	}
	if got := SlimEndpointSlice(&discoveryv1.EndpointSlice{}); got == nil || got.ServiceName != "" {
		t.Errorf("empty slice: got %+v", got)
	}
}

func TestSlimPod(t *testing.T) {
	tests := []struct {
		name string
		in   *corev1.Pod
		want *zone.Pod
	}{
		{"nil", nil, nil},
		{"empty", &corev1.Pod{}, &zone.Pod{}},
		{
			"dual-stack podIPs win over podIP",
			&corev1.Pod{ObjectMeta: objMeta("default", "p"), Status: corev1.PodStatus{
				PodIP: "10.244.1.1", PodIPs: []corev1.PodIP{{IP: "10.244.1.2"}, {IP: "fd00::2"}, {IP: "junk"}},
			}},
			&zone.Pod{Namespace: "default", Name: "p", IPs: addrs("10.244.1.2", "fd00::2")},
		},
		{
			"podIP fallback, host network",
			&corev1.Pod{ObjectMeta: objMeta("kube-system", "h"), Spec: corev1.PodSpec{HostNetwork: true},
				Status: corev1.PodStatus{PodIP: "192.168.0.10"}},
			&zone.Pod{Namespace: "kube-system", Name: "h", HostNetwork: true, IPs: addrs("192.168.0.10")},
		},
		{
			"terminal pod keeps no IPs",
			&corev1.Pod{ObjectMeta: objMeta("default", "done"), Status: corev1.PodStatus{
				Phase: corev1.PodSucceeded, PodIP: "10.244.1.3",
			}},
			&zone.Pod{Namespace: "default", Name: "done"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := SlimPod(tt.in); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("SlimPod:\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestEqualFuncs(t *testing.T) {
	a := SlimService(&corev1.Service{ObjectMeta: objMeta("a", "b"), Spec: corev1.ServiceSpec{ClusterIP: "10.0.0.1"}})
	b := SlimService(&corev1.Service{ObjectMeta: objMeta("a", "b"), Spec: corev1.ServiceSpec{ClusterIP: "10.0.0.1"}})
	c := SlimService(&corev1.Service{ObjectMeta: objMeta("a", "b"), Spec: corev1.ServiceSpec{ClusterIP: "10.0.0.2"}})
	if !serviceEqual(a, b) || serviceEqual(a, c) {
		t.Error("serviceEqual wrong")
	}
	e1 := &zone.EndpointSlice{Endpoints: []zone.Endpoint{{Addresses: addrs("10.0.0.1"), Ready: true}}}
	e2 := &zone.EndpointSlice{Endpoints: []zone.Endpoint{{Addresses: addrs("10.0.0.1"), Ready: true}}}
	e3 := &zone.EndpointSlice{Endpoints: []zone.Endpoint{{Addresses: addrs("10.0.0.1"), Ready: false}}}
	if !endpointSliceEqual(e1, e2) || endpointSliceEqual(e1, e3) {
		t.Error("endpointSliceEqual wrong")
	}
	p1 := &zone.Pod{Name: "p", IPs: addrs("10.0.0.1")}
	p2 := &zone.Pod{Name: "p", IPs: addrs("10.0.0.1", "fd00::1")}
	if !podEqual(p1, p1) || podEqual(p1, p2) {
		t.Error("podEqual wrong")
	}
}
