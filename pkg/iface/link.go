package iface

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// linkKinds are tried in order when creating the link.
//
// dummy is what NodeLocal DNSCache and kube-proxy's IPVS mode use: a
// device that only holds addresses. Some kernels are built without it
// (this project's CI kernel is one), so the fallback is a bridge with no
// ports, which holds addresses just as well: nothing is ever sent through
// it (traffic to a local address goes through lo), it has no ports to
// forward to, and STP is off by default. The bridge module is nearly always
// there (docker0, CNI bridges). ifb would also work but is not tried: when
// its module loads it creates ifb0 and ifb1 in the host namespace, a side
// effect nodedns must not have.
var linkKinds = []string{"dummy", "bridge"}

func newLink(kind, name string) netlink.Link {
	attrs := netlink.NewLinkAttrs()
	attrs.Name = name
	switch kind {
	case "dummy":
		return &netlink.Dummy{LinkAttrs: attrs}
	case "bridge":
		return &netlink.Bridge{LinkAttrs: attrs}
	}
	return &netlink.GenericLink{LinkAttrs: attrs, LinkType: kind}
}

// findLink returns the link named cfg.Name, or nil when there is none.
func (i *Interface) findLink() (netlink.Link, error) {
	link, err := i.nl.LinkByName(i.cfg.Name)
	if err != nil {
		if _, ok := errors.AsType[netlink.LinkNotFoundError](err); ok {
			return nil, nil
		}
		return nil, fmt.Errorf("looking up link %s: %w", i.cfg.Name, err)
	}
	return link, nil
}

// createLink creates the link with the first kind the kernel knows,
// starting with the kind used before (a re-creation tries that first).
func (i *Interface) createLink() (netlink.Link, error) {
	kinds := linkKinds
	if i.kind != "" && slices.Contains(linkKinds, i.kind) {
		kinds = append([]string{i.kind}, slices.DeleteFunc(slices.Clone(linkKinds), func(k string) bool { return k == i.kind })...)
	}
	var errs []error
	for _, kind := range kinds {
		err := i.nl.LinkAdd(newLink(kind, i.cfg.Name))
		if errors.Is(err, unix.EEXIST) {
			// Someone created it between our lookup and now: adopt it.
			link, err := i.findLink()
			if err != nil {
				return nil, err
			}
			if link == nil {
				return nil, fmt.Errorf("creating link %s: exists, then vanished", i.cfg.Name)
			}
			return link, i.adoptLink(link)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("creating link %s of type %s: %w", i.cfg.Name, kind, err))
			// EOPNOTSUPP is the kernel's answer to an unknown link kind
			// (rtnl_newlink with no rtnl_link_ops for it): try the next.
			if errors.Is(err, unix.EOPNOTSUPP) {
				continue
			}
			return nil, errors.Join(errs...)
		}
		if len(errs) > 0 {
			i.log.Warn("link type not supported by this kernel; using a fallback", "link", i.cfg.Name,
				"type", kind, "unsupported", errors.Join(errs...))
		}
		i.kind = kind
		link, err := i.nl.LinkByName(i.cfg.Name)
		if err != nil {
			return nil, fmt.Errorf("looking up link %s after creating it: %w", i.cfg.Name, err)
		}
		return link, nil
	}
	return nil, errors.Join(errs...)
}

// adoptLink accepts an existing link only when it is of a kind createLink
// makes and, for a bridge, has no ports: anything else is someone else's
// device, which Teardown would then delete.
func (i *Interface) adoptLink(link netlink.Link) error {
	kind := link.Type()
	if !slices.Contains(linkKinds, kind) {
		return fmt.Errorf("link %s exists with type %s; nodedns adopts only %v: choose another --interface-name or delete it", i.cfg.Name, kind, linkKinds)
	}
	if kind == "bridge" {
		links, err := i.nl.LinkList()
		if errors.Is(err, netlink.ErrDumpInterrupted) {
			links, err = i.nl.LinkList() // the link table changed under the dump: once more
		}
		if err != nil {
			return fmt.Errorf("listing links to check bridge %s has no ports: %w", i.cfg.Name, err)
		}
		for _, l := range links {
			if l.Attrs().MasterIndex == link.Attrs().Index {
				return fmt.Errorf("link %s is a bridge with port %s, not one nodedns made: choose another --interface-name", i.cfg.Name, l.Attrs().Name)
			}
		}
	}
	i.kind = kind
	return nil
}

// ensureUp sets the link up if it is not, reporting whether it did.
func (i *Interface) ensureUp(link netlink.Link) (bool, error) {
	if link.Attrs().Flags&net.FlagUp != 0 {
		return false, nil
	}
	if err := i.nl.LinkSetUp(link); err != nil {
		return false, fmt.Errorf("setting link %s up: %w", i.cfg.Name, err)
	}
	return true, nil
}

// ensureAddrs adds each missing address as a host address and returns the
// ones it added. IPv6 addresses get nodad so they are usable at once (DAD
// on a link that reaches nowhere only delays them). Addresses already on
// the link, ours or not, are left alone.
func (i *Interface) ensureAddrs(link netlink.Link) ([]netip.Addr, error) {
	present, err := i.nl.AddrList(link, netlink.FAMILY_ALL)
	if errors.Is(err, netlink.ErrDumpInterrupted) {
		present, err = i.nl.AddrList(link, netlink.FAMILY_ALL)
	}
	if err != nil {
		return nil, fmt.Errorf("listing addresses of %s: %w", i.cfg.Name, err)
	}
	var added []netip.Addr
	var errs []error
	for _, want := range i.cfg.Addrs {
		if slices.ContainsFunc(present, func(a netlink.Addr) bool { return isHostAddr(a, want) }) {
			continue
		}
		bits := want.BitLen()
		addr := &netlink.Addr{IPNet: &net.IPNet{IP: want.AsSlice(), Mask: net.CIDRMask(bits, bits)}}
		if want.Is6() {
			addr.Flags = unix.IFA_F_NODAD
		}
		err := i.nl.AddrAdd(link, addr)
		switch {
		case errors.Is(err, unix.EEXIST):
			// Added by someone else since the listing (or, for IPv6,
			// present with another prefix length): it is there.
		case err != nil:
			errs = append(errs, fmt.Errorf("adding %s/%d to %s: %w", want, bits, i.cfg.Name, err))
		default:
			added = append(added, want)
		}
	}
	return added, errors.Join(errs...)
}

// isHostAddr reports whether a is want with a full-length prefix.
func isHostAddr(a netlink.Addr, want netip.Addr) bool {
	if a.IPNet == nil {
		return false
	}
	ip, ok := netip.AddrFromSlice(a.IP)
	if !ok || ip.Unmap() != want {
		return false
	}
	ones, bits := a.Mask.Size()
	return ones == bits && bits == want.BitLen()
}

// removeLink deletes the link, and with it its addresses; a link already
// gone is no error.
func (i *Interface) removeLink() error {
	link, err := i.findLink()
	if err != nil || link == nil {
		return err
	}
	if err := i.nl.LinkDel(link); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("deleting link %s: %w", i.cfg.Name, err)
	}
	return nil
}
