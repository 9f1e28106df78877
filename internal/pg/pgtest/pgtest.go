// Package pgtest gives each test its own Postgres schema, so tests never see each other's
// rows, on the server named by FMGATE_TEST_POSTGRES_URL.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/fmgate/fmgate/internal/pg"
	"github.com/fmgate/fmgate/internal/testenv"
)

// EnvURL names the variable that points tests at a Postgres server.
const EnvURL = "FMGATE_TEST_POSTGRES_URL"

// URL returns the test server's URL. Unset, the test skips, or fails in CI.
func URL(t testing.TB) string {
	t.Helper()
	return testenv.Get(t, EnvURL, "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable")
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
