package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nodedns/nodedns/pkg/iface"
)

// ifaceRepairs counts what the interface reconcile loop had to put back
// (or failed to). run registers it with the daemon's registry.
var ifaceRepairs = prometheus.NewCounterVec(prometheus.CounterOpts{
	Namespace: "nodedns",
	Name:      "interface_reconcile_actions_total",
	Help:      "Repairs of the node-local interface, addresses and conntrack-bypass rules by the reconcile loop, and failed steps, by action.",
}, []string{"action"})

// setupInterface binds the --listen addresses on the node-local interface
// and returns its teardown. successor, asked at teardown, reports whether
// another instance serves these addresses now (the upgrade handoff);
// served, whether this instance got as far as serving.
func setupInterface(ctx context.Context, cfg *Config, log *slog.Logger, successor, served func() bool) (func(), error) {
	var addrs []netip.Addr
	var ports []uint16
	for _, ap := range cfg.Listen {
		if a := ap.Addr().Unmap(); !slices.Contains(addrs, a) {
			addrs = append(addrs, a)
		}
		if !slices.Contains(ports, ap.Port()) {
			ports = append(ports, ap.Port())
		}
	}
	// Children bound once: the set of actions is fixed.
	counters := make(map[string]prometheus.Counter, len(iface.Actions))
	for _, a := range iface.Actions {
		counters[a] = ifaceRepairs.WithLabelValues(a)
	}
	ifc, err := iface.Setup(ctx, iface.Config{
		Name:              cfg.InterfaceName,
		Addrs:             addrs,
		Ports:             ports,
		SetupRules:        cfg.SetupRules,
		ReconcileInterval: cfg.ReconcileInterval,
		Logger:            log,
		OnReconcile: func(action string) {
			if c := counters[action]; c != nil {
				c.Inc()
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("setting up the node-local interface (--setup-interface=false skips it): %w", err)
	}

	// The loop outlives ctx (the signal context): addresses deleted while
	// draining are still put back. The returned func stops it.
	loopCtx, stopLoop := context.WithCancel(context.WithoutCancel(ctx))
	loopDone := make(chan struct{})
	go func() {
		defer close(loopDone)
		ifc.Run(loopCtx)
	}()

	return func() {
		stopLoop()
		<-loopDone
		// Another instance serves these addresses (it adopted the link at
		// its start and reconciles it): removing them would cut it off.
		if successor() {
			log.Info("node-local interface and rules left to the instance that serves them now", "link", cfg.InterfaceName)
			ifc.Close()
			return
		}
		if !served() && ifc.Adopted() {
			log.Info("start failed on an adopted interface: left in place for the instance serving on it", "link", cfg.InterfaceName)
			ifc.Close()
			return
		}
		if cfg.SkipTeardown {
			ifc.Close()
			return
		}
		if err := ifc.Teardown(); err != nil {
			log.Error("removing the node-local interface", "link", cfg.InterfaceName, "err", err)
		}
	}, nil
}
