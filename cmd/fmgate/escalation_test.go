package main

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	gatewayv1 "github.com/fmgate/fmgate/gen/fmgate/gateway/v1"
	identityv1 "github.com/fmgate/fmgate/gen/fmgate/identity/v1"
	"github.com/fmgate/fmgate/internal/simulator"
)

const escalationResources = `
teams:
  - {organization: acme, id: red}
users:
  - {organization: acme, id: boss, team: red, roles: [org_admin]}
  - {organization: acme, id: rita, team: red, roles: [developer]}
service_accounts:
  - {organization: acme, id: bot, team: red, roles: [developer]}
models:
  - {organization: acme, name: demo, vendor: sim, lifecycle: approved, endpoints: [sim]}
endpoints:
  - {organization: acme, id: sim, provider: openai_compatible, base_url: "%s/v1", upstream_model: demo, region: local}
api_keys:
  - {organization: acme, id: rita-key, subject: "user:rita", kind: user, secret_env: FMGATE_T_RITA}
policies:
  - {organization: acme, id: allow-demo, effect: allow, subjects: ["*"], models: [demo]}
`

// A key carries its owner's roles: a developer who may create keys for its team must not
// be able to mint one for a teammate who is an organisation admin, and so become one.
func TestKeysCannotEscalate(t *testing.T) {
	sim := httptest.NewServer(simulator.New(simulator.Config{}))
	t.Cleanup(sim.Close)
	res := filepath.Join(t.TempDir(), "resources.yaml")
	require.NoError(t, os.WriteFile(res, []byte(fmt.Sprintf(escalationResources, sim.URL)), 0o600))
	const ritaKey = "fmg_t_rita_0123456789abcdefghijklmnopqrstuvw"
	t.Setenv("FMGATE_T_RITA", ritaKey)
	s := serveInProcess(t, res, io.Discard)
	ids := identityv1.NewIdentityServiceClient(s.grpc)
	rita := withKey(t.Context(), ritaKey)

	_, err := ids.CreateApiKey(rita, &identityv1.CreateApiKeyRequest{OwnerKind: identityv1.PrincipalKind_PRINCIPAL_KIND_USER, OwnerId: "boss"})
	require.Equal(t, codes.PermissionDenied, status.Code(err), "%v", err)
	assert.Contains(t, status.Convert(err).Message(), "identity.write", "the refusal names what the key would grant")

	// REST likewise.
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, s.http+"/api/v1/orgs/acme/apiKeys",
		strings.NewReader(`{"owner_kind":"PRINCIPAL_KIND_USER","owner_id":"boss"}`))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+ritaKey)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, http.StatusForbidden, resp.StatusCode, string(body))

	// Keys for herself and for a service account of her team with her own role are fine, and
	// work at the gateway.
	for _, owner := range []struct {
		kind identityv1.PrincipalKind
		id   string
	}{{identityv1.PrincipalKind_PRINCIPAL_KIND_USER, "rita"}, {identityv1.PrincipalKind_PRINCIPAL_KIND_SERVICE_ACCOUNT, "bot"}} {
		created, err := ids.CreateApiKey(rita, &identityv1.CreateApiKeyRequest{OwnerKind: owner.kind, OwnerId: owner.id})
		require.NoError(t, err, owner.id)
		_, err = gatewayv1.NewGatewayServiceClient(s.grpc).Generate(withKey(t.Context(), created.GetSecret()),
			&gatewayv1.GenerateRequest{Model: "demo", Messages: userMessage("hi")})
		assert.NoError(t, err, owner.id)
	}
}
