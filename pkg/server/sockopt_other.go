//go:build !linux

package server

import (
	"net"
	"syscall"
)

// ReusePort is a no-op off Linux: one socket per address (UDPSockets > 1
// then fails to bind).
func ReusePort(network, address string, c syscall.RawConn) error { return nil }

// hasInput is false off Linux: idle connections are reclaimed on their
// state alone.
func hasInput(net.Conn) bool { return false }
