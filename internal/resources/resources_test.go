package resources

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParse(t *testing.T) {
	f, err := Parse([]byte(`
models:
  - organization: acme
    name: gpt
    lifecycle: approved
    endpoints: [e1]
    fallback_models: [small, tiny]
    license: {name: Llama 3.1 Community, url: "https://llama.example/license", version: "3.1", acceptance_required: true}
endpoints:
  - organization: acme
    id: e1
    provider: azure_openai
    weight: 3
    priority: 1
    api_version: 2024-10-21
    covered_by_baa: true
api_keys:
  - organization: acme
    id: k1
    secret_env: ACME_KEY
limits:
  - name: rpm
    organization: acme
    scope: api_key
    kind: requests
    amount: 10
    window: 1m
credentials:
  - organization: acme
    name: openai-key
    value_env: ACME_OPENAI_KEY
`))
	require.NoError(t, err)
	assert.Equal(t, []string{"e1"}, f.Models[0].Endpoints)
	assert.Equal(t, []string{"small", "tiny"}, f.Models[0].FallbackModels)
	assert.Equal(t, License{Name: "Llama 3.1 Community", URL: "https://llama.example/license", Version: "3.1", AcceptanceRequired: true},
		f.Models[0].License)
	assert.Equal(t, Endpoint{Organization: "acme", ID: "e1", Provider: "azure_openai", Weight: 3, Priority: 1,
		APIVersion: "2024-10-21", CoveredByBAA: true}, f.Endpoints[0])
	assert.Equal(t, "1m0s", f.Limits[0].Window.String())
	assert.Equal(t, []Credential{{Organization: "acme", Name: "openai-key", ValueEnv: "ACME_OPENAI_KEY"}}, f.Credentials)
}

func TestParseRejects(t *testing.T) {
	for name, doc := range map[string]string{
		"unknown field":      "models:\n  - organization: a\n    name: m\n    api_base: http://evil\n",
		"duplicate model":    "models:\n  - {organization: a, name: m}\n  - {organization: a, name: m}\n",
		"key without secret": "api_keys:\n  - {organization: a, id: k}\n",
		"bad hash":           "api_keys:\n  - {organization: a, id: k, sha256: abc}\n",
		// A credential's value has no place in the file, only the variable that holds it.
		"credential value":        "credentials:\n  - {organization: a, name: k, value: sk-secret}\n",
		"credential without env":  "credentials:\n  - {organization: a, name: k}\n",
		"credential without name": "credentials:\n  - {organization: a, value_env: K}\n",
		"duplicate credential":    "credentials:\n  - {organization: a, name: k, value_env: K}\n  - {organization: a, name: k, value_env: L}\n",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte(doc))
			require.Error(t, err)
			assert.NotContains(t, err.Error(), "sk-secret")
		})
	}
}

func TestEmptyAndDemo(t *testing.T) {
	f, err := Parse(nil)
	require.NoError(t, err)
	assert.Empty(t, f.Models)
	assert.NoError(t, Demo("http://127.0.0.1:1/v1", "FMGATE_DEMO_API_KEY").Validate())
}
