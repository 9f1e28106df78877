package identitypg_test

import (
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/fmgate/fmgate/internal/pg/pgtest"
	"github.com/fmgate/fmgate/services/identity"
	"github.com/fmgate/fmgate/services/identity/identitypg"
	"github.com/fmgate/fmgate/services/identity/identitytest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestStore(t *testing.T) {
	identitytest.TestStore(t, func(t *testing.T) identity.Store {
		pool, schema := pgtest.Schema(t, "identity")
		require.NoError(t, identitypg.Migrate(t.Context(), pool, schema))
		return identitypg.New(pool, schema)
	})
}

func TestMigrateTwice(t *testing.T) {
	pool, schema := pgtest.Schema(t, "identity")
	require.NoError(t, identitypg.Migrate(t.Context(), pool, schema))
	require.NoError(t, identitypg.Migrate(t.Context(), pool, schema))
	var n int
	require.NoError(t, pool.QueryRow(t.Context(),
		`SELECT count(*) FROM pg_indexes WHERE schemaname = $1 AND indexname = 'api_keys_hash_key'`, schema).Scan(&n))
	require.Equal(t, 1, n, "the hash is unique-indexed")
}
