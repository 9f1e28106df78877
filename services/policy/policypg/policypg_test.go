package policypg_test

import (
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/fmgate/fmgate/internal/pg/pgtest"
	"github.com/fmgate/fmgate/services/policy"
	"github.com/fmgate/fmgate/services/policy/policypg"
	"github.com/fmgate/fmgate/services/policy/policytest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestStore(t *testing.T) {
	policytest.TestStore(t, func(t *testing.T) policy.Store {
		pool, schema := pgtest.Schema(t, "policy")
		require.NoError(t, policypg.Migrate(t.Context(), pool, schema))
		return policypg.New(pool, schema)
	})
}

func TestMigrateTwice(t *testing.T) {
	pool, schema := pgtest.Schema(t, "policy")
	require.NoError(t, policypg.Migrate(t.Context(), pool, schema))
	require.NoError(t, policypg.Migrate(t.Context(), pool, schema), "migrations are applied once")
}
