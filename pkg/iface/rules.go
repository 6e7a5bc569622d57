package iface

// Conntrack bypass, through nftables over netlink (github.com/google/nftables).
//
// Why nftables over netlink rather than the iptables binary:
//   - One table of our own, family inet ("table inet nodedns"), holds every
//     rule for IPv4 and IPv6. It coexists with kube-proxy in both of its
//     modes without touching their rules: in iptables mode kube-proxy's rules
//     live in the ip/ip6 tables that iptables-nft makes (or in the legacy
//     xtables, which run alongside nftables hooks), in nftables mode in its
//     own "kube-proxy" tables. Nobody else flushes or rewrites a table they
//     did not create, and we never touch theirs.
//   - Writing the table is one atomic transaction (delete and re-create in
//     one batch), so a rewrite is idempotent and never leaves a moment with
//     half the rules; removal deletes one table.
//   - No binary in the image and no dependence on which iptables flavour
//     (legacy or nft) the node uses.
//
// Rules, for every local address A, protocol udp/tcp and port P:
//
//	chain raw-prerouting (hook prerouting, priority raw = -300)
//	chain raw-output     (hook output,     priority raw = -300)
//	    <A is the destination, dport P> counter notrack
//	    <A is the source,      sport P> counter notrack
//	chain filter-input   (hook input,  priority filter = 0)
//	chain filter-output  (hook output, priority filter = 0)
//	    the same matches, counter accept
//
// Priority raw runs before conntrack (-200), so matched packets never get a
// conntrack entry: no table to fill, no 5-second timeouts when two UDP
// queries race on one entry (the race NodeLocal DNSCache exists for), and
// kube-proxy's DNAT (which needs conntrack) never rewrites them, which is
// what makes binding the kube-dns ClusterIP locally work.
//
// The accept rules count the traffic and accept it in this table's chains.
// They cannot open a firewall that drops elsewhere: in nftables an accept
// ends only the base chain it is in, and a drop in any other base chain on
// the same hook still drops. A node firewall with a drop policy must allow
// these addresses itself, and must not rely on "ct state established" for
// them, since untracked packets have ct state "untracked".
//
// Every rule carries a comment (nft's own userdata format, so `nft list
// ruleset` shows it) naming what it is for; the reconcile check compares
// chains, comments and expressions (ignoring counter values) with what it
// would write, and rewrites the whole table on any difference.

import (
	"bytes"
	"fmt"
	"net/netip"
	"reflect"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// ruleset is the table Setup wants, built once from the Config.
type ruleset struct {
	table  *nftables.Table
	chains []*nftables.Chain
	rules  map[string][]*nftables.Rule // by chain name, in order
}

// Chain names in the table.
const (
	chainRawPrerouting = "raw-prerouting"
	chainRawOutput     = "raw-output"
	chainFilterInput   = "filter-input"
	chainFilterOutput  = "filter-output"
)

func newRuleset(table string, addrs []netip.Addr, ports []uint16) *ruleset {
	t := &nftables.Table{Name: table, Family: nftables.TableFamilyINet}
	accept := nftables.ChainPolicyAccept
	chain := func(name string, hook *nftables.ChainHook, prio *nftables.ChainPriority) *nftables.Chain {
		return &nftables.Chain{Name: name, Table: t, Type: nftables.ChainTypeFilter, Hooknum: hook, Priority: prio, Policy: &accept}
	}
	rs := &ruleset{
		table: t,
		chains: []*nftables.Chain{
			chain(chainRawPrerouting, nftables.ChainHookPrerouting, nftables.ChainPriorityRaw),
			chain(chainRawOutput, nftables.ChainHookOutput, nftables.ChainPriorityRaw),
			chain(chainFilterInput, nftables.ChainHookInput, nftables.ChainPriorityFilter),
			chain(chainFilterOutput, nftables.ChainHookOutput, nftables.ChainPriorityFilter),
		},
		rules: map[string][]*nftables.Rule{},
	}
	for _, c := range rs.chains {
		notrack := c.Name == chainRawPrerouting || c.Name == chainRawOutput
		for _, a := range addrs {
			for _, proto := range []uint8{unix.IPPROTO_UDP, unix.IPPROTO_TCP} {
				for _, port := range ports {
					for _, toAddr := range []bool{true, false} {
						rs.rules[c.Name] = append(rs.rules[c.Name], newRule(c, a, proto, port, toAddr, notrack))
					}
				}
			}
		}
	}
	return rs
}

// newRule matches proto traffic to (toAddr) or from a:port, counts it and
// either untracks or accepts it.
func newRule(c *nftables.Chain, a netip.Addr, proto uint8, port uint16, toAddr, notrack bool) *nftables.Rule {
	// Offsets in the IPv4 (RFC 791) and IPv6 (RFC 8200) headers, and in
	// the UDP/TCP header (source port first, then destination port).
	family, addrOff, portOff := uint8(unix.NFPROTO_IPV4), uint32(12), uint32(0)
	if a.Is6() {
		family, addrOff = unix.NFPROTO_IPV6, 8
	}
	if toAddr {
		addrOff += uint32(a.BitLen() / 8)
		portOff = 2
	}
	exprs := []expr.Any{
		// Same order as nft compiles "ip daddr A udp dport P", so that
		// `nft list ruleset` prints the rule in that form.
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{family}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: addrOff, Len: uint32(a.BitLen() / 8)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: a.AsSlice()},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: portOff, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(port)},
		&expr.Counter{},
	}
	verb := "accept"
	if notrack {
		verb = "notrack"
		exprs = append(exprs, &expr.Notrack{})
	} else {
		exprs = append(exprs, &expr.Verdict{Kind: expr.VerdictAccept})
	}
	protoName, dir := "udp", "from"
	if proto == unix.IPPROTO_TCP {
		protoName = "tcp"
	}
	if toAddr {
		dir = "to"
	}
	comment := fmt.Sprintf("nodedns: %s %s %s %s", verb, protoName, dir, netip.AddrPortFrom(a, port))
	return &nftables.Rule{
		Table:    c.Table,
		Chain:    c,
		Exprs:    exprs,
		UserData: userdata.AppendString(nil, userdata.TypeComment, comment),
	}
}

// ensureRules rewrites the table unless it is exactly as wanted, reporting
// whether it wrote.
func (i *Interface) ensureRules() (bool, error) {
	ok, err := i.rulesInPlace()
	if err != nil {
		return false, fmt.Errorf("checking conntrack-bypass rules in table inet %s: %w", i.rules.table.Name, err)
	}
	if ok {
		return false, nil
	}
	if err := i.writeRules(); err != nil {
		return false, fmt.Errorf("installing conntrack-bypass rules in table inet %s (--setup-rules=false skips them): %w", i.rules.table.Name, err)
	}
	return true, nil
}

// rulesInPlace reports whether the table, its chains and their rules are
// exactly what newRuleset built. A dormant table counts as not in place.
func (i *Interface) rulesInPlace() (bool, error) {
	rs := i.rules
	tables, err := i.nft.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return false, fmt.Errorf("listing tables: %w", err)
	}
	var table *nftables.Table
	for _, t := range tables {
		if t.Name == rs.table.Name {
			table = t
		}
	}
	if table == nil || table.Flags != 0 {
		return false, nil
	}
	chains, err := i.nft.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return false, fmt.Errorf("listing chains: %w", err)
	}
	got := map[string]*nftables.Chain{}
	for _, c := range chains {
		if c.Table != nil && c.Table.Name == rs.table.Name {
			got[c.Name] = c
		}
	}
	if len(got) != len(rs.chains) {
		return false, nil
	}
	for _, want := range rs.chains {
		c := got[want.Name]
		if c == nil || !sameChain(c, want) {
			return false, nil
		}
		rules, err := i.nft.GetRules(rs.table, want)
		if err != nil {
			return false, fmt.Errorf("listing rules of chain %s: %w", want.Name, err)
		}
		wantRules := rs.rules[want.Name]
		if len(rules) != len(wantRules) {
			return false, nil
		}
		for k, r := range rules {
			if !bytes.Equal(r.UserData, wantRules[k].UserData) || !sameExprs(r.Exprs, wantRules[k].Exprs) {
				return false, nil
			}
		}
	}
	return true, nil
}

func sameChain(got, want *nftables.Chain) bool {
	return got.Type == want.Type &&
		got.Hooknum != nil && *got.Hooknum == *want.Hooknum &&
		got.Priority != nil && *got.Priority == *want.Priority &&
		got.Policy != nil && *got.Policy == *want.Policy
}

// sameExprs compares expressions as the kernel reports them with the ones
// written, ignoring counter values.
func sameExprs(got, want []expr.Any) bool {
	if len(got) != len(want) {
		return false
	}
	for k := range want {
		if _, ok := want[k].(*expr.Counter); ok {
			if _, ok := got[k].(*expr.Counter); !ok {
				return false
			}
			continue
		}
		if !reflect.DeepEqual(got[k], want[k]) {
			return false
		}
	}
	return true
}

// writeRules replaces the table in one transaction. Adding the table
// before deleting it makes the delete succeed whether or not it existed.
func (i *Interface) writeRules() error {
	rs, c := i.rules, i.nft
	c.AddTable(rs.table)
	c.DelTable(rs.table)
	c.AddTable(rs.table)
	for _, ch := range rs.chains {
		c.AddChain(ch)
		for _, r := range rs.rules[ch.Name] {
			c.AddRule(r)
		}
	}
	return c.Flush()
}

// removeRules deletes the table; one already gone is no error.
func (i *Interface) removeRules() error {
	c, t := i.nft, i.rules.table
	c.AddTable(t)
	c.DelTable(t)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("deleting table inet %s: %w", t.Name, err)
	}
	return nil
}
