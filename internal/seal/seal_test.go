package seal

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func newBox(t *testing.T) (*Box, []byte) {
	t.Helper()
	key := make([]byte, KeySize)
	_, _ = rand.Read(key)
	b, err := New(key)
	require.NoError(t, err)
	return b, key
}

func TestSealOpen(t *testing.T) {
	b, _ := newBox(t)
	secret := []byte("sk-live-0123456789")
	sealed, err := b.Seal(secret, []byte("acme/openai"))
	require.NoError(t, err)
	assert.False(t, bytes.Contains(sealed, secret), "the plaintext does not appear in the sealed value")
	again, err := b.Seal(secret, []byte("acme/openai"))
	require.NoError(t, err)
	assert.NotEqual(t, sealed, again, "each seal uses a fresh nonce")

	got, err := b.Open(sealed, []byte("acme/openai"))
	require.NoError(t, err)
	assert.Equal(t, secret, got)
}

func TestOpenRefuses(t *testing.T) {
	b, _ := newBox(t)
	other, _ := newBox(t)
	sealed, err := b.Seal([]byte("secret"), []byte("acme/openai"))
	require.NoError(t, err)
	tampered := bytes.Clone(sealed)
	tampered[len(tampered)-1] ^= 1
	for name, tc := range map[string]struct {
		box    *Box
		sealed []byte
		ad     string
	}{
		"other record": {b, sealed, "globex/openai"},
		"other key":    {other, sealed, "acme/openai"},
		"tampered":     {b, tampered, "acme/openai"},
		"truncated":    {b, sealed[:10], "acme/openai"},
		"empty":        {b, nil, "acme/openai"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := tc.box.Open(tc.sealed, []byte(tc.ad))
			assert.ErrorIs(t, err, ErrOpen)
		})
	}
}

func TestParseKey(t *testing.T) {
	key := make([]byte, KeySize)
	_, _ = rand.Read(key)
	for _, s := range []string{base64.StdEncoding.EncodeToString(key), base64.RawURLEncoding.EncodeToString(key)} {
		got, err := ParseKey(s)
		require.NoError(t, err)
		assert.Equal(t, key, got)
	}
	_, err := ParseKey("c2hvcnQ=")
	assert.Error(t, err)
	_, err = ParseKey("not base64 at all, and secret")
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "secret")
	_, err = New([]byte("short"))
	assert.Error(t, err)
}
