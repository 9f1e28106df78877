package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/fmgate/fmgate/internal/config"
	"github.com/fmgate/fmgate/internal/simulator"
)

// simulate runs the provider simulator on its own, for demos, benchmarks and compose.
func simulate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("fmgate simulate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", ":8091", "listen address")
	latency := fs.Duration("latency", 0, "delay before each answer or first streamed chunk")
	chunkDelay := fs.Duration("chunk-delay", 0, "delay between streamed chunks")
	apiKey := fs.String("api-key", "", "API key clients must present (default: none required)")
	models := fs.String("models", "demo", "comma-separated model names to list")
	if err := config.Parse(fs, args, nil); err != nil {
		return err
	}
	lis, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{
		Handler: simulator.New(simulator.Config{
			APIKey: *apiKey, Latency: *latency, ChunkDelay: *chunkDelay, Models: strings.Split(*models, ","),
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	fmt.Fprintf(stdout, "provider simulator listening on %s (OpenAI base URL http://%s/v1)\n", lis.Addr(), lis.Addr())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(lis) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
