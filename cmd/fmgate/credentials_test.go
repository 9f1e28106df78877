package main

import (
	"crypto/rand"
	"encoding/base64"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	gatewayv1 "github.com/fmgate/fmgate/gen/fmgate/gateway/v1"
	"github.com/fmgate/fmgate/internal/simulator"
)

// Vendor credentials held sealed in dispatch's credential store: an endpoint names
// "store:openai-key", the resources seed its value from the environment, and the simulator
// answers only to that value.

const storedCredentialResources = `
models:
  - {organization: acme, name: m-stored, vendor: openai, lifecycle: approved, endpoints: [ep-stored]}
  - {organization: acme, name: m-unstored, vendor: openai, lifecycle: approved, endpoints: [ep-unstored]}
endpoints:
  - {organization: acme, id: ep-stored, provider: openai, base_url: "{SIM}/v1", upstream_model: up-stored, credential_ref: "store:openai-key"}
  - {organization: acme, id: ep-unstored, provider: openai, base_url: "{SIM}/v1", upstream_model: up-unstored, credential_ref: "store:never-seeded"}
credentials:
  - {organization: acme, name: openai-key, value_env: FMGATE_TEST_VENDOR_KEY}
  # Another tenant's credential of the same name: acme's endpoints must not get it.
  - {organization: globex, name: never-seeded, value_env: FMGATE_TEST_VENDOR_KEY}
api_keys:
  - {organization: acme, id: main, subject: "user:alice", kind: user, team: research, secret_env: FMGATE_TEST_MAIN_KEY}
policies:
  - {organization: acme, id: allow, effect: allow, subjects: ["*"], models: [m-stored, m-unstored], moderation_profile: default}
`

func newMasterKey(t *testing.T) string {
	t.Helper()
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	return base64.StdEncoding.EncodeToString(key)
}

func TestStoredCredential(t *testing.T) {
	masterKey := newMasterKey(t)
	t.Setenv("FMGATE_CREDENTIALS_MASTER_KEY", masterKey)
	var s *vendorStack
	// Registered before the stack, so it runs after the stack has stopped and written its
	// last line.
	t.Cleanup(func() {
		require.NotNil(t, s)
		logs := s.logs.String()
		assert.NotContains(t, logs, masterKey, "the master key reached the logs")
		assert.Contains(t, logs, `"credentials_master_key":"[REDACTED]"`, "the effective configuration says the key is set")
		assert.Contains(t, logs, `"msg":"credential seeded"`)
	})
	s = startVendorStack(t, storedCredentialResources, simulator.Config{})

	t.Run("the stored credential reaches the vendor", func(t *testing.T) {
		const prompt = "hello from the store"
		resp, err := s.client.Generate(withKey(t.Context(), mainKey), &gatewayv1.GenerateRequest{Model: "m-stored", Messages: userMessage(prompt)})
		require.NoError(t, err)
		require.Len(t, resp.GetMessage().GetContent(), 1)
		assert.Equal(t, answerOf("up-stored", prompt), resp.GetMessage().GetContent()[0].GetText())
		assert.Positive(t, s.sim.Stats().Requests, "the simulator, which requires the key, answered")
	})

	t.Run("another organisation's credential is not used", func(t *testing.T) {
		before := s.sim.Stats().Requests
		_, err := s.client.Generate(withKey(t.Context(), mainKey), &gatewayv1.GenerateRequest{Model: "m-unstored", Messages: userMessage("hi")})
		require.Error(t, err)
		st := status.Convert(err)
		assert.Equal(t, codes.FailedPrecondition, st.Code(), st.Message())
		assert.Contains(t, s.logs.String(), `has no stored credential`, "dispatch says why")
		for _, secret := range []string{vendorKey, masterKey} {
			assert.NotContains(t, st.Message(), secret)
		}
		assert.Equal(t, before, s.sim.Stats().Requests, "no call reached the vendor without a credential")
	})
}

func TestCredentialConfigErrors(t *testing.T) {
	res := filepath.Join(t.TempDir(), "resources.yaml")
	doc := strings.ReplaceAll(storedCredentialResources, "{SIM}", "http://127.0.0.1:1")
	require.NoError(t, os.WriteFile(res, []byte(doc), 0o600))
	t.Setenv("FMGATE_CREDENTIALS_MASTER_KEY", "")
	const badKey = "c2hvcnQtYnV0LXNlY3JldC1tYXN0ZXIta2V5"

	for name, tc := range map[string]struct {
		args []string
		want []string
	}{
		"no master key": {
			args: []string{"--resources=" + res},
			want: []string{
				"credential acme/openai-key needs --credentials.master-key",
				"credential globex/never-seeded needs --credentials.master-key",
				`endpoint acme/ep-stored: credential_ref "store:openai-key" needs --credentials.master-key`,
				`endpoint acme/ep-unstored: credential_ref "store:never-seeded" needs --credentials.master-key`,
			},
		},
		"malformed master key": {
			args: []string{"--resources=" + res, "--credentials.master-key=" + badKey, "--services=edge,bogus"},
			want: []string{"--credentials.master-key: master key must be 32 bytes in base64", `unknown service "bogus"`},
		},
	} {
		t.Run(name, func(t *testing.T) {
			var out strings.Builder
			args := append([]string{"serve", "--http.addr=127.0.0.1:0", "--grpc.addr=127.0.0.1:0"}, tc.args...)
			err := run(t.Context(), args, io.Discard, &out)
			require.Error(t, err)
			for _, want := range tc.want {
				assert.Contains(t, err.Error(), want)
			}
			assert.NotContains(t, err.Error()+out.String(), badKey)
		})
	}
}
