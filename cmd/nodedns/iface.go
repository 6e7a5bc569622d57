package main

import (
	"context"
	"errors"
	"log/slog"
)

// setupInterface binds the --listen addresses on the node-local interface
// and returns its teardown.
func setupInterface(ctx context.Context, cfg *Config, log *slog.Logger) (func(), error) {
	return nil, errors.New("--setup-interface: not implemented yet; run with --setup-interface=false and bind the listen addresses yourself")
}
