package registrypg_test

import (
	"os"
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/fmgate/fmgate/internal/pg"
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

// TestMigrateKeepsExistingRows applies the first migration alone, writes rows as the store
// of that version did, then applies the rest: the old rows read back with the defaults that
// keep their behaviour.
func TestMigrateKeepsExistingRows(t *testing.T) {
	ctx := t.Context()
	pool, schema := pgtest.Schema(t, "registry")
	first, err := os.ReadFile("migrations/0001_models_endpoints.sql")
	require.NoError(t, err)
	require.NoError(t, pg.Migrate(ctx, pool, schema, fstest.MapFS{"0001_models_endpoints.sql": {Data: first}}))
	_, err = pool.Exec(ctx, pg.Qualify(schema, `INSERT INTO {schema}.models VALUES
		('org-a', 'old', 'Old', 'acme', 'approved', 8192, 1, 2, '{ep-1}')`))
	require.NoError(t, err)
	_, err = pool.Exec(ctx, pg.Qualify(schema, `INSERT INTO {schema}.endpoints VALUES
		('org-a', 'ep-1', 'openai', 'https://api.openai.com/v1', 'gpt-4o', '', '')`))
	require.NoError(t, err)

	require.NoError(t, registrypg.Migrate(ctx, pool, schema))
	s := registrypg.New(pool, schema)
	m, err := s.GetModel(ctx, "org-a", "old")
	require.NoError(t, err)
	assert.Equal(t, []string{"ep-1"}, m.EndpointIDs)
	assert.Nil(t, m.FallbackModels)
	e, err := s.GetEndpoint(ctx, "org-a", "ep-1")
	require.NoError(t, err)
	assert.Equal(t, registry.Endpoint{OrganizationID: "org-a", ID: "ep-1", Provider: registry.ProviderOpenAI,
		BaseURL: "https://api.openai.com/v1", UpstreamModel: "gpt-4o"}, e)
	assert.Equal(t, int32(1), e.EffectiveWeight())
}
