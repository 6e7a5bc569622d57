package zonefile

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/nodedns/nodedns/pkg/kube"
)

// Validation catches, with a line number, what the API server would have
// rejected and what would otherwise vanish silently in conversion (an IP
// that does not parse, a name that cannot be a DNS label). It checks only
// fields DNS uses; the rest of an object may be anything.

// problem is a validation failure at a path within an object.
type problem struct {
	path []seg
	msg  string
}

func fail(path []seg, format string, args ...any) *problem {
	return &problem{path: path, msg: fmt.Sprintf(format, args...)}
}

// check returns a problem at path when a validation function complained.
func check(path []seg, errs []string) *problem {
	if len(errs) == 0 {
		return nil
	}
	return &problem{path: path, msg: strings.Join(errs, "; ")}
}

func checkMeta(name, namespace string, nameCheck func(string) []string) *problem {
	if name == "" {
		return fail(keys("metadata", "name"), "missing")
	}
	if p := check(keys("metadata", "name"), nameCheck(name)); p != nil {
		return p
	}
	if namespace != "" {
		return check(keys("metadata", "namespace"), validation.IsDNS1123Label(namespace))
	}
	return nil
}

func validateNamespace(ns *corev1.Namespace) *problem {
	return checkMeta(ns.Name, "", validation.IsDNS1123Label)
}

func validateService(s *corev1.Service) *problem {
	if p := checkMeta(s.Name, s.Namespace, validation.IsDNS1035Label); p != nil {
		return p
	}
	if s.Spec.Type == corev1.ServiceTypeExternalName {
		if s.Spec.ExternalName == "" {
			return fail(keys("spec", "externalName"), "missing for type ExternalName")
		}
		return check(keys("spec", "externalName"), validation.IsDNS1123Subdomain(kube.NormalizeExternalName(s.Spec.ExternalName)))
	}
	if ip := s.Spec.ClusterIP; ip != "" && ip != corev1.ClusterIPNone {
		if _, ok := kube.ParseIP(ip); !ok {
			return fail(keys("spec", "clusterIP"), "%q is not an IP address", ip)
		}
	}
	for i, ip := range s.Spec.ClusterIPs {
		path := []seg{key("spec"), key("clusterIPs"), index(i)}
		if ip == corev1.ClusterIPNone {
			if i > 0 || len(s.Spec.ClusterIPs) > 1 {
				return fail(path, `"None" must be the only entry`)
			}
			continue
		}
		if _, ok := kube.ParseIP(ip); !ok {
			return fail(path, "%q is not an IP address", ip)
		}
	}
	if len(s.Spec.ClusterIPs) > 0 && s.Spec.ClusterIP != "" && s.Spec.ClusterIP != s.Spec.ClusterIPs[0] {
		return fail(keys("spec", "clusterIP"), "%q differs from spec.clusterIPs[0] %q", s.Spec.ClusterIP, s.Spec.ClusterIPs[0])
	}
	for i, port := range s.Spec.Ports {
		if p := checkPort(join(keys("spec", "ports"), index(i)), port.Name, port.Protocol, port.Port); p != nil {
			return p
		}
	}
	return nil
}

func checkPort(path []seg, name string, proto corev1.Protocol, port int32) *problem {
	if name != "" {
		if p := check(join(path, key("name")), validation.IsValidPortName(name)); p != nil {
			return p
		}
	}
	switch proto {
	case "", corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP:
	default:
		return fail(join(path, key("protocol")), "%q is not TCP, UDP or SCTP", proto)
	}
	return check(join(path, key("port")), validation.IsValidPortNum(int(port)))
}

func validateEndpointSlice(es *discoveryv1.EndpointSlice) *problem {
	if p := checkMeta(es.Name, es.Namespace, validation.IsDNS1123Subdomain); p != nil {
		return p
	}
	family := ""
	switch es.AddressType {
	case discoveryv1.AddressTypeIPv4, discoveryv1.AddressTypeIPv6:
		family = string(es.AddressType)
	case discoveryv1.AddressTypeFQDN:
	case "":
		return fail(keys("addressType"), "missing (IPv4, IPv6 or FQDN)")
	default:
		return fail(keys("addressType"), "%q is not IPv4, IPv6 or FQDN", es.AddressType)
	}
	for i, port := range es.Ports {
		path := join(keys("ports"), index(i))
		var name string
		var proto corev1.Protocol
		if port.Name != nil {
			name = *port.Name
		}
		if port.Protocol != nil {
			proto = *port.Protocol
		}
		if port.Port == nil {
			return fail(join(path, key("port")), "missing")
		}
		if p := checkPort(path, name, proto, *port.Port); p != nil {
			return p
		}
	}
	for i, ep := range es.Endpoints {
		path := join(keys("endpoints"), index(i))
		if len(ep.Addresses) == 0 {
			return fail(join(path, key("addresses")), "missing")
		}
		for j, a := range ep.Addresses {
			if family == "" {
				continue
			}
			ip, ok := kube.ParseIP(a)
			if !ok || (family == "IPv4") != ip.Is4() {
				return fail(join(path, key("addresses"), index(j)), "%q is not an %s address", a, family)
			}
		}
		if ep.Hostname != nil {
			if p := check(join(path, key("hostname")), validation.IsDNS1123Label(*ep.Hostname)); p != nil {
				return p
			}
		}
	}
	return nil
}

func validatePod(p *corev1.Pod) *problem {
	if pr := checkMeta(p.Name, p.Namespace, validation.IsDNS1123Subdomain); pr != nil {
		return pr
	}
	if h := p.Spec.Hostname; h != "" {
		if pr := check(keys("spec", "hostname"), validation.IsDNS1123Label(h)); pr != nil {
			return pr
		}
	}
	if s := p.Spec.Subdomain; s != "" {
		if pr := check(keys("spec", "subdomain"), validation.IsDNS1123Label(s)); pr != nil {
			return pr
		}
	}
	if ip := p.Status.PodIP; ip != "" {
		if _, ok := kube.ParseIP(ip); !ok {
			return fail(keys("status", "podIP"), "%q is not an IP address", ip)
		}
	}
	for i, ip := range p.Status.PodIPs {
		if _, ok := kube.ParseIP(ip.IP); !ok {
			return fail(join(keys("status", "podIPs"), index(i), key("ip")), "%q is not an IP address", ip.IP)
		}
	}
	return nil
}
