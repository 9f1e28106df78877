package credref

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestResolve(t *testing.T) {
	t.Setenv("CREDREF_TEST_KEY", "sk-env-secret")
	t.Setenv("CREDREF_TEST_EMPTY", "")
	dir := t.TempDir()
	file := filepath.Join(dir, "key")
	require.NoError(t, os.WriteFile(file, []byte("sk-file-secret\n"), 0o600))
	blank := filepath.Join(dir, "blank")
	require.NoError(t, os.WriteFile(blank, []byte(" \n"), 0o600))

	for ref, want := range map[string]string{"": "", "env:CREDREF_TEST_KEY": "sk-env-secret", "file:" + file: "sk-file-secret"} {
		got, err := Resolve(ref)
		require.NoError(t, err, ref)
		assert.Equal(t, want, got, ref)
	}
	for _, ref := range []string{"env:CREDREF_TEST_EMPTY", "env:CREDREF_TEST_MISSING", "env:", "file:" + blank, "file:" + filepath.Join(dir, "none"), "sk-raw-secret-pasted-as-a-ref"} {
		_, err := Resolve(ref)
		require.ErrorIs(t, err, ErrUnavailable, ref)
		assert.NotContains(t, err.Error(), "sk-", "an error never carries a secret")
	}
	_, err := Resolve("store:x")
	assert.ErrorIs(t, err, ErrUnsupported)
}
