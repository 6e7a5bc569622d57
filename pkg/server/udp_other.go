//go:build !linux

package server

import "net"

// readUDPBatch is Linux only (recvmmsg, sendmmsg); elsewhere the caller
// falls back to readUDPLoop.
func (s *Server) readUDPBatch(*net.UDPConn, *udpSender) bool { return false }

// defaultUDPSockets: one, as ReusePort cannot share an address here.
func defaultUDPSockets() int { return 1 }
