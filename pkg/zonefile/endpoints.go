package zonefile

import (
	"fmt"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/nodedns/nodedns/pkg/kube"
)

// endpointSlicesFromPods plays the EndpointSlice controller's part for a
// zone file. For each Service that has a selector, is not ExternalName,
// and has no EndpointSlice in the file, the file's Pods of its namespace
// that match the selector and have an IP become endpoints:
//
//   - ready unless the Pod has a Ready condition that is not True (a
//     hand-written Pod usually has no conditions at all), and always ready
//     when the Service sets publishNotReadyAddresses;
//   - a Pod with a deletionTimestamp is terminating, and then not ready
//     unless publishNotReadyAddresses (the controller's rule);
//   - hostname = spec.hostname when spec.subdomain names this Service;
//   - targetRef = the Pod, so PodName is set;
//   - ports = the Service's ports with targetPort resolved against the Pod
//     (a named targetPort the Pod does not declare leaves that port out for
//     that Pod, as the controller does).
//
// Pods in phase Succeeded or Failed are left out. There is one slice per
// address family (and per distinct port set, which only named targetPorts
// can produce); families are the Service's ipFamilies when given, else
// those of its clusterIPs, else any.
func endpointSlicesFromPods(services []*corev1.Service, explicit []*discoveryv1.EndpointSlice, pods []*corev1.Pod) []*discoveryv1.EndpointSlice {
	hasSlice := map[string]bool{}
	for _, es := range explicit {
		if svc := es.Labels[discoveryv1.LabelServiceName]; svc != "" {
			hasSlice[es.Namespace+"/"+svc] = true
		}
	}
	var out []*discoveryv1.EndpointSlice
	for _, svc := range services {
		if len(svc.Spec.Selector) == 0 || svc.Spec.Type == corev1.ServiceTypeExternalName || hasSlice[svc.Namespace+"/"+svc.Name] {
			continue
		}
		out = append(out, slicesFor(svc, pods)...)
	}
	return out
}

func slicesFor(svc *corev1.Service, pods []*corev1.Pod) []*discoveryv1.EndpointSlice {
	sel := labels.SelectorFromSet(svc.Spec.Selector)
	families := serviceFamilies(svc)
	type group struct {
		family discoveryv1.AddressType
		ports  []discoveryv1.EndpointPort
		eps    []discoveryv1.Endpoint
	}
	var groups []*group
	byKey := map[string]*group{}
	for _, pod := range pods {
		if pod.Namespace != svc.Namespace || !sel.Matches(labels.Set(pod.Labels)) ||
			pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
			continue
		}
		ports := endpointPorts(svc, pod)
		for _, ip := range kube.PodIPs(pod) {
			a, ok := kube.ParseIP(ip)
			if !ok {
				continue
			}
			family := discoveryv1.AddressTypeIPv6
			if a.Is4() {
				family = discoveryv1.AddressTypeIPv4
			}
			if families != nil && !families[family] {
				continue
			}
			k := string(family) + portsKey(ports)
			g := byKey[k]
			if g == nil {
				g = &group{family: family, ports: ports}
				byKey[k] = g
				groups = append(groups, g)
			}
			g.eps = append(g.eps, podEndpoint(svc, pod, a.String()))
		}
	}
	out := make([]*discoveryv1.EndpointSlice, 0, len(groups))
	perFamily := map[discoveryv1.AddressType]int{}
	for _, g := range groups {
		name := svc.Name + "-zonefile-" + strings.ToLower(string(g.family))
		if n := perFamily[g.family]; n > 0 {
			name += "-" + strconv.Itoa(n)
		}
		perFamily[g.family]++
		es := &discoveryv1.EndpointSlice{
			AddressType: g.family,
			Endpoints:   g.eps,
			Ports:       g.ports,
		}
		es.Namespace, es.Name = svc.Namespace, name
		es.Labels = map[string]string{discoveryv1.LabelServiceName: svc.Name}
		out = append(out, es)
	}
	return out
}

func podEndpoint(svc *corev1.Service, pod *corev1.Pod, ip string) discoveryv1.Endpoint {
	podReady := true
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status != corev1.ConditionTrue {
			podReady = false
		}
	}
	terminating := pod.DeletionTimestamp != nil
	ready := podReady || svc.Spec.PublishNotReadyAddresses
	if terminating && !svc.Spec.PublishNotReadyAddresses {
		ready = false
	}
	ep := discoveryv1.Endpoint{
		Addresses: []string{ip},
		Conditions: discoveryv1.EndpointConditions{
			Ready:       &ready,
			Serving:     &podReady,
			Terminating: &terminating,
		},
		TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID},
	}
	if pod.Spec.NodeName != "" {
		ep.NodeName = &pod.Spec.NodeName
	}
	if pod.Spec.Hostname != "" && pod.Spec.Subdomain == svc.Name {
		ep.Hostname = &pod.Spec.Hostname
	}
	return ep
}

// serviceFamilies returns the address families the Service's slices may
// have; nil means any.
func serviceFamilies(svc *corev1.Service) map[discoveryv1.AddressType]bool {
	fams := map[discoveryv1.AddressType]bool{}
	for _, f := range svc.Spec.IPFamilies {
		fams[discoveryv1.AddressType(f)] = true
	}
	if len(fams) == 0 {
		if s := kube.SlimService(svc); !s.Headless {
			for _, a := range s.ClusterIPs {
				if a.Is4() {
					fams[discoveryv1.AddressTypeIPv4] = true
				} else {
					fams[discoveryv1.AddressTypeIPv6] = true
				}
			}
		}
	}
	if len(fams) == 0 {
		return nil
	}
	return fams
}

// endpointPorts resolves the Service's ports against pod.
func endpointPorts(svc *corev1.Service, pod *corev1.Pod) []discoveryv1.EndpointPort {
	var out []discoveryv1.EndpointPort
	for _, sp := range svc.Spec.Ports {
		proto := sp.Protocol
		if proto == "" {
			proto = corev1.ProtocolTCP
		}
		num, ok := targetPort(sp, proto, pod)
		if !ok {
			continue
		}
		out = append(out, discoveryv1.EndpointPort{Name: &sp.Name, Protocol: &proto, Port: &num})
	}
	return out
}

func targetPort(sp corev1.ServicePort, proto corev1.Protocol, pod *corev1.Pod) (int32, bool) {
	tp := sp.TargetPort
	switch {
	case tp.Type == intstr.String && tp.StrVal != "":
		for _, c := range pod.Spec.Containers {
			for _, cp := range c.Ports {
				cpProto := cp.Protocol
				if cpProto == "" {
					cpProto = corev1.ProtocolTCP
				}
				if cp.Name == tp.StrVal && cpProto == proto {
					return cp.ContainerPort, true
				}
			}
		}
		return 0, false
	case tp.Type == intstr.Int && tp.IntVal != 0:
		return tp.IntVal, true
	}
	return sp.Port, true // targetPort defaults to port
}

func portsKey(ports []discoveryv1.EndpointPort) string {
	var b strings.Builder
	for _, p := range ports {
		fmt.Fprintf(&b, "|%s/%s/%d", *p.Name, *p.Protocol, *p.Port)
	}
	return b.String()
}
