package e2e

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const helloBody = `{"model":"demo","messages":[{"role":"ROLE_USER","content":[{"text":"Hello, fmgate"}]}]}`

// The README's first command: `fmgate serve` with no configuration answers with the demo
// model, using the key it prints.
func TestEmbeddedDefaultPrintsAKeyThatWorks(t *testing.T) {
	httpAddr := freeAddr(t)
	p := start(t, "fmgate", bin.fmgate, []string{"FMGATE_DEMO_API_KEY="},
		"serve", "--http.addr="+httpAddr, "--grpc.addr="+freeAddr(t))
	waitHTTP(t, "http://"+httpAddr+"/readyz", p)
	key := strings.TrimSpace(waitLine(t, p, "fmg_"))
	require.True(t, strings.HasPrefix(key, "fmg_"), key)

	resp, body, err := postJSON(t.Context(), "http://"+httpAddr+"/api/v1/generate", key, helloBody)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	assert.Contains(t, string(body), "You said: Hello, fmgate")

	resp, _, err = postJSON(t.Context(), "http://"+httpAddr+"/api/v1/generate", key+"x", helloBody)
	require.NoError(t, err)
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
}

func TestEmbeddedDefaultTakesTheKeyFromTheEnvironment(t *testing.T) {
	const key = "my-own-demo-key-with-at-least-32-characters"
	httpAddr := freeAddr(t)
	p := start(t, "fmgate", bin.fmgate, []string{"FMGATE_DEMO_API_KEY=" + key},
		"serve", "--http.addr="+httpAddr, "--grpc.addr="+freeAddr(t))
	waitHTTP(t, "http://"+httpAddr+"/readyz", p)
	assert.NotContains(t, p.output(), key, "a key the operator chose is never printed or logged")

	resp, body, err := postJSON(t.Context(), "http://"+httpAddr+"/api/v1/generate", key, helloBody)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
}
