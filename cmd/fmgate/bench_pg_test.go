package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"net/http/httptest"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fmgate/fmgate/internal/pg/pgtest"
	"github.com/fmgate/fmgate/internal/simulator"
)

// BenchmarkAddedLatencyPostgres is BenchmarkAddedLatency with identity, registry and policy
// (and the audit trail) served from Postgres, in a database of its own made and migrated for
// the run, as a production deployment keeps them. The edge's principal and route caches
// work as they do in production; every request still evaluates policy. Without
// FMGATE_TEST_POSTGRES_URL it is skipped, so `make bench` runs without a Postgres server.
func BenchmarkAddedLatencyPostgres(b *testing.B) {
	if os.Getenv(pgtest.EnvURL) == "" {
		b.Skipf("%s is not set: set it to a Postgres server (for example postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable) to measure the added latency with identity, registry and policy on Postgres", pgtest.EnvURL)
	}
	dbURL := benchDatabase(b)
	if err := run(context.Background(), []string{"migrate", "--postgres.url", dbURL}, io.Discard, io.Discard); err != nil {
		b.Fatalf("migrate: %v", err)
	}
	sim := httptest.NewServer(simulator.New(simulator.Config{}))
	defer sim.Close()
	s := startBenchStack(b, sim.URL, "--postgres.url="+dbURL, "--audit.spool-dir="+b.TempDir())
	measureAddedLatency(b, "postgres", sim.URL, s)
}

// benchDatabase creates an empty database on the server of FMGATE_TEST_POSTGRES_URL, dropped
// when the benchmark ends: the services' schemas have fixed names, so a stack needs a
// database of its own.
func benchDatabase(b *testing.B) string {
	b.Helper()
	base := pgtest.URL(b)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		b.Fatalf("connect to %s: %v", pgtest.EnvURL, err)
	}
	defer conn.Close(ctx)
	r := make([]byte, 5)
	_, _ = rand.Read(r)
	name := "fmgate_bench_" + hex.EncodeToString(r)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		b.Fatalf("create database: %v", err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if c, err := pgx.Connect(ctx, base); err == nil {
			_, _ = c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			_ = c.Close(ctx)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		b.Fatalf("%s: not a URL", pgtest.EnvURL)
	}
	u.Path = "/" + name
	return u.String()
}
