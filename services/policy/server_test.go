package policy_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	identityv1 "github.com/fmgate/fmgate/gen/fmgate/identity/v1"
	policyv1 "github.com/fmgate/fmgate/gen/fmgate/policy/v1"
	"github.com/fmgate/fmgate/internal/grpctest"
	"github.com/fmgate/fmgate/services/policy"
	"github.com/fmgate/fmgate/services/policy/policymem"
	"github.com/fmgate/fmgate/services/policy/policytest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// serve runs the policy service over store on a real grpc.Server on bufconn.
func serve(t *testing.T, store policy.Store) policyv1.PolicyServiceClient {
	t.Helper()
	return policyv1.NewPolicyServiceClient(grpctest.Serve(t, policy.NewServer(store, discard).Register))
}

func seeded(t *testing.T) *policymem.Store {
	t.Helper()
	s := policymem.New()
	for _, p := range enginePolicies() {
		_, err := s.PutPolicy(t.Context(), p)
		require.NoError(t, err)
	}
	return s
}

func evaluate(org, subject, team, model string, maxTokens int32, roles ...string) *policyv1.EvaluateRequest {
	return &policyv1.EvaluateRequest{
		Principal: &identityv1.Principal{OrganizationId: org, Subject: subject, TeamId: team, Roles: roles},
		Model:     model,
		Request:   &policyv1.RequestFacts{MessageCount: 2, MaxOutputTokens: maxTokens},
	}
}

func TestEvaluateRPC(t *testing.T) {
	store := seeded(t)
	client := serve(t, store)
	ctx := t.Context()
	version, err := store.Version(ctx, "org-a")
	require.NoError(t, err)

	resp, err := client.Evaluate(ctx, evaluate("org-a", "alice", "risk", "gpt-4o", 1000, "analyst"))
	require.NoError(t, err)
	assert.Equal(t, policyv1.Decision_DECISION_ALLOW, resp.GetDecision())
	assert.Equal(t, []string{"allow-analyst", "allow-risk"}, resp.GetPolicyIds())
	assert.Len(t, resp.GetReasons(), 2)
	assert.Equal(t, "strict", resp.GetObligations().GetModerationProfile())
	assert.Equal(t, int32(2048), resp.GetObligations().GetMaxOutputTokens())
	assert.Equal(t, version, resp.GetPolicyVersion())

	resp, err = client.Evaluate(ctx, evaluate("org-a", "alice", "risk", "gpt-4o", 4000, "analyst"))
	require.NoError(t, err, "a denial is an answer, not an error")
	assert.Equal(t, policyv1.Decision_DECISION_DENY, resp.GetDecision())
	assert.Equal(t, []string{"allow-analyst"}, resp.GetPolicyIds())
	assert.Contains(t, resp.GetReasons()[0], "max_output_tokens 4000 exceeds the limit of 2048")

	resp, err = client.Evaluate(ctx, evaluate("org-a", "mallory", "", "gpt-4o", 0))
	require.NoError(t, err)
	assert.Equal(t, policyv1.Decision_DECISION_DENY, resp.GetDecision())
	assert.Equal(t, []string{`no policy grants model "gpt-4o" to subject "mallory"`}, resp.GetReasons())
	assert.Empty(t, resp.GetPolicyIds())
}

func TestEvaluateSeesPolicyChanges(t *testing.T) {
	store := policymem.New()
	client := serve(t, store)
	ctx := t.Context()
	req := evaluate("org-a", "alice", "risk", "gpt-4o", 0)

	resp, err := client.Evaluate(ctx, req)
	require.NoError(t, err)
	assert.Equal(t, policyv1.Decision_DECISION_DENY, resp.GetDecision(), "deny by default")
	v0 := resp.GetPolicyVersion()

	_, err = store.PutPolicy(ctx, policytest.Allow("org-a", "grant", []string{"team:risk"}, []string{"gpt-*"}))
	require.NoError(t, err)
	resp, err = client.Evaluate(ctx, req)
	require.NoError(t, err)
	assert.Equal(t, policyv1.Decision_DECISION_ALLOW, resp.GetDecision(), "a new policy applies at once")
	v1 := resp.GetPolicyVersion()
	assert.NotEqual(t, v0, v1)

	// Another organization's change leaves this one's cached set and version alone.
	_, err = store.PutPolicy(ctx, policytest.Deny("org-b", "block", []string{"*"}, []string{"*"}))
	require.NoError(t, err)
	resp, err = client.Evaluate(ctx, req)
	require.NoError(t, err)
	assert.Equal(t, policyv1.Decision_DECISION_ALLOW, resp.GetDecision())
	assert.Equal(t, v1, resp.GetPolicyVersion())

	_, err = store.DeletePolicy(ctx, "org-a", "grant", "", "alice")
	require.NoError(t, err)
	resp, err = client.Evaluate(ctx, req)
	require.NoError(t, err)
	assert.Equal(t, policyv1.Decision_DECISION_DENY, resp.GetDecision(), "a deleted policy stops applying at once")
	assert.NotEqual(t, v1, resp.GetPolicyVersion())
}

func TestEvaluateInvalid(t *testing.T) {
	client := serve(t, policymem.New())
	tests := []struct {
		name   string
		req    *policyv1.EvaluateRequest
		fields []string
	}{
		{"empty", &policyv1.EvaluateRequest{}, []string{"principal.organization_id", "principal.subject", "model"}},
		{"no subject", evaluate("org-a", "", "", "gpt-4o", 0), []string{"principal.subject"}},
		{"no model", evaluate("org-a", "alice", "", "", 0), []string{"model"}},
		{"negative tokens", evaluate("org-a", "alice", "", "gpt-4o", -1), []string{"request.max_output_tokens"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := client.Evaluate(t.Context(), tt.req)
			require.Equal(t, codes.InvalidArgument, status.Code(err))
			assert.Equal(t, tt.fields, grpctest.BadRequestFields(err))
			assert.Contains(t, status.Convert(err).Message(), tt.fields[0])
		})
	}
}

// failingStore fails every read with err.
type failingStore struct {
	policy.Store
	err error
}

func (f failingStore) Version(context.Context, string) (string, error) { return "", f.err }

func TestEvaluateStoreErrors(t *testing.T) {
	client := serve(t, failingStore{Store: policymem.New(), err: context.DeadlineExceeded})
	_, err := client.Evaluate(t.Context(), evaluate("org-a", "alice", "", "gpt-4o", 0))
	assert.Equal(t, codes.DeadlineExceeded, status.Code(err))

	client = serve(t, failingStore{Store: policymem.New(), err: errors.New("db down")})
	_, err = client.Evaluate(t.Context(), evaluate("org-a", "alice", "", "gpt-4o", 0))
	assert.NotEqual(t, codes.OK, status.Code(err), "a store failure never reads as a decision")
}

func BenchmarkServerEvaluate(b *testing.B) {
	store := policymem.New()
	for _, p := range benchPolicies() {
		if _, err := store.PutPolicy(b.Context(), p); err != nil {
			b.Fatal(err)
		}
	}
	srv := policy.NewServer(store, discard)
	b.ReportAllocs()
	for b.Loop() {
		resp, err := srv.Evaluate(b.Context(), benchRequest)
		if err != nil || resp.GetDecision() != policyv1.Decision_DECISION_ALLOW {
			b.Fatal(err, resp.GetReasons())
		}
	}
}

// With a version check interval, an evaluation trusts its cached policies for that long: a
// change written to the store by another replica applies within the interval, and one made
// through this server at once.
func TestVersionCheckInterval(t *testing.T) {
	store := policymem.New()
	srv := policy.NewServer(store, discard)
	srv.SetVersionCheckInterval(200 * time.Millisecond)
	client := policyv1.NewPolicyServiceClient(grpctest.Serve(t, srv.Register))
	ctx := t.Context()
	req := evaluate("org-a", "alice", "risk", "gpt-4o", 0)
	decide := func() policyv1.Decision {
		t.Helper()
		resp, err := client.Evaluate(ctx, req)
		require.NoError(t, err)
		return resp.GetDecision()
	}
	require.Equal(t, policyv1.Decision_DECISION_DENY, decide())

	// Another replica's change: not yet, then within the interval.
	written := time.Now()
	_, err := store.PutPolicy(ctx, policytest.Allow("org-a", "grant", []string{"team:risk"}, []string{"gpt-*"}))
	require.NoError(t, err)
	assert.Equal(t, policyv1.Decision_DECISION_DENY, decide(), "the cached policies were confirmed current just now")
	require.Eventually(t, func() bool { return decide() == policyv1.Decision_DECISION_ALLOW }, 2*time.Second, 5*time.Millisecond)
	assert.Less(t, time.Since(written), time.Second)

	// This server's own change: at once.
	_, err = client.CreatePolicy(ctx, &policyv1.CreatePolicyRequest{OrganizationId: "org-a", UpdatedBy: "user:admin",
		Policy: policy.ToProto(policytest.Deny("org-a", "block", []string{"team:risk"}, []string{"gpt-4o"}))})
	require.NoError(t, err)
	assert.Equal(t, policyv1.Decision_DECISION_DENY, decide(), "a change through this server applies to the next evaluation")
}

// pausingStore holds the first ListPolicies after reading, until resume is closed.
type pausingStore struct {
	policy.Store
	listed, resume chan struct{}
	once           sync.Once
}

func (s *pausingStore) ListPolicies(ctx context.Context, org string) ([]policy.Policy, string, error) {
	ps, version, err := s.Store.ListPolicies(ctx, org)
	s.once.Do(func() { close(s.listed); <-s.resume })
	return ps, version, err
}

// A change made through this server while an evaluation was reading the policies it replaces
// applies to the next evaluation: the set read before it is not cached over it.
func TestChangeDuringEvaluationIsNotCachedOver(t *testing.T) {
	store := &pausingStore{Store: policymem.New(), listed: make(chan struct{}), resume: make(chan struct{})}
	srv := policy.NewServer(store, discard)
	srv.SetVersionCheckInterval(time.Hour)
	req := evaluate("org-a", "alice", "risk", "gpt-4o", 0)
	first := make(chan policyv1.Decision)
	go func() {
		resp, err := srv.Evaluate(context.Background(), req)
		assert.NoError(t, err)
		first <- resp.GetDecision()
	}()
	<-store.listed // the evaluation has read the policies: none yet
	_, err := srv.CreatePolicy(t.Context(), &policyv1.CreatePolicyRequest{OrganizationId: "org-a", UpdatedBy: "user:admin",
		Policy: policy.ToProto(policytest.Allow("org-a", "grant", []string{"team:risk"}, []string{"gpt-*"}))})
	require.NoError(t, err)
	close(store.resume)
	assert.Equal(t, policyv1.Decision_DECISION_DENY, <-first, "the evaluation under way decides on what it read")

	resp, err := srv.Evaluate(t.Context(), req)
	require.NoError(t, err)
	assert.Equal(t, policyv1.Decision_DECISION_ALLOW, resp.GetDecision(), "the change applies to the next evaluation")
}
