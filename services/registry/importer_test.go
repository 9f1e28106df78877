package registry_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fmgate/fmgate/services/registry"
)

// The importer's credential errors name the reference once, never the secret.
func TestEnvFileCredentialsErrors(t *testing.T) {
	t.Setenv("FMGATE_REGISTRY_UNIT_KEY", "sk-env")
	v, err := registry.EnvFileCredentials{}.Resolve(t.Context(), "env:FMGATE_REGISTRY_UNIT_KEY")
	require.NoError(t, err)
	assert.Equal(t, "sk-env", v)
	for ref, names := range map[string]string{
		"env:FMGATE_REGISTRY_UNIT_UNSET": "FMGATE_REGISTRY_UNIT_UNSET",
		"file:/does/not/exist":           "/does/not/exist",
		"sk-raw-secret":                  "want env:NAME or file:/path",
	} {
		_, err := registry.EnvFileCredentials{}.Resolve(t.Context(), ref)
		require.ErrorIs(t, err, registry.ErrCredentialUnavailable, ref)
		assert.Equal(t, 1, strings.Count(err.Error(), "credential unavailable"), "said once: %v", err)
		assert.Contains(t, err.Error(), names)
		assert.NotContains(t, err.Error(), "sk-raw-secret")
	}
}
