// Package admin serves the HTTP side of the daemon: /health, /ready and
// /metrics.
package admin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Checks are the probes behind the endpoints. Nil funcs count as passing.
type Checks struct {
	// Alive returns nil when the DNS listeners answer.
	Alive func(ctx context.Context) error
	// Ready returns nil when the daemon should receive traffic: zone
	// synced, listening, not draining.
	Ready func() error
}

// Handler returns a mux with /health, /ready and, when reg is not nil,
// /metrics.
func Handler(checks Checks, reg *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
		var err error
		if checks.Alive != nil {
			ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
			err = checks.Alive(ctx)
			cancel()
		}
		reply(w, err)
	})
	mux.HandleFunc("/ready", func(w http.ResponseWriter, r *http.Request) {
		var err error
		if checks.Ready != nil {
			err = checks.Ready()
		}
		reply(w, err)
	})
	if reg != nil {
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	}
	return mux
}

func reply(w http.ResponseWriter, err error) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "not ok: %v\n", err)
		return
	}
	fmt.Fprintln(w, "ok")
}

// Server is the HTTP server on one listener.
type Server struct {
	srv *http.Server
}

// Serve serves h on ln (bound by the caller: fresh, or inherited from the
// previous instance) until Shutdown.
func Serve(ln net.Listener, h http.Handler, logger *slog.Logger) *Server {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("http server stopped", "addr", ln.Addr().String(), "err", err)
		}
	}()
	return &Server{srv: srv}
}

// Shutdown stops accepting (closing this process's copy of the listener)
// and waits for requests in progress; safe to call twice.
func (s *Server) Shutdown(ctx context.Context) error { return s.srv.Shutdown(ctx) }
