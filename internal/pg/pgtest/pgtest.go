// Package pgtest gives each test its own Postgres schema, so tests never see each other's
// rows, on the server named by FMGATE_TEST_POSTGRES_URL.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/fmgate/fmgate/internal/pg"
)

// EnvURL names the variable that points tests at a Postgres server.
const EnvURL = "FMGATE_TEST_POSTGRES_URL"

// URL returns the test server's URL, skipping the test when none is configured. CI always
// sets it, so there these tests run.
func URL(t testing.TB) string {
	t.Helper()
	url := os.Getenv(EnvURL)
	if url == "" {
		t.Skip(EnvURL + " is not set")
	}
	return url
}

// Schema returns a pool on the test server and the name of a new, empty schema that is
// dropped when the test ends.
func Schema(t testing.TB, prefix string) (*pgxpool.Pool, string) {
	t.Helper()
	url := URL(t)
	ctx := context.Background()
	pool, err := pg.Connect(ctx, url)
	require.NoError(t, err)
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	schema := prefix + "_" + hex.EncodeToString(b)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = pool.Exec(ctx, `DROP SCHEMA IF EXISTS `+pgx.Identifier{schema}.Sanitize()+` CASCADE`)
		pool.Close()
	})
	return pool, schema
}
