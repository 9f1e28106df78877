package quota_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	quotav1 "github.com/fmgate/fmgate/gen/fmgate/quota/v1"
	typev1 "github.com/fmgate/fmgate/gen/fmgate/type/v1"
	"github.com/fmgate/fmgate/internal/apierr"
	"github.com/fmgate/fmgate/internal/grpctest"
	"github.com/fmgate/fmgate/services/quota"
	"github.com/fmgate/fmgate/services/quota/quotamem"
	"github.com/fmgate/fmgate/services/quota/quotatest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// nopLimiter admits everything.
type nopLimiter struct{}

func (nopLimiter) Reserve(_ context.Context, _ string, cs []quota.Counter) (quota.Decision, error) {
	return quota.Decision{Admitted: true, Counters: make([]quota.CounterState, len(cs))}, nil
}
func (nopLimiter) Commit(context.Context, string, []quota.Counter, int64) error { return nil }

// downLimiter fails like a Redis that cannot be reached.
type downLimiter struct{}

var errDown = errors.New("dial tcp 10.0.0.1:6379: connect: connection refused")

func (downLimiter) Reserve(context.Context, string, []quota.Counter) (quota.Decision, error) {
	return quota.Decision{}, errDown
}
func (downLimiter) Commit(context.Context, string, []quota.Counter, int64) error { return errDown }

// startServer serves a quota.Server over bufconn and returns a generated client.
func startServer(t *testing.T, limiter quota.Limiter, limits []quota.Limit, log *slog.Logger) quotav1.QuotaServiceClient {
	t.Helper()
	srv, err := quota.NewServer(limiter, limits, log)
	require.NoError(t, err)
	return quotav1.NewQuotaServiceClient(grpctest.Serve(t, srv.Register))
}

func memLimiter() (*quotatest.Clock, quota.Limiter) {
	clock := quotatest.NewClock(quotatest.Start)
	return clock, quotamem.New(quotamem.Config{Clock: clock.Now})
}

func reserveReq(org, subject, model string) *quotav1.ReserveRequest {
	return &quotav1.ReserveRequest{Subject: &quotav1.Subject{OrganizationId: org, Subject: subject}, Model: model}
}

func TestReserveRefusalCarriesRetryInfoAndQuotaFailure(t *testing.T) {
	clock, limiter := memLimiter()
	client := startServer(t, limiter, []quota.Limit{{
		Name: "acme-rpm", Match: quota.Match{OrganizationID: "acme"}, Scope: quota.Scope{By: quota.BySubject},
		Kind: quota.KindRequests, Amount: 2, Window: time.Minute,
	}}, nil)
	ctx := t.Context()

	for want := int64(1); want >= 0; want-- {
		resp, err := client.Reserve(ctx, reserveReq("acme", "alice", "gpt"))
		require.NoError(t, err)
		require.Len(t, resp.GetLimits(), 1)
		st := resp.GetLimits()[0]
		assert.Equal(t, "acme-rpm", st.GetName())
		assert.Equal(t, int64(2), st.GetLimit())
		assert.Equal(t, want, st.GetRemaining())
		assert.Positive(t, st.GetResetAfter().AsDuration())
	}

	_, err := client.Reserve(ctx, reserveReq("acme", "alice", "gpt"))
	st := status.Convert(err)
	require.Equal(t, codes.ResourceExhausted, st.Code(), err)
	assert.Contains(t, st.Message(), "acme-rpm")
	var retry *errdetails.RetryInfo
	var failure *errdetails.QuotaFailure
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.RetryInfo:
			retry = d
		case *errdetails.QuotaFailure:
			failure = d
		}
	}
	require.NotNil(t, retry)
	require.NotNil(t, failure)
	assert.Equal(t, 30*time.Second, retry.GetRetryDelay().AsDuration(), "one of 2 per minute frees in 30s")
	require.Len(t, failure.GetViolations(), 1)
	assert.Equal(t, "acme-rpm", failure.GetViolations()[0].GetSubject())

	// Per subject: bob has his own counter.
	_, err = client.Reserve(ctx, reserveReq("acme", "bob", "gpt"))
	require.NoError(t, err)

	clock.Advance(30 * time.Second)
	_, err = client.Reserve(ctx, reserveReq("acme", "alice", "gpt"))
	require.NoError(t, err, "retrying after RetryInfo succeeds")
}

func TestReserveNamesTheInvalidField(t *testing.T) {
	_, limiter := memLimiter()
	client := startServer(t, limiter, nil, nil)
	for name, tc := range map[string]struct {
		req   *quotav1.ReserveRequest
		field string
	}{
		"no subject":      {&quotav1.ReserveRequest{Model: "gpt"}, "subject"},
		"no organization": {reserveReq("", "alice", "gpt"), "subject.organization_id"},
		"no subject id":   {reserveReq("acme", "", "gpt"), "subject.subject"},
		"no model":        {reserveReq("acme", "alice", ""), "model"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := client.Reserve(t.Context(), tc.req)
			st := status.Convert(err)
			require.Equal(t, codes.InvalidArgument, st.Code())
			require.Len(t, st.Details(), 1)
			br := st.Details()[0].(*errdetails.BadRequest)
			require.Len(t, br.GetFieldViolations(), 1)
			assert.Equal(t, tc.field, br.GetFieldViolations()[0].GetField())

			_, err = client.Commit(t.Context(), &quotav1.CommitRequest{Subject: tc.req.GetSubject(), Model: tc.req.GetModel()})
			assert.Equal(t, codes.InvalidArgument, status.Code(err), "commit validates the same way")
		})
	}

	_, err := client.Commit(t.Context(), &quotav1.CommitRequest{
		Subject: &quotav1.Subject{OrganizationId: "acme", Subject: "alice"}, Model: "gpt",
		Usage: &typev1.Usage{TotalTokens: -5},
	})
	assert.Equal(t, codes.InvalidArgument, status.Code(err))
}

func TestOrganizationsAreIsolated(t *testing.T) {
	_, limiter := memLimiter()
	client := startServer(t, limiter, []quota.Limit{
		{Name: "a-rpm", Match: quota.Match{OrganizationID: "org-a"}, Scope: quota.Scope{By: quota.ByOrganization},
			Kind: quota.KindRequests, Amount: 1, Window: time.Minute},
		// Same limit shape for org-b, with more room: its counter must not be org-a's.
		{Name: "b-rpm", Match: quota.Match{OrganizationID: "org-b"}, Scope: quota.Scope{By: quota.ByOrganization},
			Kind: quota.KindRequests, Amount: 3, Window: time.Minute},
	}, nil)
	ctx := t.Context()
	_, err := client.Reserve(ctx, reserveReq("org-a", "alice", "gpt"))
	require.NoError(t, err)
	_, err = client.Reserve(ctx, reserveReq("org-a", "bob", "gpt"))
	require.Equal(t, codes.ResourceExhausted, status.Code(err), "organisation-wide counter")

	for i := range 3 {
		resp, err := client.Reserve(ctx, reserveReq("org-b", "alice", "gpt"))
		require.NoError(t, err, "org-b request %d", i+1)
		require.Len(t, resp.GetLimits(), 1)
		assert.Equal(t, "b-rpm", resp.GetLimits()[0].GetName(), "org-a's limit never applies to org-b")
	}

	// An organisation with no limits is admitted: limits are opt-in.
	resp, err := client.Reserve(ctx, reserveReq("org-c", "alice", "gpt"))
	require.NoError(t, err)
	assert.Empty(t, resp.GetLimits())
}

func TestCommittedTokensLeadToRefusal(t *testing.T) {
	clock, limiter := memLimiter()
	client := startServer(t, limiter, []quota.Limit{
		{Name: "acme-tpm", Match: quota.Match{OrganizationID: "acme", Model: "gpt"}, Scope: quota.Scope{By: quota.ByTeam},
			Kind: quota.KindTokens, Amount: 1000, Window: time.Minute},
		{Name: "acme-rpm", Match: quota.Match{OrganizationID: "acme"}, Scope: quota.Scope{By: quota.ByOrganization},
			Kind: quota.KindRequests, Amount: 100, Window: time.Minute},
	}, nil)
	ctx := t.Context()
	sub := &quotav1.Subject{OrganizationId: "acme", Subject: "alice", TeamId: "research"}
	resp, err := client.Reserve(ctx, &quotav1.ReserveRequest{Subject: sub, Model: "gpt"})
	require.NoError(t, err)
	require.Len(t, resp.GetLimits(), 2)

	_, err = client.Commit(ctx, &quotav1.CommitRequest{Subject: sub, Model: "gpt", Usage: &typev1.Usage{InputTokens: 700, OutputTokens: 500, TotalTokens: 1200}})
	require.NoError(t, err)

	_, err = client.Reserve(ctx, &quotav1.ReserveRequest{Subject: sub, Model: "gpt"})
	st := status.Convert(err)
	require.Equal(t, codes.ResourceExhausted, st.Code(), err)
	assert.Equal(t, "acme-tpm", st.Details()[1].(*errdetails.QuotaFailure).GetViolations()[0].GetSubject())
	retry, ok := apierr.RetryAfter(err)
	require.True(t, ok)
	// 201 tokens must drain at 1000 per minute: 12.06s.
	assert.Equal(t, 12060*time.Millisecond, retry)

	// The token limit matches only gpt, and another team has its own counter.
	_, err = client.Reserve(ctx, &quotav1.ReserveRequest{Subject: sub, Model: "other"})
	require.NoError(t, err)
	other := &quotav1.Subject{OrganizationId: "acme", Subject: "bob", TeamId: "sales"}
	_, err = client.Reserve(ctx, &quotav1.ReserveRequest{Subject: other, Model: "gpt"})
	require.NoError(t, err)

	// Without a total, input plus output is charged.
	_, err = client.Commit(ctx, &quotav1.CommitRequest{Subject: other, Model: "gpt", Usage: &typev1.Usage{InputTokens: 600, OutputTokens: 400}})
	require.NoError(t, err)
	_, err = client.Reserve(ctx, &quotav1.ReserveRequest{Subject: other, Model: "gpt"})
	assert.Equal(t, codes.ResourceExhausted, status.Code(err))

	clock.Advance(retry)
	_, err = client.Reserve(ctx, &quotav1.ReserveRequest{Subject: sub, Model: "gpt"})
	require.NoError(t, err)
}

func TestScopeWithoutAttributeDoesNotApply(t *testing.T) {
	_, limiter := memLimiter()
	client := startServer(t, limiter, []quota.Limit{
		{Name: "per-key", Match: quota.Match{OrganizationID: "acme"}, Scope: quota.Scope{By: quota.ByAPIKey, PerModel: true},
			Kind: quota.KindRequests, Amount: 1, Window: time.Minute},
	}, nil)
	ctx := t.Context()
	withKey := &quotav1.Subject{OrganizationId: "acme", Subject: "svc", ApiKeyId: "key-1"}
	_, err := client.Reserve(ctx, &quotav1.ReserveRequest{Subject: withKey, Model: "gpt"})
	require.NoError(t, err)
	_, err = client.Reserve(ctx, &quotav1.ReserveRequest{Subject: withKey, Model: "gpt"})
	assert.Equal(t, codes.ResourceExhausted, status.Code(err))
	_, err = client.Reserve(ctx, &quotav1.ReserveRequest{Subject: withKey, Model: "claude"})
	assert.NoError(t, err, "per model")

	resp, err := client.Reserve(ctx, reserveReq("acme", "alice", "gpt"))
	require.NoError(t, err, "no API key, so a per-key limit does not apply")
	assert.Empty(t, resp.GetLimits())
}

func TestLimiterFailureFailsClosed(t *testing.T) {
	log, logs := grpctest.Logger(t)
	client := startServer(t, downLimiter{}, []quota.Limit{{
		Name: "acme-tpm", Match: quota.Match{OrganizationID: "acme"}, Scope: quota.Scope{By: quota.ByOrganization},
		Kind: quota.KindTokens, Amount: 10, Window: time.Minute,
	}}, log)
	ctx := t.Context()

	_, err := client.Reserve(ctx, reserveReq("acme", "alice", "gpt"))
	st := status.Convert(err)
	assert.Equal(t, codes.Unavailable, st.Code())
	assert.Equal(t, "quota store unavailable", st.Message())
	assert.NotContains(t, st.Message(), "10.0.0.1", "the store's address stays in the log")

	_, err = client.Commit(ctx, &quotav1.CommitRequest{Subject: &quotav1.Subject{OrganizationId: "acme", Subject: "alice"}, Model: "gpt", Usage: &typev1.Usage{TotalTokens: 3}})
	assert.Equal(t, codes.Unavailable, status.Code(err))

	out := logs.String()
	assert.Equal(t, 2, bytes.Count([]byte(out), []byte(`"level":"ERROR"`)), out)
	assert.Contains(t, out, "connection refused")

	// An organisation with no limits never reaches the store.
	_, err = client.Reserve(ctx, reserveReq("other", "alice", "gpt"))
	assert.NoError(t, err)
}
