package upstream

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
)

// ResolvConf is what nodedns takes from a resolv.conf(5).
type ResolvConf struct {
	// Servers are the usable nameservers, in file order, port 53.
	Servers []netip.AddrPort
	// Search is the search list from the last "search" or "domain" line,
	// lowercased, without trailing dots.
	Search []string
	// Skipped are the nameserver lines not used, with the reason.
	Skipped []Skipped
}

// Skipped is a nameserver line left out.
type Skipped struct {
	Server string // as written
	Reason string
}

func (s Skipped) String() string { return s.Server + " (" + s.Reason + ")" }

// FromResolvConf reads the nameservers and search domains of the
// resolv.conf at path. Loopback and unspecified nameservers are skipped: a
// local stub such as systemd-resolved's 127.0.0.53, or nodedns itself,
// would forward back to us. It fails when no usable nameserver remains,
// naming those skipped; use ReadResolvConf to learn about skipped ones
// when some remain.
func FromResolvConf(path string) ([]netip.AddrPort, []string, error) {
	rc, err := ReadResolvConf(path)
	if err != nil {
		return nil, nil, err
	}
	return rc.Servers, rc.Search, nil
}

// ReadResolvConf is FromResolvConf returning the whole ResolvConf,
// including the nameservers skipped, so the caller can log them. On the
// no-usable-nameserver error it returns the parsed ResolvConf as well.
func ReadResolvConf(path string) (*ResolvConf, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading resolv.conf: %w", err)
	}
	defer f.Close()
	rc, err := parseResolvConf(f)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if len(rc.Servers) == 0 {
		if len(rc.Skipped) == 0 {
			return rc, fmt.Errorf("%s: no nameserver lines", path)
		}
		skipped := make([]string, len(rc.Skipped))
		for i, s := range rc.Skipped {
			skipped[i] = s.String()
		}
		return rc, fmt.Errorf("%s: no usable nameserver; skipped %s", path, strings.Join(skipped, ", "))
	}
	return rc, nil
}

// parseResolvConf follows glibc's resolv.conf(5) for the lines that matter
// here; others (options, sortlist, ...) are ignored.
func parseResolvConf(r io.Reader) (*ResolvConf, error) {
	rc := &ResolvConf{}
	seen := make(map[netip.AddrPort]bool)
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		// '#' and ';' start comments; neither can occur in an address or
		// a domain name, so they are cut anywhere on the line.
		if i := strings.IndexAny(line, "#;"); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "nameserver":
			if len(f) < 2 {
				rc.Skipped = append(rc.Skipped, Skipped{Server: "", Reason: "nameserver line without an address"})
				continue
			}
			ap, reason := nameserver(f[1])
			if reason == "" && seen[ap] {
				reason = "duplicate"
			}
			if reason != "" {
				rc.Skipped = append(rc.Skipped, Skipped{Server: f[1], Reason: reason})
				continue
			}
			seen[ap] = true
			rc.Servers = append(rc.Servers, ap)
		case "search": // the last search or domain line wins
			rc.Search = searchList(f[1:])
		case "domain":
			rc.Search = searchList(f[1:min(2, len(f))])
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return rc, nil
}

// nameserver parses a nameserver address, returning why it is not usable
// if it is not.
func nameserver(s string) (netip.AddrPort, string) {
	a, err := netip.ParseAddr(s) // takes IPv6 zones: fe80::1%eth0
	if err != nil {
		return netip.AddrPort{}, "not an IP address"
	}
	a = a.Unmap() // ::ffff:127.0.0.1 is loopback too
	switch {
	case a.IsLoopback():
		return netip.AddrPort{}, "loopback: a local stub (such as systemd-resolved's 127.0.0.53) or nodedns itself would loop"
	case a.IsUnspecified():
		return netip.AddrPort{}, "unspecified address: means this host, would loop"
	}
	return netip.AddrPortFrom(a, 53), ""
}

func searchList(fields []string) []string {
	out := make([]string, 0, len(fields))
	for _, d := range fields {
		d = strings.ToLower(strings.TrimSuffix(d, "."))
		if d != "" {
			out = append(out, d)
		}
	}
	return out
}
