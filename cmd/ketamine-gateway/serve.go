package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway"
)

// serveConfig is what serve reads from flags and the environment.
type serveConfig struct {
	addr, db, identifierBase string
	maxBody                  int64
}

// serve runs the HTTP server until ctx is cancelled, then drains it.
func serve(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg serveConfig
	fs.StringVar(&cfg.addr, "addr", envOr(getenv, "GATEWAY_ADDR", "127.0.0.1:8080"), "listen address (GATEWAY_ADDR)")
	fs.StringVar(&cfg.db, "db", envOr(getenv, "GATEWAY_DB", "ketamine-gateway.db"), "SQLite file or postgres:// URL (GATEWAY_DB)")
	fs.StringVar(&cfg.identifierBase, "identifier-base", getenv("GATEWAY_IDENTIFIER_BASE"), "namespace of minted identifier systems (GATEWAY_IDENTIFIER_BASE)")
	fs.Int64Var(&cfg.maxBody, "max-body", gateway.DefaultMaxBodyBytes, "request body limit in bytes")
	if err := fs.Parse(args); err != nil {
		return &exitError{code: exitUsage}
	}
	if fs.NArg() > 0 {
		return usageError("serve takes no arguments")
	}
	logger := slog.New(slog.NewJSONHandler(stderr, nil))
	srv, err := gateway.NewServer(gateway.Config{MaxBodyBytes: cfg.maxBody, IdentifierBase: cfg.identifierBase, Logger: logger})
	if err != nil {
		return err
	}
	// Listen first, so a busy port fails at once.
	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return &exitError{code: exitInvalid, msg: fmt.Sprintf("listen on %s: %v", cfg.addr, err)}
	}
	hs := &http.Server{
		Handler:           srv,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      120 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	logger.Info("listening", "addr", ln.Addr().String())
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	logger.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func envOr(getenv func(string) string, key, def string) string {
	if v := getenv(key); v != "" {
		return v
	}
	return def
}
