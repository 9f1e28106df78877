package main

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	gatewayv1 "github.com/fmgate/fmgate/gen/fmgate/gateway/v1"
	policyv1 "github.com/fmgate/fmgate/gen/fmgate/policy/v1"
	"github.com/fmgate/fmgate/internal/pg"
	"github.com/fmgate/fmgate/internal/simulator"
	"github.com/fmgate/fmgate/services/policy"
	"github.com/fmgate/fmgate/services/policy/policypg"
)

// hipaaResources: model "records" is served first by an endpoint without a business
// associate agreement (priority 0) and then by a covered one (priority 1), so that without
// the BAA fact every request would go to the uncovered one; model "intake" has only an
// uncovered endpoint. The main key's principal handles PHI (the HIPAA pack's default
// attribute), the limited key's does not. %[1]s and %[2]s are the uncovered and covered
// simulators.
const hipaaResources = `
models:
  - {organization: acme, name: records, vendor: sim, lifecycle: approved, endpoints: [plain, covered]}
  - {organization: acme, name: intake, vendor: sim, lifecycle: approved, endpoints: [plain]}
endpoints:
  - {organization: acme, id: plain, provider: openai_compatible, base_url: "%[1]s/v1", upstream_model: sim-model, region: us-east-1, priority: 0}
  - {organization: acme, id: covered, provider: openai_compatible, base_url: "%[2]s/v1", upstream_model: sim-model, region: us-east-1, priority: 1, covered_by_baa: true}
api_keys:
  - {organization: acme, id: main, subject: "user:carol", kind: user, team: clinical, attributes: {handles_phi: "true"}, secret_env: FMGATE_TEST_MAIN_KEY}
  - {organization: acme, id: limited, subject: "user:dave", kind: user, team: marketing, secret_env: FMGATE_TEST_LIMITED_KEY}
policies:
  - {organization: acme, id: allow-all, effect: allow, subjects: ["*"], models: ["*"], moderation_profile: default}
`

// countingSimulator is a provider simulator that counts the chat completions it answers.
func countingSimulator(t *testing.T) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	sim := simulator.New(simulator.Config{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/chat/completions") {
			n.Add(1)
		}
		sim.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

// The HIPAA pack, instantiated as an administrator would, makes the endpoint's BAA flag
// decide: a principal handling PHI reaches only the covered endpoints of a route, and is
// refused, with the reason, a model none of whose endpoints is covered; a principal not
// handling PHI is routed as before. The stack runs on Postgres, so the flag goes through
// the resources file, the registry's Postgres store, the route and the edge's endpoint facts
// to policy.
func TestHIPAAPackBAAEndpoints(t *testing.T) {
	dbURL := auditDatabase(t) // audit_generation_test.go: a fresh database
	require.NoError(t, run(t.Context(), []string{"migrate", "--postgres.url", dbURL}, io.Discard, io.Discard))
	pool, err := pg.Connect(t.Context(), dbURL)
	require.NoError(t, err)
	packs, err := policy.NewServer(policypg.New(pool, policypg.DefaultSchema), slog.New(slog.DiscardHandler)).
		InstantiatePack(t.Context(), &policyv1.InstantiatePackRequest{OrganizationId: "acme", Pack: "hipaa", UpdatedBy: "user:admin"})
	pool.Close()
	require.NoError(t, err)
	require.NotEmpty(t, packs.GetPolicies())

	plainSim, plainCalls := countingSimulator(t)
	coveredSim, coveredCalls := countingSimulator(t)
	res := filepath.Join(t.TempDir(), "resources.yaml")
	require.NoError(t, os.WriteFile(res, []byte(fmt.Sprintf(hipaaResources, plainSim.URL, coveredSim.URL)), 0o600))
	t.Setenv("FMGATE_TEST_MAIN_KEY", mainKey)
	t.Setenv("FMGATE_TEST_LIMITED_KEY", limitedKey)
	s := serveInProcess(t, res, &syncBuffer{}, "--postgres.url="+dbURL)
	client := s.client
	generate := func(key, model string) error {
		_, err := client.Generate(withKey(t.Context(), key), &gatewayv1.GenerateRequest{Model: model, Messages: userMessage("Summarise the chart.")})
		return err
	}

	t.Run("PHI goes only to covered endpoints", func(t *testing.T) {
		plain0, covered0 := plainCalls.Load(), coveredCalls.Load()
		for range 3 {
			require.NoError(t, generate(mainKey, "records"))
		}
		assert.Equal(t, plain0, plainCalls.Load(), "the uncovered endpoint, though first, got PHI")
		assert.Equal(t, covered0+3, coveredCalls.Load())
	})

	t.Run("PHI without a covered endpoint is refused with the reason", func(t *testing.T) {
		plain0 := plainCalls.Load()
		err := generate(mainKey, "intake")
		st := status.Convert(err)
		require.Equal(t, codes.PermissionDenied, st.Code(), "%v", err)
		assert.Contains(t, st.Message(), "model intake is not granted to user:carol")
		// The explanation names the pack's policy that refuses PHI without BAA coverage, and
		// says why in the policy's own words.
		assert.Contains(t, st.Message(), `policy "hipaa-deny-without-baa" denies model "intake" to subject "user:carol": `+
			`HIPAA pack v1: refuses principals handling PHI a model no BAA-covered endpoint serves`)
		var reason string
		for _, d := range st.Details() {
			if info, ok := d.(*errdetails.ErrorInfo); ok {
				reason = info.GetReason()
			}
		}
		assert.Equal(t, "MODEL_NOT_GRANTED", reason)

		// The OpenAI-compatible API refuses it the same way.
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, s.http+"/v1/chat/completions",
			strings.NewReader(`{"model":"intake","messages":[{"role":"user","content":"Summarise the chart."}]}`))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+mainKey)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Equal(t, http.StatusForbidden, resp.StatusCode, "%s", body)
		assert.Contains(t, string(body), `hipaa-deny-without-baa`)
		assert.Contains(t, string(body), `refuses principals handling PHI a model no BAA-covered endpoint serves`)
		assert.Equal(t, plain0, plainCalls.Load(), "a refused request never reaches a vendor")
	})

	t.Run("a principal not handling PHI is unaffected", func(t *testing.T) {
		plain0, covered0 := plainCalls.Load(), coveredCalls.Load()
		require.NoError(t, generate(limitedKey, "records"))
		require.NoError(t, generate(limitedKey, "intake"))
		assert.Equal(t, plain0+2, plainCalls.Load(), "routed by priority, to the uncovered endpoint first")
		assert.Equal(t, covered0, coveredCalls.Load())
	})
}
