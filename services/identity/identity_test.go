package identity_test

import (
	"encoding/base64"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fmgate/fmgate/services/identity"
	"github.com/fmgate/fmgate/services/identity/identitytest"
)

func TestNewKey(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		secret, err := identity.NewKey()
		require.NoError(t, err)
		require.True(t, strings.HasPrefix(secret, "fmg_"))
		raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(secret, "fmg_"))
		require.NoError(t, err)
		assert.Len(t, raw, 32, "256 bits")
		assert.Len(t, secret, 47)
		assert.NoError(t, identity.ValidateSecret(secret))
		assert.False(t, seen[secret])
		seen[secret] = true
	}
}

func TestHashKey(t *testing.T) {
	h := identity.HashKey("abc")
	assert.Equal(t, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", hex.EncodeToString(h[:]))
}

func TestPrefix(t *testing.T) {
	assert.Equal(t, "fmg_abcdefgh", identity.Prefix("fmg_abcdefghijklmnopqrstuvwxyz0123456789"))
	assert.Equal(t, "short", identity.Prefix("short"))
}

func TestValidateSecret(t *testing.T) {
	tests := []struct {
		name   string
		secret string
		ok     bool
	}{
		{"generated shape", "fmg_" + strings.Repeat("A", 43), true},
		{"operator demo key", "demo-key-please-change-me-0123456789", true},
		{"exactly 32", strings.Repeat("x", 32), true},
		{"31 characters", strings.Repeat("x", 31), false},
		{"empty", "", false},
		{"space inside", strings.Repeat("x", 20) + " " + strings.Repeat("x", 20), false},
		{"tab", strings.Repeat("x", 32) + "\t", false},
		{"newline", strings.Repeat("x", 32) + "\n", false},
		{"non-ASCII", strings.Repeat("x", 32) + "é", false},
		{"control", strings.Repeat("x", 32) + "\x7f", false},
		{"too long", strings.Repeat("x", 1025), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := identity.ValidateSecret(tt.secret)
			if tt.ok {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			if tt.secret != "" {
				assert.NotContains(t, err.Error(), tt.secret)
			}
		})
	}
}

func TestAPIKeyValidate(t *testing.T) {
	k, _ := identitytest.NewKey(t, "org-a", "key-1", time.Now())
	require.NoError(t, k.Validate())

	bad := k
	bad.ID, bad.Kind, bad.Prefix, bad.CreateTime = "", "robot", "", time.Time{}
	err := bad.Validate()
	var ve *identity.ValidationError
	require.ErrorAs(t, err, &ve)
	for _, field := range []string{"id", "kind", "prefix", "create_time"} {
		assert.ErrorContains(t, err, field+":")
	}
}
