package dispatchpg_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/fmgate/fmgate/internal/pg/pgtest"
	"github.com/fmgate/fmgate/services/dispatch"
	"github.com/fmgate/fmgate/services/dispatch/dispatchpg"
	"github.com/fmgate/fmgate/services/dispatch/dispatchtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestCredentialStore(t *testing.T) {
	dispatchtest.TestCredentialStore(t, func(t *testing.T) dispatch.CredentialStore {
		pool, schema := pgtest.Schema(t, "dispatch")
		require.NoError(t, dispatchpg.Migrate(t.Context(), pool, schema))
		return dispatchpg.New(pool, schema)
	})
}

func TestMigrateTwice(t *testing.T) {
	pool, schema := pgtest.Schema(t, "dispatch")
	require.NoError(t, dispatchpg.Migrate(t.Context(), pool, schema))
	require.NoError(t, dispatchpg.Migrate(t.Context(), pool, schema), "migrations are applied once")
}

// TestEncryptedAtRest reads the table itself: no column of any row holds the plaintext.
func TestEncryptedAtRest(t *testing.T) {
	ctx := t.Context()
	pool, schema := pgtest.Schema(t, "dispatch")
	require.NoError(t, dispatchpg.Migrate(ctx, pool, schema))
	store := dispatchpg.New(pool, schema)
	const secret = "sk-at-rest-5f1e0c2a9b7d4e63a1"
	_, err := dispatch.SealCredential(ctx, store, dispatchtest.NewBox(t), "acme", "openai-key", dispatch.NewCredential(secret), time.Now())
	require.NoError(t, err)

	rows, err := pool.Query(ctx, `SELECT organization_id, name, sealed, update_time::text FROM `+pgx.Identifier{schema, "credentials"}.Sanitize())
	require.NoError(t, err)
	var n int
	for rows.Next() {
		n++
		var org, name, when string
		var sealed []byte
		require.NoError(t, rows.Scan(&org, &name, &sealed, &when))
		assert.Equal(t, "acme", org)
		assert.Equal(t, "openai-key", name)
		assert.NotEmpty(t, sealed)
		assert.False(t, bytes.Contains(sealed, []byte(secret)), "the stored bytes hold the plaintext")
		for _, part := range []string{secret[:12], secret[12:]} {
			assert.False(t, bytes.Contains(sealed, []byte(part)), "the stored bytes hold part of the plaintext")
		}
	}
	require.NoError(t, rows.Err())
	assert.Equal(t, 1, n)
}
