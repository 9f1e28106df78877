package main

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	gatewayv1 "github.com/fmgate/fmgate/gen/fmgate/gateway/v1"
	"github.com/fmgate/fmgate/internal/simulator"
)

// licenseResources: model "llama" requires acceptance of its licence, which no team has
// accepted; model "demo" has no licence terms. Both are granted to everyone.
const licenseResources = `
models:
  - organization: acme
    name: llama
    vendor: sim
    lifecycle: approved
    endpoints: [sim]
    license: {name: "Llama 3.1 Community", url: "https://llama.example/license", version: "3.1", acceptance_required: true}
  - {organization: acme, name: demo, vendor: sim, lifecycle: approved, endpoints: [sim]}
endpoints:
  - {organization: acme, id: sim, provider: openai_compatible, base_url: "{SIM}/v1", upstream_model: demo, credential_ref: "env:FMGATE_TEST_VENDOR_KEY", region: local}
api_keys:
  - {organization: acme, id: main, subject: "user:alice", kind: user, team: research, secret_env: FMGATE_TEST_MAIN_KEY}
policies:
  - {organization: acme, id: allow-all, effect: allow, subjects: ["*"], models: ["*"], moderation_profile: default}
`

// licenseMessageParts are what a refusal of "llama" to team research must say.
var licenseMessageParts = []string{`model "llama"`, `licence "Llama 3.1 Community" version "3.1"`,
	`team "research" has not accepted`, "fmgate licenses accept", "eula.accept"}

// A model whose licence requires acceptance is refused to a team that has not accepted it,
// with a message saying which model, licence, version and team and how to accept, on the
// native API (gRPC and REST) and through the official OpenAI SDK; the same key uses a model
// without licence terms as before.
func TestLicenseNotAcceptedRefused(t *testing.T) {
	s := startVendorStack(t, licenseResources, simulator.Config{})
	msgs := userMessage("hi")

	_, err := s.client.Generate(withKey(t.Context(), mainKey), &gatewayv1.GenerateRequest{Model: "demo", Messages: msgs})
	require.NoError(t, err, "a model without licence terms is served")

	t.Run("gRPC", func(t *testing.T) {
		_, err := s.client.Generate(withKey(t.Context(), mainKey), &gatewayv1.GenerateRequest{Model: "llama", Messages: msgs})
		st := status.Convert(err)
		require.Equal(t, codes.FailedPrecondition, st.Code(), "%v", err)
		for _, want := range licenseMessageParts {
			assert.Contains(t, st.Message(), want)
		}
		var info *errdetails.ErrorInfo
		for _, d := range st.Details() {
			if i, ok := d.(*errdetails.ErrorInfo); ok {
				info = i
			}
		}
		require.NotNil(t, info)
		assert.Equal(t, "LICENSE_NOT_ACCEPTED", info.GetReason())
		assert.Equal(t, "3.1", info.GetMetadata()["license_version"])
	})

	t.Run("REST", func(t *testing.T) {
		resp, body := postRaw(t, t.Context(), s.http+"/api/v1/generate",
			`{"model":"llama","messages":[{"role":"ROLE_USER","content":[{"text":"hi"}]}]}`, nil)
		assert.Equal(t, http.StatusForbidden, resp.StatusCode, "a licence refusal is 403 on the native REST API too: %s", body)
		var st struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
			Details []struct {
				Type   string `json:"@type"`
				Reason string `json:"reason"`
			} `json:"details"`
		}
		require.NoError(t, json.Unmarshal(body, &st), "%s", body)
		assert.Equal(t, int(codes.FailedPrecondition), st.Code)
		for _, want := range licenseMessageParts {
			assert.Contains(t, st.Message, want)
		}
		require.NotEmpty(t, st.Details, "%s", body)
		assert.Equal(t, "LICENSE_NOT_ACCEPTED", st.Details[0].Reason)
	})

	t.Run("OpenAI SDK", func(t *testing.T) {
		c := sdkClient(s.http, mainKey)
		_, err := c.Chat.Completions.New(t.Context(), openai.ChatCompletionNewParams{
			Model: "llama", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
		})
		e := assertAPIError(t, err, http.StatusForbidden, "")
		assert.Equal(t, "license_not_accepted", e.Code)
		for _, want := range licenseMessageParts {
			assert.Contains(t, e.Message, want)
		}
		_, err = c.Embeddings.New(t.Context(), openai.EmbeddingNewParams{
			Model: "llama", Input: openai.EmbeddingNewParamsInputUnion{OfString: openai.String("hi")},
		})
		e = assertAPIError(t, err, http.StatusForbidden, "")
		assert.Equal(t, "license_not_accepted", e.Code)
	})
}
