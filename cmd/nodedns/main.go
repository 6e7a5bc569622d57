// Command nodedns is a node-local DNS cache for Kubernetes: it serves the
// cluster zone from a watch of the API server (or a zone file) and forwards
// every other name upstream.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nodedns/nodedns/pkg/config"
)

func main() {
	cfg, err := parseFlags(os.Args[1:], os.Getenv)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "nodedns:", err)
		// 2 is a usage error (flags); a bad config file is a failed start.
		var fileErr *config.Error
		if errors.As(err, &fileErr) {
			os.Exit(1)
		}
		os.Exit(2)
	}
	logger, err := newLogger(cfg.LogFormat, cfg.LogLevel)
	if err != nil {
		fmt.Fprintln(os.Stderr, "nodedns:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := run(ctx, cfg, logger); err != nil {
		logger.Error("nodedns stopped", "err", err)
		os.Exit(1)
	}
}

// logLevel is the level of the logger newLogger makes; a config reload
// changes it (--log-level is live).
var logLevel = new(slog.LevelVar)

func newLogger(format, level string) (*slog.Logger, error) {
	lv, err := parseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("--log-level %q: %w", level, err)
	}
	logLevel.Set(lv)
	opts := &slog.HandlerOptions{Level: logLevel}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
}

func parseLevel(s string) (slog.Level, error) {
	var lv slog.Level
	err := lv.UnmarshalText([]byte(s))
	return lv, err
}

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
