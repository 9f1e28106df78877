package dispatch_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fmgate/fmgate/services/dispatch"
	"github.com/fmgate/fmgate/services/dispatch/dispatchmem"
	"github.com/fmgate/fmgate/services/dispatch/dispatchtest"
)

func TestStoreResolver(t *testing.T) {
	const secret = "sk-store-resolver-7c1d9e0b2a"
	ctx := t.Context()
	store := dispatchmem.New()
	box := dispatchtest.NewBox(t)
	_, err := dispatch.SealCredential(ctx, store, box, "acme", "openai-key", dispatch.NewCredential(secret), time.Now())
	require.NoError(t, err)
	// globex holds acme's sealed bytes under the same name: a copied row must not open.
	stolen, err := store.GetSealed(ctx, "acme", "openai-key")
	require.NoError(t, err)
	_, err = store.PutSealed(ctx, "globex", "openai-key", stolen, time.Now())
	require.NoError(t, err)
	_, err = store.PutSealed(ctx, "acme", "renamed-key", stolen, time.Now())
	require.NoError(t, err)
	t.Setenv("FMGATE_DISPATCH_STORE_TEST_KEY", "sk-from-env")

	resolver := dispatch.StoreResolver{Store: store, Box: box}
	t.Run("opens", func(t *testing.T) {
		c, err := resolver.Resolve(ctx, "acme", "store:openai-key")
		require.NoError(t, err)
		assert.Equal(t, secret, c.Reveal())
	})
	t.Run("other references as EnvFileResolver", func(t *testing.T) {
		c, err := resolver.Resolve(ctx, "acme", "env:FMGATE_DISPATCH_STORE_TEST_KEY")
		require.NoError(t, err)
		assert.Equal(t, "sk-from-env", c.Reveal())
		c, err = resolver.Resolve(ctx, "acme", "")
		require.NoError(t, err)
		assert.True(t, c.IsZero())
	})

	for name, tc := range map[string]struct {
		resolver dispatch.CredentialResolver
		org, ref string
		want     string
	}{
		"other organization's copy":   {resolver, "globex", "store:openai-key", "does not open"},
		"copied under another name":   {resolver, "acme", "store:renamed-key", "does not open"},
		"organization without it":     {resolver, "initech", "store:openai-key", "has no stored credential"},
		"unknown name":                {resolver, "acme", "store:missing", "has no stored credential"},
		"invalid name":                {resolver, "acme", "store:../x", "invalid store reference"},
		"empty name":                  {resolver, "acme", "store:", "invalid store reference"},
		"another master key":          {dispatch.StoreResolver{Store: store, Box: dispatchtest.NewBox(t)}, "acme", "store:openai-key", "does not open"},
		"no store configured":         {dispatch.StoreResolver{}, "acme", "store:openai-key", "not configured"},
		"env and file resolver only":  {dispatch.EnvFileResolver{}, "acme", "store:openai-key", "not configured"},
		"secret given as a reference": {resolver, "acme", secret, "unsupported reference"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := tc.resolver.Resolve(ctx, tc.org, tc.ref)
			require.ErrorIs(t, err, dispatch.ErrCredentialUnavailable)
			assert.Contains(t, err.Error(), tc.want)
			assert.NotContains(t, err.Error(), secret)
		})
	}
}

func TestSealCredential(t *testing.T) {
	ctx := t.Context()
	store := dispatchmem.New()
	box := dispatchtest.NewBox(t)
	_, err := dispatch.SealCredential(ctx, store, box, "acme", "k", dispatch.Credential{}, time.Now())
	assert.ErrorIs(t, err, dispatch.ErrInvalidCredential, "an empty value is refused")
	_, err = dispatch.SealCredential(ctx, store, box, "acme", "bad/name", dispatch.NewCredential("sk-x"), time.Now())
	require.ErrorIs(t, err, dispatch.ErrInvalidCredential)
	assert.NotContains(t, err.Error(), "sk-x")

	// A value sealed under an older master key is replaced by the current key's seal.
	old := dispatchtest.NewBox(t)
	changed, err := dispatch.SealCredential(ctx, store, old, "acme", "k", dispatch.NewCredential("sk-x"), time.Now())
	require.NoError(t, err)
	require.True(t, changed)
	changed, err = dispatch.SealCredential(ctx, store, box, "acme", "k", dispatch.NewCredential("sk-x"), time.Now())
	require.NoError(t, err)
	assert.True(t, changed, "the value is sealed again under the new key")
	c, err := dispatch.StoreResolver{Store: store, Box: box}.Resolve(ctx, "acme", "store:k")
	require.NoError(t, err)
	assert.Equal(t, "sk-x", c.Reveal())
}
