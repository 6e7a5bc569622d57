package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// The keys of the kube-dns ConfigMap that nodedns reads. kube-dns also
// knows "federations" (long gone from Kubernetes); it and any other key
// are ignored, as kube-dns ignores keys it does not know.
const (
	KeyStubDomains         = "stubDomains"
	KeyUpstreamNameservers = "upstreamNameservers"
)

// MaxUpstreamNameservers is kube-dns's limit on upstreamNameservers.
const MaxUpstreamNameservers = 3

// KubeDNS is what the kube-dns ConfigMap asks for, read the way kube-dns
// and NodeLocal DNSCache read it:
//
//   - stubDomains: a JSON object of domain to a list of nameservers; names
//     under the domain go to those servers. Domains are DNS-1123
//     subdomains (a trailing dot and upper case are accepted here too);
//     nameservers are IP or IP:port ([IPv6]:port), port 53 by default.
//     kube-dns also took host names there; NodeLocal DNSCache (CoreDNS
//     forward) does not, and neither does nodedns.
//   - upstreamNameservers: a JSON list of at most 3 nameservers that
//     replace the node's resolv.conf for every other name, when not
//     empty.
//
// A missing key, or an empty value, is the default (no stub domains,
// resolv.conf's servers).
type KubeDNS struct {
	StubDomains         map[string][]netip.AddrPort // key: lowercase, no trailing dot
	UpstreamNameservers []netip.AddrPort
}

// Equal reports whether k and o ask for the same thing; nil is the empty
// configuration.
func (k *KubeDNS) Equal(o *KubeDNS) bool {
	if k == nil {
		k = &KubeDNS{}
	}
	if o == nil {
		o = &KubeDNS{}
	}
	if !slices.Equal(k.UpstreamNameservers, o.UpstreamNameservers) || len(k.StubDomains) != len(o.StubDomains) {
		return false
	}
	for d, s := range k.StubDomains {
		if other, ok := o.StubDomains[d]; !ok || !slices.Equal(s, other) {
			return false
		}
	}
	return true
}

// ParseKubeDNS parses the ConfigMap's values by key (missing keys are
// absent from files). dir names the files in errors, which are *Error
// with the file as Path and the domain or list item as Key. A stub domain
// at or under one of clusterDomains is an error: the cluster zone is
// answered locally and never forwarded (SPEC R12).
func ParseKubeDNS(dir string, files map[string][]byte, clusterDomains []string) (*KubeDNS, error) {
	k := &KubeDNS{}
	var errs []error
	if data := bytes.TrimSpace(files[KeyStubDomains]); len(data) > 0 {
		path := filepath.Join(dir, KeyStubDomains)
		var raw map[string]json.RawMessage
		if err := json.Unmarshal(data, &raw); err != nil {
			errs = append(errs, jsonError(path, data, err, "want a JSON object of domain to a list of nameservers"))
		} else {
			k.StubDomains = make(map[string][]netip.AddrPort, len(raw))
			for domain, list := range raw {
				bad := func(format string, args ...any) {
					errs = append(errs, &Error{Path: path, Line: lineOf(data, domain), Key: fmt.Sprintf("%q", domain), Err: fmt.Errorf(format, args...)})
				}
				d, err := StubDomain(domain, clusterDomains)
				if err != nil {
					bad("%w", err)
					continue
				}
				if _, dup := k.StubDomains[d]; dup {
					bad("given twice")
					continue
				}
				var servers []string
				if err := json.Unmarshal(list, &servers); err != nil {
					bad("want a list of nameservers")
					continue
				}
				if len(servers) == 0 {
					bad("no nameservers")
					continue
				}
				for _, s := range servers {
					ap, err := ParseServer(s)
					if err != nil {
						bad("nameserver %q: %w", s, err)
						continue
					}
					k.StubDomains[d] = append(k.StubDomains[d], ap)
				}
			}
		}
	}
	if data := bytes.TrimSpace(files[KeyUpstreamNameservers]); len(data) > 0 {
		path := filepath.Join(dir, KeyUpstreamNameservers)
		var servers []string
		if err := json.Unmarshal(data, &servers); err != nil {
			errs = append(errs, jsonError(path, data, err, "want a JSON list of nameservers"))
		} else if len(servers) > MaxUpstreamNameservers {
			errs = append(errs, &Error{Path: path, Err: fmt.Errorf("%d nameservers: kube-dns allows at most %d", len(servers), MaxUpstreamNameservers)})
		} else {
			for _, s := range servers {
				ap, err := ParseServer(s)
				if err != nil {
					errs = append(errs, &Error{Path: path, Line: lineOf(data, s), Key: fmt.Sprintf("%q", s), Err: err})
					continue
				}
				k.UpstreamNameservers = append(k.UpstreamNameservers, ap)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return k, nil
}

// jsonError names the line of a JSON syntax error, or says what was
// expected for a value of the wrong type.
func jsonError(path string, data []byte, err error, want string) error {
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		line := 1 + bytes.Count(data[:min(int(syn.Offset), len(data))], []byte("\n"))
		return &Error{Path: path, Line: line, Err: fmt.Errorf("invalid JSON: %w", err)}
	}
	return &Error{Path: path, Err: fmt.Errorf("%s: %w", want, err)}
}

// lineOf returns the line of the first quoted occurrence of s in data, 0
// if none.
func lineOf(data []byte, s string) int {
	q, err := json.Marshal(s)
	if err != nil {
		return 0
	}
	i := bytes.Index(data, q)
	if i < 0 {
		return 0
	}
	return 1 + bytes.Count(data[:i], []byte("\n"))
}

// StubDomain checks a stub domain and returns it in lowercase without a
// trailing dot. It must be a DNS-1123 subdomain (as kube-dns asks), and
// neither a cluster domain nor under one.
func StubDomain(domain string, clusterDomains []string) (string, error) {
	d := strings.ToLower(strings.TrimSuffix(domain, "."))
	if err := dns1123Subdomain(d); err != nil {
		return "", err
	}
	for _, c := range clusterDomains {
		c = strings.ToLower(strings.TrimSuffix(c, "."))
		if d == c || strings.HasSuffix(d, "."+c) {
			return "", fmt.Errorf("under the cluster domain %s, which nodedns answers itself and never forwards", c)
		}
	}
	return d, nil
}

// dns1123Subdomain: at most 253 characters, dot-separated labels of a-z,
// 0-9 and '-', each starting and ending with a letter or digit.
func dns1123Subdomain(d string) error {
	if d == "" || len(d) > 253 {
		return errors.New("not a domain name: want 1 to 253 characters")
	}
	for l := range strings.SplitSeq(d, ".") {
		if l == "" || len(l) > 63 {
			return fmt.Errorf("not a domain name: label %q: want 1 to 63 characters", l)
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			alnum := 'a' <= c && c <= 'z' || '0' <= c && c <= '9'
			if !alnum && (c != '-' || i == 0 || i == len(l)-1) {
				return fmt.Errorf("not a domain name: label %q: want letters, digits and inner '-'", l)
			}
		}
	}
	return nil
}

// ParseServer reads a nameserver: IP, IP:PORT or [IPv6]:PORT; the port
// defaults to 53. Host names are not resolved: the resolver of a DNS
// server cannot depend on itself.
func ParseServer(s string) (netip.AddrPort, error) {
	var ap netip.AddrPort
	if p, err := netip.ParseAddrPort(s); err == nil {
		ap = p
	} else if a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")); err == nil {
		ap = netip.AddrPortFrom(a, 53)
	} else {
		return netip.AddrPort{}, errors.New("want an IP address with an optional :port (names are not resolved)")
	}
	if ap.Port() == 0 {
		return netip.AddrPort{}, errors.New("port 0")
	}
	if ap.Addr().Zone() != "" {
		return netip.AddrPort{}, errors.New("an IPv6 zone is not supported")
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}

// ReadKubeDNSDir reads the keys nodedns knows from a ConfigMap volume (or
// any directory of one file per key). A missing directory or file is an
// absent key: the ConfigMap is optional.
//
// kubelet updates such a volume by writing the new files to a fresh
// directory and swapping the ..data symlink to it, the files being
// symlinks through ..data. The files are read through the directory ..data
// points at, and the link is read again afterwards: if it moved, the read
// is repeated, so the result is one version of the ConfigMap, never a mix.
func ReadKubeDNSDir(dir string) (map[string][]byte, error) {
	for range 5 {
		target, linkErr := os.Readlink(filepath.Join(dir, "..data"))
		base := dir
		if linkErr == nil {
			base = target
			if !filepath.IsAbs(target) {
				base = filepath.Join(dir, target)
			}
		}
		files := map[string][]byte{}
		var err error
		for _, key := range []string{KeyStubDomains, KeyUpstreamNameservers} {
			data, rerr := readSmall(filepath.Join(base, key))
			switch {
			case rerr == nil:
				files[key] = data
			case errors.Is(rerr, os.ErrNotExist):
			default:
				err = rerr
			}
		}
		if linkErr != nil {
			return files, err // no ..data: a plain directory
		}
		if again, _ := os.Readlink(filepath.Join(dir, "..data")); again == target {
			return files, err
		}
	}
	return nil, fmt.Errorf("%s: ..data kept changing while being read", dir)
}
