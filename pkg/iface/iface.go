// Package iface owns nodedns's footprint in the node's network stack: a
// link (normally of kind dummy) holding the link-local listen addresses as
// host addresses, and an nftables table that lets DNS to and from those
// addresses skip conntrack. A reconcile loop puts back whatever someone else
// deletes; Teardown removes both.
//
// Everything works on one network namespace: the caller's, or the one named
// by Config.NetNSPath (tests use that to stay out of the host's namespace).
package iface

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Defaults of Config.
const (
	DefaultName             = "nodelocaldns"
	DefaultTable            = "nodedns"
	DefaultPort      uint16 = 53
	DefaultReconcile        = 5 * time.Second
	maxInterfaceName        = unix.IFNAMSIZ - 1
)

// Actions passed to Config.OnReconcile: one call per thing the reconcile
// loop had to repair, or per step that failed. The set is fixed, so a
// metric can bind one child per action up front.
const (
	ActionLinkRestored    = "link_restored"    // the link was gone and was created again
	ActionLinkUp          = "link_up"          // the link was down and was set up
	ActionAddressRestored = "address_restored" // one address was missing and was added
	ActionRulesRestored   = "rules_restored"   // the nftables table was missing or changed and was rewritten
	ActionLinkError       = "link_error"       // looking up, creating or setting up the link failed
	ActionAddressError    = "address_error"    // listing or adding addresses failed
	ActionRulesError      = "rules_error"      // checking or writing the rules failed
)

// Actions lists every action OnReconcile may be called with.
var Actions = []string{
	ActionLinkRestored, ActionLinkUp, ActionAddressRestored, ActionRulesRestored,
	ActionLinkError, ActionAddressError, ActionRulesError,
}

// ErrClosed is returned by Reconcile after Teardown or Close.
var ErrClosed = errors.New("iface: interface already torn down or closed")

// Config says which link, addresses and rules to keep in place.
type Config struct {
	// Name of the link; default DefaultName. At most 15 bytes.
	Name string
	// Addrs are added to the link as host addresses (/32, /128), IPv4 and
	// IPv6 alike. At least one; unspecified, loopback and multicast
	// addresses are refused.
	Addrs []netip.Addr
	// SetupRules installs the conntrack-bypass table. Off, nodedns does
	// not touch nftables at all (not even to remove an old table), so it
	// runs on kernels without nf_tables.
	SetupRules bool
	// Ports whose UDP and TCP traffic to and from Addrs bypasses
	// conntrack; default [DefaultPort].
	Ports []uint16
	// Table is the name of the nftables table (family inet); default
	// DefaultTable.
	Table string
	// ReconcileInterval is the period of Run; default DefaultReconcile.
	ReconcileInterval time.Duration
	// Logger; nil discards.
	Logger *slog.Logger
	// OnReconcile, if set, is called once per repair or failed step with
	// one of the Action constants (for a metric). It runs on the goroutine
	// calling Reconcile (Run's), after the Interface's lock is released.
	OnReconcile func(action string)
	// NetNSPath, if set, is a network namespace file (e.g.
	// /run/netns/NAME) to work in instead of the caller's namespace.
	NetNSPath string
}

// Interface is a link, its addresses and the rules, as Setup left them.
// Its methods are safe for concurrent use; netlink work is serialised.
type Interface struct {
	cfg   Config
	log   *slog.Logger
	rules *ruleset // nil when !cfg.SetupRules

	mu       sync.Mutex // guards everything below; held during netlink work
	nl       *netlink.Handle
	nft      *nftables.Conn
	ns       netns.NsHandle // netns.None() for the caller's namespace
	kind     string         // kind of the link: dummy, or the fallback used
	adopted  bool           // the link existed before Setup
	finished bool           // Teardown or Close ran
	done     chan struct{}  // closed when finished; ends Run
}

// Setup creates (or adopts) the link, adds the addresses, sets it up and
// installs the rules, then returns the Interface for Run and Teardown.
// Running it again over what an earlier process left (a restart after
// SIGKILL) changes nothing and is no error. On error, what Setup created
// stays in place; call Setup again or remove it by hand.
func Setup(ctx context.Context, cfg Config) (*Interface, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	i := &Interface{cfg: cfg, log: cfg.Logger, ns: netns.None(), done: make(chan struct{})}
	if cfg.NetNSPath != "" {
		i.ns, err = netns.GetFromPath(cfg.NetNSPath)
		if err != nil {
			return nil, fmt.Errorf("opening network namespace %s: %w", cfg.NetNSPath, err)
		}
	}
	i.nl, err = netlink.NewHandleAt(i.ns, unix.NETLINK_ROUTE)
	if err != nil {
		i.release()
		return nil, fmt.Errorf("opening rtnetlink socket: %w", err)
	}
	if cfg.SetupRules {
		// A transient connection per operation (no AsLasting): a failed
		// batch can leave unread replies on a socket, never on the next use.
		i.nft, err = nftables.New(nftables.WithNetNSFd(nsFd(i.ns)))
		if err != nil {
			i.release()
			return nil, fmt.Errorf("opening nftables netlink socket: %w", err)
		}
		i.rules = newRuleset(cfg.Table, cfg.Addrs, cfg.Ports)
	}

	i.mu.Lock()
	defer i.mu.Unlock()
	if err := i.setupLocked(); err != nil {
		i.release()
		return nil, err
	}
	i.log.Info("node-local interface ready", "link", cfg.Name, "kind", i.kind, "adopted", i.adopted,
		"addrs", cfg.Addrs, "rules", cfg.SetupRules, "table", "inet "+cfg.Table, "ports", cfg.Ports)
	return i, nil
}

func (i *Interface) setupLocked() error {
	link, err := i.findLink()
	if err != nil {
		return err
	}
	if link == nil {
		if link, err = i.createLink(); err != nil {
			return err
		}
	} else {
		if err := i.adoptLink(link); err != nil {
			return err
		}
		i.adopted = true
	}
	if _, err := i.ensureUp(link); err != nil {
		return err
	}
	if _, err := i.ensureAddrs(link); err != nil {
		return err
	}
	if i.rules != nil {
		if _, err := i.ensureRules(); err != nil {
			return err
		}
	}
	return nil
}

// Kind is the link's kind: "dummy", or the fallback used where the kernel
// has no dummy links ("bridge"), or the kind of the link adopted.
func (i *Interface) Kind() string {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.kind
}

// Adopted reports whether the link existed before Setup (left by an
// earlier nodedns).
func (i *Interface) Adopted() bool {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.adopted
}

// Reconcile checks the link, its state, the addresses and the rules once
// and repairs what differs from Setup's result, reporting each repair and
// each failed step to OnReconcile. It returns the failures joined, or
// ErrClosed after Teardown or Close.
func (i *Interface) Reconcile() error {
	actions, err := i.reconcile()
	if i.cfg.OnReconcile != nil {
		for _, a := range actions {
			i.cfg.OnReconcile(a)
		}
	}
	return err
}

func (i *Interface) reconcile() (actions []string, err error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.finished {
		return nil, ErrClosed
	}
	var errs []error
	fail := func(action string, err error) {
		actions = append(actions, action)
		errs = append(errs, err)
	}

	// The link first: without it there is nothing to add addresses to,
	// but the rules do not depend on it and are checked regardless.
	link, err := i.findLink()
	created := false
	if err == nil && link == nil {
		link, err = i.createLink()
		if err == nil {
			created = true
			actions = append(actions, ActionLinkRestored)
			i.log.Warn("link was deleted; created it again", "link", i.cfg.Name, "kind", i.kind)
		}
	}
	if err != nil {
		fail(ActionLinkError, err)
		link = nil
	}
	if link != nil {
		// A link just created is down: setting it up is part of the
		// restore, not a repair of its own.
		if changed, err := i.ensureUp(link); err != nil {
			fail(ActionLinkError, err)
		} else if changed && !created {
			actions = append(actions, ActionLinkUp)
			i.log.Warn("link was down; set it up", "link", i.cfg.Name)
		}
		// Even when setting up failed: an address is still worth adding.
		added, err := i.ensureAddrs(link)
		for _, a := range added {
			actions = append(actions, ActionAddressRestored)
			i.log.Warn("address was deleted; added it again", "link", i.cfg.Name, "addr", a)
		}
		if err != nil {
			fail(ActionAddressError, err)
		}
	}
	if i.rules != nil {
		if changed, err := i.ensureRules(); err != nil {
			fail(ActionRulesError, err)
		} else if changed {
			actions = append(actions, ActionRulesRestored)
			i.log.Warn("conntrack-bypass rules were missing or changed; rewrote them", "table", "inet "+i.cfg.Table)
		}
	}
	return actions, errors.Join(errs...)
}

// Run reconciles every ReconcileInterval until ctx ends or the Interface
// is torn down or closed. Failures are logged and reported to OnReconcile;
// the next round tries again.
func (i *Interface) Run(ctx context.Context) {
	t := time.NewTicker(i.cfg.ReconcileInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-i.done:
			return
		case <-t.C:
			if err := i.Reconcile(); err != nil && !errors.Is(err, ErrClosed) {
				i.log.Error("reconciling the node-local interface", "link", i.cfg.Name, "err", err)
			}
		}
	}
}

// Teardown stops Run and removes the link (with its addresses) and the
// rules table. The link goes even when it was adopted: --interface-name
// names a link that belongs to nodedns, and Setup adopts only a link of a
// kind it would have created itself (a port-less bridge at most), so an
// adopted link is one an earlier nodedns left behind when it was killed.
// Leaving it would keep pods' DNS pointed at an address nobody serves and,
// with a kube-dns ClusterIP among Addrs, keep kube-proxy from reaching
// kube-dns.
//
// What is already gone is no error, and a second call (or one after Close)
// does nothing. A caller that knows another instance serves the same
// addresses (a rolling restart) calls Close instead.
func (i *Interface) Teardown() error {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.finished {
		return nil
	}
	var errs []error
	if err := i.removeLink(); err != nil {
		errs = append(errs, err)
	}
	if i.rules != nil {
		if err := i.removeRules(); err != nil {
			errs = append(errs, err)
		}
	}
	i.finish()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	i.log.Info("node-local interface removed", "link", i.cfg.Name, "rules", i.cfg.SetupRules)
	return nil
}

// Close stops Run and releases the netlink sockets, leaving the link, the
// addresses and the rules in place (for --skip-teardown, or for another
// instance taking over). A second call, or one after Teardown, does nothing.
func (i *Interface) Close() error {
	i.mu.Lock()
	defer i.mu.Unlock()
	if !i.finished {
		i.finish()
		i.log.Info("node-local interface left in place", "link", i.cfg.Name, "rules", i.cfg.SetupRules)
	}
	return nil
}

// finish marks the Interface done and releases its sockets; i.mu is held.
func (i *Interface) finish() {
	i.finished = true
	close(i.done)
	i.release()
}

func (i *Interface) release() {
	if i.nl != nil {
		i.nl.Close()
		i.nl = nil
	}
	i.nft = nil // transient connections: nothing stays open
	if i.ns.IsOpen() {
		i.ns.Close()
		i.ns = netns.None()
	}
}

// nsFd is the namespace fd for nftables.WithNetNSFd, where 0 means the
// caller's namespace.
func nsFd(ns netns.NsHandle) int {
	if !ns.IsOpen() {
		return 0
	}
	return int(ns)
}

func (c Config) withDefaults() (Config, error) {
	if c.Name == "" {
		c.Name = DefaultName
	}
	if len(c.Name) > maxInterfaceName || !validIfName(c.Name) {
		return c, fmt.Errorf("interface name %q: want 1 to %d bytes, no '/', ':' or space", c.Name, maxInterfaceName)
	}
	if c.Table == "" {
		c.Table = DefaultTable
	}
	if c.ReconcileInterval == 0 {
		c.ReconcileInterval = DefaultReconcile
	}
	if c.ReconcileInterval < 0 {
		return c, fmt.Errorf("reconcile interval %v: must be positive", c.ReconcileInterval)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if len(c.Addrs) == 0 {
		return c, errors.New("no address to put on the interface")
	}
	addrs := make([]netip.Addr, 0, len(c.Addrs))
	for _, a := range c.Addrs {
		a = a.Unmap()
		switch {
		case !a.IsValid():
			return c, errors.New("invalid (zero) interface address")
		case a.Zone() != "":
			return c, fmt.Errorf("interface address %s: no zone allowed", a)
		case a.IsUnspecified(), a.IsLoopback(), a.IsMulticast():
			return c, fmt.Errorf("interface address %s: unspecified, loopback and multicast addresses cannot be a node-local address", a)
		}
		if !slices.Contains(addrs, a) {
			addrs = append(addrs, a)
		}
	}
	c.Addrs = addrs
	ports := make([]uint16, 0, len(c.Ports)+1)
	for _, p := range c.Ports {
		if p == 0 {
			return c, errors.New("port 0 in conntrack-bypass ports")
		}
		if !slices.Contains(ports, p) {
			ports = append(ports, p)
		}
	}
	if len(ports) == 0 {
		ports = append(ports, DefaultPort)
	}
	c.Ports = ports
	return c, nil
}

func validIfName(s string) bool {
	if s == "" || s == "." || s == ".." {
		return false
	}
	for _, r := range s {
		if r == '/' || r == ':' || r <= ' ' || r > '~' {
			return false
		}
	}
	return true
}
