package resources

import (
	"testing"
	"time"

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

func TestParseEveryKindAndDeclaredKeys(t *testing.T) {
	f, err := Parse([]byte(`
organizations: [{id: acme, display_name: Acme}]
roles: [{organization: acme, id: r, scope: team, permissions: [keys.read]}]
teams: [{organization: acme, id: t, attributes: {jurisdiction: EU}}]
users: [{organization: acme, id: alice, team: t, roles: [r], disabled: true}]
service_accounts: [{organization: acme, id: bot}]
models:
  - organization: acme
    name: m
    input_modalities: [text, image]
    license: {name: EULA, version: "2"}
    data_handling: {retention_days: 0}
policies:
  - {organization: acme, id: p, effect: constrain, condition: "true", log_retention: 24h, allowed_endpoint_regions: [eu-*]}
license_acceptances: [{organization: acme, team: t, model: m, license_name: EULA, license_version: "2"}]
api_keys:
  - {organization: acme, id: k, kind: service_account, subject: "svc:bot", scopes: {models: [m], operations: [generate]}}
`))
	require.NoError(t, err)
	require.NotNil(t, f.Models[0].DataHandling.RetentionDays)
	assert.Zero(t, *f.Models[0].DataHandling.RetentionDays, "0 is kept apart from unset")
	assert.Equal(t, 24*time.Hour, *f.Policies[0].LogRetention)
	assert.True(t, f.APIKeys[0].Generated())
	assert.Equal(t, "bot", f.APIKeys[0].OwnerID())

	d := f.Declared("models", 0)
	for _, k := range []string{"name", "input_modalities", "license", "license.name", "license.version", "data_handling.retention_days"} {
		assert.True(t, d.Has(k), k)
	}
	for _, k := range []string{"display_name", "license.url", "lifecycle"} {
		assert.False(t, d.Has(k), k)
	}
	assert.True(t, f.Declared("users", 0).Has("disabled"))
	assert.False(t, f.Declared("users", 0).Has("email"))
	assert.True(t, f.Declared("models", 7).Has("anything"), "an entry the file was not parsed with declares every key")
}

// Keys an entry takes from a merge key or an alias are declared, as keys it spells out are:
// apply updates them like any other.
func TestDeclaredKeysThroughMergesAndAliases(t *testing.T) {
	f, err := Parse([]byte(`
models:
  - &base {organization: acme, name: a, vendor: sim, license: &lic {name: EULA, url: "https://example.com/eula"}}
  - <<: *base
    name: b
    license: {<<: *lic, version: "2"}
users:
  - &account {organization: acme, id: bot, team: t, roles: [r]}
service_accounts:
  - *account
`))
	require.NoError(t, err)
	require.Len(t, f.Models, 2)
	assert.Equal(t, "sim", f.Models[1].Vendor)
	assert.Equal(t, License{Name: "EULA", URL: "https://example.com/eula", Version: "2"}, f.Models[1].License)

	merged := f.Declared("models", 1)
	for _, k := range []string{"organization", "name", "vendor", "license", "license.name", "license.url", "license.version"} {
		assert.True(t, merged.Has(k), k)
	}
	for _, k := range []string{"<<", "license.<<", "display_name", "license.acceptance_required"} {
		assert.False(t, merged.Has(k), k)
	}
	aliased := f.Declared("service_accounts", 0)
	for _, k := range []string{"organization", "id", "team", "roles"} {
		assert.True(t, aliased.Has(k), k)
	}
	assert.False(t, aliased.Has("display_name"))
}

func TestValidateNamesEntryAndField(t *testing.T) {
	for doc, want := range map[string]string{
		"models:\n  - {organization: a, name: m}\n  - {organization: a, name: n, input_modalities: [text, txt]}\n": `models[1] (a/n): input_modalities[1]: "txt" is not one of text, image, audio, video, embedding`,
		"models:\n  - {organization: a, name: m, lifecycle: live}\n":                                               `models[0] (a/m): lifecycle: "live" is not one of proposed`,
		"endpoints:\n  - {organization: a, id: e, provider: openia}\n":                                             `endpoints[0] (a/e): provider: "openia" is not one of`,
		"policies:\n  - {organization: a, id: p}\n":                                                                `policies[0] (a/p): effect: is required`,
		"policies:\n  - {organization: a, id: p, effect: allow, log_retention: -1h}\n":                             `policies[0] (a/p): log_retention: must not be negative`,
		"roles:\n  - {organization: a, id: r, scope: everywhere, permissions: [x]}\n":                              `roles[0] (a/r): scope: "everywhere" is not one of organization, team`,
		"roles:\n  - {organization: a, id: r, scope: team}\n":                                                      `roles[0] (a/r): permissions: must name at least one permission`,
		"users:\n  - {organization: a}\n":                                                                          `users[0] (a): id: is required`,
		"license_acceptances:\n  - {organization: a, team: t, model: m, license_name: L}\n":                        `license_acceptances[0] (a/t/m): license_version: is required`,
		"api_keys:\n  - {organization: a, id: k, kind: user, subject: alice}\n":                                    `api_keys[0] (a/k): subject: a user key's subject is "user:" followed by its id`,
		"api_keys:\n  - {organization: a, id: k, kind: user, subject: user:a, team: t}\n":                          `api_keys[0] (a/k): team: a key without secret_env or sha256 acts with its owner's team`,
		"api_keys:\n  - {organization: a, id: k, secret_env: A, sha256: B}\n":                                      `api_keys[0] (a/k): secret_env: give secret_env or sha256, not both`,
		"api_keys:\n  - {organization: a, id: k, secret_env: A, scopes: {operations: [chat]}}\n":                   `api_keys[0] (a/k): scopes.operations[0]: "chat" is not one of generate, embed, list_models`,
		"teams:\n  - {organization: a, id: t}\n  - {organization: a, id: t}\n":                                     `teams[1] (a/t): team "a/t" appears twice`,
	} {
		_, err := Parse([]byte(doc))
		require.Error(t, err, doc)
		assert.Contains(t, err.Error(), want)
	}
}
