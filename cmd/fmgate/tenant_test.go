package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	auditv1 "github.com/fmgate/fmgate/gen/fmgate/audit/v1"
	gatewayv1 "github.com/fmgate/fmgate/gen/fmgate/gateway/v1"
	identityv1 "github.com/fmgate/fmgate/gen/fmgate/identity/v1"
	policyv1 "github.com/fmgate/fmgate/gen/fmgate/policy/v1"
	registryv1 "github.com/fmgate/fmgate/gen/fmgate/registry/v1"
	"github.com/fmgate/fmgate/internal/simulator"
)

// Two organisations, acme and globex, each with its models, policies and keys; in acme two
// teams, red and blue, with a developer each. Keys are named after who holds them.
const tenantResources = `
models:
  - {organization: acme, name: acme-model, vendor: sim, lifecycle: approved, endpoints: [sim]}
  - {organization: globex, name: globex-model, vendor: sim, lifecycle: approved, endpoints: [sim]}
endpoints:
  - {organization: acme, id: sim, provider: openai_compatible, base_url: "%[1]s/v1", upstream_model: demo, region: local}
  - {organization: globex, id: sim, provider: openai_compatible, base_url: "%[1]s/v1", upstream_model: demo, region: local}
api_keys:
  - {organization: acme, id: acme-admin, subject: "user:ada", kind: user, roles: [org_admin], secret_env: FMGATE_T_ACME_ADMIN}
  - {organization: acme, id: acme-red-dev, subject: "user:rita", kind: user, team: red, roles: [developer], secret_env: FMGATE_T_ACME_RED}
  - {organization: acme, id: acme-blue-dev, subject: "user:bob", kind: user, team: blue, roles: [developer], secret_env: FMGATE_T_ACME_BLUE}
  - {organization: globex, id: globex-admin, subject: "user:gus", kind: user, roles: [org_admin], secret_env: FMGATE_T_GLOBEX_ADMIN}
policies:
  - {organization: acme, id: allow-acme, effect: allow, subjects: ["*"], models: [acme-model], moderation_profile: default}
  - {organization: globex, id: allow-globex, effect: allow, subjects: ["*"], models: [globex-model], moderation_profile: default}
`

var tenantKeys = map[string]string{
	"acme-admin":    "fmg_t_acme_admin_0123456789abcdefghijklmnopq",
	"acme-red-dev":  "fmg_t_acme_red_0123456789abcdefghijklmnopqrs",
	"acme-blue-dev": "fmg_t_acme_blue_0123456789abcdefghijklmnopqr",
	"globex-admin":  "fmg_t_globex_admin_0123456789abcdefghijklmno",
}

type tenantStack struct {
	http string
	conn *grpc.ClientConn
}

func startTenantStack(t *testing.T) *tenantStack {
	t.Helper()
	sim := httptest.NewServer(simulator.New(simulator.Config{}))
	t.Cleanup(sim.Close)
	res := filepath.Join(t.TempDir(), "resources.yaml")
	require.NoError(t, os.WriteFile(res, []byte(fmt.Sprintf(tenantResources, sim.URL)), 0o600))
	t.Setenv("FMGATE_T_ACME_ADMIN", tenantKeys["acme-admin"])
	t.Setenv("FMGATE_T_ACME_RED", tenantKeys["acme-red-dev"])
	t.Setenv("FMGATE_T_ACME_BLUE", tenantKeys["acme-blue-dev"])
	t.Setenv("FMGATE_T_GLOBEX_ADMIN", tenantKeys["globex-admin"])
	st := serveInProcess(t, res, io.Discard)
	return &tenantStack{http: st.http, conn: st.grpc}
}

// rest calls the admin REST API as holder and returns the status and body.
func (s *tenantStack) rest(t *testing.T, holder, method, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, s.http+path, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+tenantKeys[holder])
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

func as(t *testing.T, holder string) context.Context { return withKey(t.Context(), tenantKeys[holder]) }

// Tenant isolation: a principal of one organisation or team tries to read, list, change or
// use another's keys, models, policies and audit events, through gRPC and REST, and is
// refused every time; what it may see of its own is only its own.
func TestTenantIsolation(t *testing.T) {
	s := startTenantStack(t)
	reg := registryv1.NewRegistryServiceClient(s.conn)
	pol := policyv1.NewPolicyServiceClient(s.conn)
	ids := identityv1.NewIdentityServiceClient(s.conn)
	aud := auditv1.NewAuditServiceClient(s.conn)
	gw := gatewayv1.NewGatewayServiceClient(s.conn)

	// A change in acme, so that acme's audit trail holds an admin event.
	_, err := reg.UpdateModel(as(t, "acme-admin"), &registryv1.UpdateModelRequest{
		Model: &registryv1.Model{Name: "acme-model", DisplayName: "Acme's model"}, UpdateMask: fieldMask("display_name"),
	})
	require.NoError(t, err)

	t.Run("another organisation over gRPC", func(t *testing.T) {
		ctx := as(t, "globex-admin")
		refused := func(what string, err error) {
			t.Helper()
			assert.Equal(t, codes.PermissionDenied, status.Code(err), "%s: %v", what, err)
		}
		_, err := reg.GetModel(ctx, &registryv1.GetModelRequest{OrganizationId: "acme", Name: "acme-model"})
		refused("read a model", err)
		_, err = reg.ListCatalogModels(ctx, &registryv1.ListCatalogModelsRequest{OrganizationId: "acme"})
		refused("list models", err)
		_, err = reg.UpdateModel(ctx, &registryv1.UpdateModelRequest{Model: &registryv1.Model{OrganizationId: "acme", Name: "acme-model", DisplayName: "pwned"}, UpdateMask: fieldMask("display_name")})
		refused("change a model", err)
		_, err = reg.TransitionModel(ctx, &registryv1.TransitionModelRequest{OrganizationId: "acme", Name: "acme-model", ToState: registryv1.LifecycleState_LIFECYCLE_STATE_DEPRECATED, EvidenceNote: "x"})
		refused("transition a model", err)
		_, err = pol.GetPolicy(ctx, &policyv1.GetPolicyRequest{OrganizationId: "acme", Id: "allow-acme"})
		refused("read a policy", err)
		_, err = pol.ListPolicies(ctx, &policyv1.ListPoliciesRequest{OrganizationId: "acme"})
		refused("list policies", err)
		_, err = pol.DeletePolicy(ctx, &policyv1.DeletePolicyRequest{OrganizationId: "acme", Id: "allow-acme"})
		refused("delete a policy", err)
		_, err = ids.ListApiKeys(ctx, &identityv1.ListApiKeysRequest{OrganizationId: "acme"})
		refused("list keys", err)
		_, err = ids.GetApiKey(ctx, &identityv1.GetApiKeyRequest{OrganizationId: "acme", ApiKeyId: "acme-admin"})
		refused("read a key", err)
		_, err = ids.RevokeApiKey(ctx, &identityv1.RevokeApiKeyRequest{OrganizationId: "acme", ApiKeyId: "acme-admin"})
		refused("revoke a key", err)
		_, err = aud.ListAuditEvents(ctx, &auditv1.ListAuditEventsRequest{OrganizationId: "acme"})
		refused("read the audit trail", err)
		_, err = aud.VerifyAuditChain(ctx, &auditv1.VerifyAuditChainRequest{OrganizationId: "acme", Service: "registry"})
		refused("verify the audit trail", err)
		// Use: acme's model does not exist for globex.
		_, err = gw.Generate(ctx, &gatewayv1.GenerateRequest{Model: "acme-model", Messages: userMessage("hi")})
		assert.Equal(t, codes.NotFound, status.Code(err), "use a model: %v", err)
	})

	t.Run("another organisation over REST", func(t *testing.T) {
		for _, c := range []struct{ method, path, body string }{
			{"GET", "/api/v1/orgs/acme/models/acme-model", ""},
			{"GET", "/api/v1/orgs/acme/models", ""},
			{"PATCH", "/api/v1/orgs/acme/models/acme-model", `{"display_name":"pwned"}`},
			{"POST", "/api/v1/orgs/acme/models/acme-model:transition", `{"to_state":"LIFECYCLE_STATE_RETIRED","evidence_note":"x"}`},
			{"GET", "/api/v1/orgs/acme/policies/allow-acme", ""},
			{"GET", "/api/v1/orgs/acme/policies", ""},
			{"DELETE", "/api/v1/orgs/acme/policies/allow-acme", ""},
			{"GET", "/api/v1/orgs/acme/apiKeys", ""},
			{"GET", "/api/v1/orgs/acme/apiKeys/acme-admin", ""},
			{"POST", "/api/v1/orgs/acme/apiKeys/acme-admin:revoke", `{}`},
			{"GET", "/api/v1/orgs/acme/auditEvents", ""},
		} {
			code, body := s.rest(t, "globex-admin", c.method, c.path, c.body)
			assert.Equal(t, http.StatusForbidden, code, "%s %s: %s", c.method, c.path, body)
		}
		code, body := s.rest(t, "globex-admin", "POST", "/v1/chat/completions", `{"model":"acme-model","messages":[{"role":"user","content":"hi"}]}`)
		assert.Equal(t, http.StatusNotFound, code, "use acme's model: %s", body)
	})

	t.Run("own organisation only", func(t *testing.T) {
		// With the organisation left empty, a caller sees its own and nothing else.
		keys, err := ids.ListApiKeys(as(t, "globex-admin"), &identityv1.ListApiKeysRequest{})
		require.NoError(t, err)
		require.Len(t, keys.GetApiKeys(), 1)
		assert.Equal(t, "globex-admin", keys.GetApiKeys()[0].GetApiKeyId())
		// REST changes with a field mask taken from the body, and an etag.
		code, body := s.rest(t, "globex-admin", "PATCH", "/api/v1/orgs/globex/models/globex-model", `{"context_window":4096}`)
		require.Equal(t, http.StatusOK, code, body)
		assert.Contains(t, body, `"context_window":4096`)
		code, body = s.rest(t, "globex-admin", "PATCH", "/api/v1/orgs/globex/models/globex-model", `{"context_window":8192,"etag":"stale"}`)
		assert.Equal(t, http.StatusConflict, code, "a stale etag: %s", body)
		code, body = s.rest(t, "globex-admin", "GET", "/api/v1/orgs/globex/models", "")
		require.Equal(t, http.StatusOK, code, body)
		assert.Contains(t, body, "globex-model")
		assert.NotContains(t, body, "acme-model")
		// acme's admin sees its change, with before and after, once the recorder (which
		// writes off the request path) has written it.
		var events *auditv1.ListAuditEventsResponse
		require.Eventually(t, func() bool {
			events, err = aud.ListAuditEvents(as(t, "acme-admin"), &auditv1.ListAuditEventsRequest{Action: "model.update"})
			return err == nil && len(events.GetAuditEvents()) > 0
		}, wait, tick, "%v", err)
		require.Len(t, events.GetAuditEvents(), 1)
		e := events.GetAuditEvents()[0]
		assert.Equal(t, "user:ada", e.GetActorSubject())
		assert.Equal(t, "registry", e.GetService())
		assert.Equal(t, "Acme's model", e.GetAfter().GetFields()["display_name"].GetStringValue())
		assert.NotEqual(t, "Acme's model", e.GetBefore().GetFields()["display_name"].GetStringValue())

		// globex's trail holds only globex's events. Checked once globex's own change above
		// is written, so that the trail is not empty, and acme's change, made first, has been
		// written too: else the check passes on a trail not yet written.
		require.Eventually(t, func() bool {
			events, err = aud.ListAuditEvents(as(t, "globex-admin"), &auditv1.ListAuditEventsRequest{PageSize: 1000})
			return err == nil && slices.ContainsFunc(events.GetAuditEvents(), func(e *auditv1.AuditEvent) bool {
				return e.GetAction() == "model.update" && e.GetResourceId() == "globex-model"
			})
		}, wait, tick, "globex's change is in globex's trail: %v", err)
		require.NotEmpty(t, events.GetAuditEvents())
		for _, e := range events.GetAuditEvents() {
			assert.Equal(t, "globex", e.GetOrganizationId())
			if e.GetAction() != "access.denied" { // globex's own refused attempts on acme's model are globex's
				assert.NotEqual(t, "acme-model", e.GetResourceId(), "acme's change is in acme's trail only")
			}
		}
	})

	t.Run("another team", func(t *testing.T) {
		red := as(t, "acme-red-dev")
		// A developer lists its team's keys only.
		keys, err := ids.ListApiKeys(red, &identityv1.ListApiKeysRequest{})
		require.NoError(t, err)
		require.Len(t, keys.GetApiKeys(), 1)
		assert.Equal(t, "acme-red-dev", keys.GetApiKeys()[0].GetApiKeyId())
		_, err = ids.ListApiKeys(red, &identityv1.ListApiKeysRequest{TeamId: "blue"})
		assert.Equal(t, codes.PermissionDenied, status.Code(err), "list another team's keys: %v", err)
		_, err = ids.GetApiKey(red, &identityv1.GetApiKeyRequest{ApiKeyId: "acme-blue-dev"})
		assert.Equal(t, codes.NotFound, status.Code(err), "read another team's key: %v", err)
		_, err = ids.RevokeApiKey(red, &identityv1.RevokeApiKeyRequest{ApiKeyId: "acme-blue-dev"})
		assert.Equal(t, codes.NotFound, status.Code(err), "revoke another team's key: %v", err)
		_, err = ids.RevokeApiKey(red, &identityv1.RevokeApiKeyRequest{ApiKeyId: "acme-blue-dev", TeamId: "blue"})
		assert.Equal(t, codes.PermissionDenied, status.Code(err), "revoke naming another team: %v", err)
		// Organisation-wide resources: readable, not changeable; the trail is not readable.
		_, err = reg.GetModel(red, &registryv1.GetModelRequest{Name: "acme-model"})
		assert.NoError(t, err)
		_, err = reg.UpdateModel(red, &registryv1.UpdateModelRequest{Model: &registryv1.Model{Name: "acme-model", DisplayName: "red's"}, UpdateMask: fieldMask("display_name")})
		assert.Equal(t, codes.PermissionDenied, status.Code(err), "change a model: %v", err)
		_, err = pol.DeletePolicy(red, &policyv1.DeletePolicyRequest{Id: "allow-acme"})
		assert.Equal(t, codes.PermissionDenied, status.Code(err), "delete a policy: %v", err)
		_, err = aud.ListAuditEvents(red, &auditv1.ListAuditEventsRequest{})
		assert.Equal(t, codes.PermissionDenied, status.Code(err), "read the audit trail: %v", err)

		for _, c := range []struct {
			method, path, body string
			want               int
		}{
			{"GET", "/api/v1/orgs/acme/apiKeys?team_id=blue", "", http.StatusForbidden},
			{"GET", "/api/v1/orgs/acme/apiKeys/acme-blue-dev", "", http.StatusNotFound},
			{"POST", "/api/v1/orgs/acme/apiKeys/acme-blue-dev:revoke", `{}`, http.StatusNotFound},
			{"PATCH", "/api/v1/orgs/acme/models/acme-model", `{"display_name":"red's"}`, http.StatusForbidden},
			{"DELETE", "/api/v1/orgs/acme/policies/allow-acme", "", http.StatusForbidden},
			{"GET", "/api/v1/orgs/acme/auditEvents", "", http.StatusForbidden},
		} {
			code, body := s.rest(t, "acme-red-dev", c.method, c.path, c.body)
			assert.Equal(t, c.want, code, "%s %s: %s", c.method, c.path, body)
		}
		code, body := s.rest(t, "acme-red-dev", "GET", "/api/v1/orgs/acme/apiKeys", "")
		require.Equal(t, http.StatusOK, code, body)
		assert.Contains(t, body, "acme-red-dev")
		assert.NotContains(t, body, "acme-blue-dev")

		// Blue's key still works: nothing red tried reached it.
		_, err = gw.Generate(as(t, "acme-blue-dev"), &gatewayv1.GenerateRequest{Model: "acme-model", Messages: userMessage("hi")})
		assert.NoError(t, err)
	})

	t.Run("hosting requests", func(t *testing.T) {
		ask := func(holder string) *registryv1.HostingRequest {
			t.Helper()
			resp, err := reg.CreateHostingRequest(as(t, holder), &registryv1.CreateHostingRequestRequest{HostingRequest: &registryv1.HostingRequest{
				Model: "acme-model", RequestsPerMinute: 60, Region: "eu-west-1", Justification: "steady load",
			}})
			require.NoError(t, err)
			return resp.GetAfter()
		}
		redReq, blueReq := ask("acme-red-dev"), ask("acme-blue-dev")
		assert.Equal(t, "red", redReq.GetTeamId(), "the admin layer confined the request to the caller's team")
		assert.Equal(t, "user:rita", redReq.GetRequester(), "the requester is the caller")
		// Claiming another team, or another requester, is refused.
		_, err := reg.CreateHostingRequest(as(t, "acme-red-dev"), &registryv1.CreateHostingRequestRequest{HostingRequest: &registryv1.HostingRequest{
			TeamId: "blue", Model: "acme-model", RequestsPerMinute: 60, Region: "eu-west-1", Justification: "x"}})
		assert.Equal(t, codes.PermissionDenied, status.Code(err), "ask for another team: %v", err)
		_, err = reg.CreateHostingRequest(as(t, "acme-red-dev"), &registryv1.CreateHostingRequestRequest{HostingRequest: &registryv1.HostingRequest{
			Requester: "user:bob", Model: "acme-model", RequestsPerMinute: 60, Region: "eu-west-1", Justification: "x"}})
		assert.Equal(t, codes.PermissionDenied, status.Code(err), "ask as someone else: %v", err)

		red := as(t, "acme-red-dev")
		list, err := reg.ListHostingRequests(red, &registryv1.ListHostingRequestsRequest{})
		require.NoError(t, err)
		require.Len(t, list.GetHostingRequests(), 1)
		assert.Equal(t, redReq.GetId(), list.GetHostingRequests()[0].GetId())
		_, err = reg.GetHostingRequest(red, &registryv1.GetHostingRequestRequest{Id: blueReq.GetId()})
		assert.Equal(t, codes.NotFound, status.Code(err), "read another team's request: %v", err)
		_, err = reg.ApproveHostingRequest(red, &registryv1.ApproveHostingRequestRequest{Id: redReq.GetId()})
		assert.Equal(t, codes.PermissionDenied, status.Code(err), "decide one's own request: %v", err)
		_, err = reg.GetHostingRequest(as(t, "globex-admin"), &registryv1.GetHostingRequestRequest{OrganizationId: "acme", Id: redReq.GetId()})
		assert.Equal(t, codes.PermissionDenied, status.Code(err), "another organisation reads it: %v", err)
		_, err = reg.ApproveHostingRequest(as(t, "globex-admin"), &registryv1.ApproveHostingRequestRequest{OrganizationId: "acme", Id: redReq.GetId()})
		assert.Equal(t, codes.PermissionDenied, status.Code(err), "another organisation decides it: %v", err)

		for _, c := range []struct {
			holder, method, path, body string
			want                       int
		}{
			{"acme-red-dev", "GET", "/api/v1/orgs/acme/hostingRequests/" + blueReq.GetId(), "", http.StatusNotFound},
			{"acme-red-dev", "GET", "/api/v1/orgs/acme/hostingRequests?team_id=blue", "", http.StatusForbidden},
			{"acme-red-dev", "POST", "/api/v1/orgs/acme/hostingRequests/" + blueReq.GetId() + ":reject", `{"note":"no"}`, http.StatusForbidden},
			{"globex-admin", "GET", "/api/v1/orgs/acme/hostingRequests", "", http.StatusForbidden},
			{"globex-admin", "POST", "/api/v1/orgs/acme/hostingRequests/" + redReq.GetId() + ":approve", `{}`, http.StatusForbidden},
		} {
			code, body := s.rest(t, c.holder, c.method, c.path, c.body)
			assert.Equal(t, c.want, code, "%s: %s %s: %s", c.holder, c.method, c.path, body)
		}
		// The organisation's admin sees both and decides.
		list, err = reg.ListHostingRequests(as(t, "acme-admin"), &registryv1.ListHostingRequestsRequest{})
		require.NoError(t, err)
		assert.Len(t, list.GetHostingRequests(), 2)
		code, body := s.rest(t, "acme-admin", "POST", "/api/v1/orgs/acme/hostingRequests/"+redReq.GetId()+":approve", `{"note":"ok"}`)
		require.Equal(t, http.StatusOK, code, body)
		assert.Contains(t, body, `"decided_by":"user:ada"`)
	})

	t.Run("refusals are audited", func(t *testing.T) {
		var events *auditv1.ListAuditEventsResponse
		require.Eventually(t, func() bool {
			var err error
			events, err = aud.ListAuditEvents(as(t, "globex-admin"), &auditv1.ListAuditEventsRequest{Action: "access.denied"})
			return err == nil && len(events.GetAuditEvents()) >= 12
		}, wait, tick, "globex's refused attempts are in globex's trail")
		for _, e := range events.GetAuditEvents() {
			assert.Equal(t, "user:gus", e.GetActorSubject())
		}
	})
}
