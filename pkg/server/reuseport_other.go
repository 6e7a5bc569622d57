//go:build !linux

package server

import "syscall"

// ReusePort is a no-op off Linux: one socket per address (UDPSockets > 1
// then fails to bind).
func ReusePort(network, address string, c syscall.RawConn) error { return nil }
