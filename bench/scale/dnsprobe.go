package main

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"time"

	"github.com/miekg/dns"
)

// pollInterval is the pause between two queries of a poller: the
// resolution of the write-to-answer latency, small against the 250 ms
// target and light on the servers (at most 500 queries/s each).
const pollInterval = 2 * time.Millisecond

// dnsConn asks one server over one UDP socket, the same way for every
// server.
type dnsConn struct {
	co *dns.Conn
}

func dialDNS(addr string) (*dnsConn, error) {
	co, err := dns.Dial("udp", addr)
	if err != nil {
		return nil, err
	}
	co.UDPSize = dns.MaxMsgSize
	return &dnsConn{co: co}, nil
}

func (c *dnsConn) Close() error { return c.co.Close() }

// query sends one A/AAAA/… question and returns the answer with the same
// ID, or an error after timeout.
func (c *dnsConn) query(name string, qtype uint16, timeout time.Duration) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.Id = uint16(rand.Uint32())
	deadline := time.Now().Add(timeout)
	c.co.SetDeadline(deadline)
	if err := c.co.WriteMsg(m); err != nil {
		return nil, err
	}
	for {
		r, err := c.co.ReadMsg()
		if err != nil {
			return nil, err
		}
		if r.Id == m.Id { // an older, timed-out query's answer is skipped
			return r, nil
		}
	}
}

// hasA reports whether name has A record a.
func (c *dnsConn) hasA(name string, a netip.Addr) (bool, error) {
	r, err := c.query(name, dns.TypeA, 250*time.Millisecond)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return false, nil // lost or slow: ask again
		}
		return false, err
	}
	for _, rr := range r.Answer {
		if ra, ok := rr.(*dns.A); ok {
			if got, ok := netip.AddrFromSlice(ra.A); ok && got.Unmap() == a {
				return true, nil
			}
		}
	}
	return false, nil
}

// waitA polls until name has A record a and returns when it was seen, or
// an error when ctx ends first.
func (c *dnsConn) waitA(ctx context.Context, name string, a netip.Addr) (time.Time, error) {
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for {
		ok, err := c.hasA(name, a)
		if err != nil {
			return time.Time{}, err
		}
		if ok {
			return time.Now(), nil
		}
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-t.C:
		}
	}
}
