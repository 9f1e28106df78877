package registrypg_test

import (
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/fmgate/fmgate/internal/pg/pgtest"
	"github.com/fmgate/fmgate/services/registry"
	"github.com/fmgate/fmgate/services/registry/registrypg"
	"github.com/fmgate/fmgate/services/registry/registrytest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestStore(t *testing.T) {
	registrytest.TestStore(t, func(t *testing.T) registry.Store {
		pool, schema := pgtest.Schema(t, "registry")
		require.NoError(t, registrypg.Migrate(t.Context(), pool, schema))
		return registrypg.New(pool, schema)
	})
}

func TestMigrateTwice(t *testing.T) {
	pool, schema := pgtest.Schema(t, "registry")
	require.NoError(t, registrypg.Migrate(t.Context(), pool, schema))
	require.NoError(t, registrypg.Migrate(t.Context(), pool, schema), "migrations are applied once")
}
