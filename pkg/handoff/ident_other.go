//go:build !linux

package handoff

import (
	"errors"
	"net"
)

// netNS is unknown off Linux: every handoff is refused, and instances bind
// afresh.
func netNS() string { return "" }

func peerUID(*net.UnixConn) (uint32, error) { return 0, errors.ErrUnsupported }
