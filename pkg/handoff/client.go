package handoff

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"sync"
	"syscall"
	"time"
)

// Handoff is a successful Take: the sockets, and the line back to the
// previous instance, which waits for Serving or Abort (up to its Timeout).
type Handoff struct {
	// From is the previous instance.
	From Status
	// Sockets are the received sockets, each verified against its Key.
	// The caller owns their Files.
	Sockets []Socket

	conn *net.UnixConn
	once sync.Once
}

// Serving tells the previous instance that we serve its sockets now (and
// own the path: call it after Listen). Safe to call more than once, and
// after Abort (then it does nothing).
func (h *Handoff) Serving() error { return h.finish(request{V: version, Op: opServing}) }

// Abort tells the previous instance that we do not serve its sockets: it
// keeps serving them. The caller still closes the Files.
func (h *Handoff) Abort(reason string) error {
	return h.finish(request{V: version, Op: opAbort, Error: reason})
}

func (h *Handoff) finish(m request) error {
	err := net.ErrClosed
	h.once.Do(func() {
		h.conn.SetWriteDeadline(time.Now().Add(DefaultTimeout))
		err = writeMsg(h.conn, m, nil)
		h.conn.Close()
	})
	return err
}

// Take asks the instance at path for its sockets among want and returns
// them, verified. ctx bounds the exchange (DefaultTimeout when it has no
// deadline). Errors: ErrNoInstance (nothing listens: bind afresh),
// ErrOtherNetNS, ErrRefused, ErrMismatch, or a transport error; after any
// error no descriptor is left open and the old instance keeps serving.
//
// The reply may cover only part of want (the old instance listened on
// fewer addresses); the caller binds the rest.
func Take(ctx context.Context, path string, want []Key) (*Handoff, error) {
	c, err := dial(ctx, path)
	if err != nil {
		return nil, err
	}
	ns := netNS()
	var rep reply
	fds, err := exchange(c, request{V: version, Op: opHandoff, ID: InstanceID(), PID: os.Getpid(), NetNS: ns, Want: want}, &rep)
	if err == nil {
		err = replyErr(rep, ns)
	}
	if err != nil {
		closeFDs(fds)
		c.Close()
		return nil, err
	}
	if err := check(fds, rep.Sockets, want); err != nil {
		closeFDs(fds)
		writeMsg(c, request{V: version, Op: opAbort, Error: err.Error()}, nil)
		c.Close()
		return nil, err
	}
	h := &Handoff{From: rep.Status, conn: c}
	for i, fd := range fds {
		// os.NewFile keeps a non-blocking descriptor non-blocking, also
		// through Fd (which net.FileConn calls); see dup.
		h.Sockets = append(h.Sockets, Socket{Key: rep.Sockets[i], File: os.NewFile(uintptr(fd), rep.Sockets[i].String())})
	}
	return h, nil
}

// check verifies the received descriptors against the header and the
// header against what was asked for.
func check(fds []int, keys, want []Key) error {
	if len(fds) != len(keys) {
		return fmt.Errorf("%w: %d descriptors for %d sockets", ErrMismatch, len(fds), len(keys))
	}
	for i, k := range keys {
		if !slices.Contains(want, k) {
			return fmt.Errorf("%w: got %s, which was not asked for", ErrMismatch, k)
		}
		if err := verify(fds[i], k); err != nil {
			return fmt.Errorf("%w: %s: %v", ErrMismatch, k, err)
		}
	}
	return nil
}

// Query asks the instance at path how it is: whether it is ready and which
// sockets it serves. An instance about to stop asks this to learn whether
// a successor serves its addresses. Errors as for Take.
func Query(ctx context.Context, path string) (Status, error) {
	c, err := dial(ctx, path)
	if err != nil {
		return Status{}, err
	}
	defer c.Close()
	ns := netNS()
	var rep reply
	fds, err := exchange(c, request{V: version, Op: opStatus, ID: InstanceID(), PID: os.Getpid(), NetNS: ns}, &rep)
	closeFDs(fds) // none expected
	if err == nil {
		err = replyErr(rep, ns)
	}
	if err != nil {
		return Status{}, err
	}
	return rep.Status, nil
}

func replyErr(rep reply, ns string) error {
	switch {
	case rep.Code == codeNetNS:
		return fmt.Errorf("%w: %s", ErrOtherNetNS, rep.Error)
	case rep.Error != "":
		return fmt.Errorf("%w: %s", ErrRefused, rep.Error)
	case rep.V != version:
		return fmt.Errorf("%w: protocol version %d, want %d", ErrRefused, rep.V, version)
	case ns == "" || rep.NetNS != ns:
		// Checked here too: the instance at the path might not check.
		return fmt.Errorf("%w: it is in %q, we are in %q", ErrOtherNetNS, rep.NetNS, ns)
	}
	return nil
}

// dial connects to path; no socket file, or one nobody listens on (left
// by a killed instance), is ErrNoInstance.
func dial(ctx context.Context, path string) (*net.UnixConn, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "unixpacket", path)
	switch {
	case errors.Is(err, syscall.ENOENT):
		return nil, fmt.Errorf("%w: no socket file %s", ErrNoInstance, path)
	case errors.Is(err, syscall.ECONNREFUSED):
		return nil, fmt.Errorf("%w: stale socket file %s (its instance is gone)", ErrNoInstance, path)
	case err != nil:
		return nil, fmt.Errorf("handoff: connecting to %s: %w", path, err)
	}
	uc := c.(*net.UnixConn)
	dl, _ := ctx.Deadline()
	uc.SetDeadline(dl)
	return uc, nil
}

// exchange sends req and reads the reply into rep, with its descriptors.
func exchange(c *net.UnixConn, req request, rep *reply) ([]int, error) {
	if err := writeMsg(c, req, nil); err != nil {
		return nil, fmt.Errorf("handoff: sending request: %w", err)
	}
	fds, err := readMsg(c, rep)
	if err != nil {
		return nil, fmt.Errorf("handoff: reading reply: %w", err)
	}
	// The deadline covered the exchange; the line back to the old
	// instance (Serving, Abort) gets the old instance's own timeout.
	c.SetDeadline(time.Time{})
	return fds, nil
}
