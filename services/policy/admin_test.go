package policy_test

import (
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	identityv1 "github.com/fmgate/fmgate/gen/fmgate/identity/v1"
	policyv1 "github.com/fmgate/fmgate/gen/fmgate/policy/v1"
	"github.com/fmgate/fmgate/internal/grpctest"
	"github.com/fmgate/fmgate/services/policy/policymem"
)

func grantPB(id string) *policyv1.Policy {
	return &policyv1.Policy{Id: id, Effect: policyv1.Effect_EFFECT_ALLOW, Subjects: []string{"team:risk"}, Models: []string{"gpt-*"}}
}

func TestPolicyCRUD(t *testing.T) {
	client := serve(t, policymem.New())
	ctx := t.Context()

	created, err := client.CreatePolicy(ctx, &policyv1.CreatePolicyRequest{OrganizationId: "org-a", Policy: grantPB("p1"), UpdatedBy: "alice"})
	require.NoError(t, err)
	assert.Nil(t, created.GetBefore())
	after := created.GetAfter()
	assert.Equal(t, int64(1), after.GetRevision())
	assert.Equal(t, "org-a", after.GetOrganizationId())
	assert.Equal(t, "alice", after.GetUpdatedBy())
	assert.NotEmpty(t, after.GetEtag())

	_, err = client.CreatePolicy(ctx, &policyv1.CreatePolicyRequest{OrganizationId: "org-a", Policy: grantPB("p1"), UpdatedBy: "alice"})
	assert.Equal(t, codes.AlreadyExists, status.Code(err))

	bad := grantPB("p2")
	bad.Condition = `principal.subject = "x"`
	_, err = client.CreatePolicy(ctx, &policyv1.CreatePolicyRequest{OrganizationId: "org-a", Policy: bad, UpdatedBy: "alice"})
	require.Equal(t, codes.InvalidArgument, status.Code(err))
	assert.Equal(t, []string{"policy.condition"}, grpctest.BadRequestFields(err))
	assert.Contains(t, status.Convert(err).Message(), "Syntax error", "the CEL error reaches the caller")

	// Update one obligation through the mask; the rest stays.
	upd := &policyv1.Policy{Id: "p1", Etag: after.GetEtag(), Description: "ignored",
		Condition:   `request.max_output_tokens <= 1000`,
		Obligations: &policyv1.Obligations{LogGroup: "risk", MaskPersonalData: true}}
	resp, err := client.UpdatePolicy(ctx, &policyv1.UpdatePolicyRequest{OrganizationId: "org-a", Policy: upd, UpdatedBy: "bob",
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"condition", "obligations.log_group"}}})
	require.NoError(t, err)
	assert.Equal(t, after.GetEtag(), resp.GetBefore().GetEtag())
	assert.Equal(t, int64(2), resp.GetAfter().GetRevision())
	assert.Equal(t, "risk", resp.GetAfter().GetObligations().GetLogGroup())
	assert.False(t, resp.GetAfter().GetObligations().GetMaskPersonalData(), "not in the mask")
	assert.Empty(t, resp.GetAfter().GetDescription(), "not in the mask")
	assert.Equal(t, `request.max_output_tokens <= 1000`, resp.GetAfter().GetCondition())

	_, err = client.UpdatePolicy(ctx, &policyv1.UpdatePolicyRequest{OrganizationId: "org-a", Policy: upd, UpdatedBy: "bob",
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"description"}}})
	assert.Equal(t, codes.Aborted, status.Code(err), "a stale etag")
	assert.Equal(t, "POLICY_ETAG_MISMATCH", grpctest.ErrorInfo(err).GetReason())

	_, err = client.UpdatePolicy(ctx, &policyv1.UpdatePolicyRequest{OrganizationId: "org-a", Policy: &policyv1.Policy{Id: "p1"}, UpdatedBy: "bob",
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"revision", "description"}}})
	require.Equal(t, codes.InvalidArgument, status.Code(err))
	assert.Equal(t, []string{"update_mask.paths[0]"}, grpctest.BadRequestFields(err))

	got, err := client.GetPolicy(ctx, &policyv1.GetPolicyRequest{OrganizationId: "org-a", Id: "p1"})
	require.NoError(t, err)
	assert.Equal(t, resp.GetAfter().GetEtag(), got.GetPolicy().GetEtag())

	_, err = client.DeletePolicy(ctx, &policyv1.DeletePolicyRequest{OrganizationId: "org-a", Id: "p1", Etag: after.GetEtag(), UpdatedBy: "carol"})
	assert.Equal(t, codes.Aborted, status.Code(err))
	del, err := client.DeletePolicy(ctx, &policyv1.DeletePolicyRequest{OrganizationId: "org-a", Id: "p1", Etag: got.GetPolicy().GetEtag(), UpdatedBy: "carol"})
	require.NoError(t, err)
	assert.Equal(t, int64(2), del.GetBefore().GetRevision())
	assert.Nil(t, del.GetAfter())
	_, err = client.GetPolicy(ctx, &policyv1.GetPolicyRequest{OrganizationId: "org-a", Id: "p1"})
	assert.Equal(t, codes.NotFound, status.Code(err))

	// History, paged one by one, newest first.
	var revs []*policyv1.PolicyRevision
	token := ""
	for {
		page, err := client.ListPolicyRevisions(ctx, &policyv1.ListPolicyRevisionsRequest{OrganizationId: "org-a", Id: "p1", PageSize: 1, PageToken: token})
		require.NoError(t, err)
		revs = append(revs, page.GetRevisions()...)
		if token = page.GetNextPageToken(); token == "" {
			break
		}
	}
	require.Len(t, revs, 3)
	assert.True(t, revs[0].GetDeleted())
	assert.Equal(t, []string{"carol", "bob", "alice"}, []string{revs[0].GetPolicy().GetUpdatedBy(), revs[1].GetPolicy().GetUpdatedBy(), revs[2].GetPolicy().GetUpdatedBy()})
}

func TestPolicyAdminValidation(t *testing.T) {
	client := serve(t, policymem.New())
	ctx := t.Context()
	_, err := client.CreatePolicy(ctx, &policyv1.CreatePolicyRequest{Policy: grantPB("p1")})
	require.Equal(t, codes.InvalidArgument, status.Code(err))
	assert.Equal(t, []string{"organization_id", "updated_by"}, grpctest.BadRequestFields(err))

	p := grantPB("p1")
	p.OrganizationId = "org-b"
	_, err = client.CreatePolicy(ctx, &policyv1.CreatePolicyRequest{OrganizationId: "org-a", Policy: p, UpdatedBy: "mallory"})
	require.Equal(t, codes.InvalidArgument, status.Code(err))
	assert.Equal(t, []string{"policy.organization_id"}, grpctest.BadRequestFields(err), "a tenant cannot write into another")
}

func TestPolicyAdminCrossTenant(t *testing.T) {
	client := serve(t, policymem.New())
	ctx := t.Context()
	for i := range 3 {
		_, err := client.CreatePolicy(ctx, &policyv1.CreatePolicyRequest{OrganizationId: "org-a", Policy: grantPB(string(rune('a' + i))), UpdatedBy: "alice"})
		require.NoError(t, err)
	}
	page, err := client.ListPolicies(ctx, &policyv1.ListPoliciesRequest{OrganizationId: "org-a", PageSize: 2})
	require.NoError(t, err)
	require.Len(t, page.GetPolicies(), 2)
	require.NotEmpty(t, page.GetNextPageToken())

	_, err = client.ListPolicies(ctx, &policyv1.ListPoliciesRequest{OrganizationId: "org-b", PageToken: page.GetNextPageToken()})
	require.Equal(t, codes.InvalidArgument, status.Code(err), "org A's page token does not page org B")
	assert.Equal(t, []string{"page_token"}, grpctest.BadRequestFields(err))
	rest, err := client.ListPolicies(ctx, &policyv1.ListPoliciesRequest{OrganizationId: "org-a", PageSize: 2, PageToken: page.GetNextPageToken()})
	require.NoError(t, err)
	assert.Len(t, rest.GetPolicies(), 1)
	assert.Empty(t, rest.GetNextPageToken())

	list, err := client.ListPolicies(ctx, &policyv1.ListPoliciesRequest{OrganizationId: "org-b"})
	require.NoError(t, err)
	assert.Empty(t, list.GetPolicies())
	_, err = client.GetPolicy(ctx, &policyv1.GetPolicyRequest{OrganizationId: "org-b", Id: "a"})
	assert.Equal(t, codes.NotFound, status.Code(err))
	_, err = client.UpdatePolicy(ctx, &policyv1.UpdatePolicyRequest{OrganizationId: "org-b", Policy: grantPB("a"), UpdatedBy: "mallory",
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"*"}}})
	assert.Equal(t, codes.NotFound, status.Code(err))
	_, err = client.DeletePolicy(ctx, &policyv1.DeletePolicyRequest{OrganizationId: "org-b", Id: "a", UpdatedBy: "mallory"})
	assert.Equal(t, codes.NotFound, status.Code(err))
	_, err = client.ListPolicyRevisions(ctx, &policyv1.ListPolicyRevisionsRequest{OrganizationId: "org-b", Id: "a"})
	assert.Equal(t, codes.NotFound, status.Code(err))
	got, err := client.GetPolicy(ctx, &policyv1.GetPolicyRequest{OrganizationId: "org-a", Id: "a"})
	require.NoError(t, err)
	assert.Equal(t, int64(1), got.GetPolicy().GetRevision(), "org A's policy is untouched")
}

func TestUpdateConcurrentSameEtag(t *testing.T) {
	client := serve(t, policymem.New())
	ctx := t.Context()
	created, err := client.CreatePolicy(ctx, &policyv1.CreatePolicyRequest{OrganizationId: "org-a", Policy: grantPB("p"), UpdatedBy: "a"})
	require.NoError(t, err)
	codesSeen := make(chan codes.Code, 6)
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Go(func() {
			_, err := client.UpdatePolicy(ctx, &policyv1.UpdatePolicyRequest{OrganizationId: "org-a", UpdatedBy: "w",
				Policy:     &policyv1.Policy{Id: "p", Etag: created.GetAfter().GetEtag(), Description: string(rune('a' + i))},
				UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"description"}}})
			codesSeen <- status.Code(err)
		})
	}
	wg.Wait()
	close(codesSeen)
	n := map[codes.Code]int{}
	for c := range codesSeen {
		n[c]++
	}
	assert.Equal(t, map[codes.Code]int{codes.OK: 1, codes.Aborted: 5}, n)
}

func TestPacksRPC(t *testing.T) {
	store := policymem.New()
	client := serve(t, store)
	ctx := t.Context()
	tpl, err := client.ListPackTemplates(ctx, &policyv1.ListPackTemplatesRequest{})
	require.NoError(t, err)
	var names []string
	for _, t := range tpl.GetTemplates() {
		names = append(names, t.GetName())
	}
	assert.Equal(t, []string{"ccpa", "gdpr", "hipaa"}, names)

	_, err = client.CreatePolicy(ctx, &policyv1.CreatePolicyRequest{OrganizationId: "org-a", UpdatedBy: "admin",
		Policy: &policyv1.Policy{Id: "grant", Effect: policyv1.Effect_EFFECT_ALLOW, Subjects: []string{"*"}, Models: []string{"*"}}})
	require.NoError(t, err)
	req := &policyv1.InstantiatePackRequest{OrganizationId: "org-a", Pack: "gdpr", UpdatedBy: "admin"}
	first, err := client.InstantiatePack(ctx, req)
	require.NoError(t, err)
	require.Len(t, first.GetChanges(), 1)
	assert.Nil(t, first.GetChanges()[0].GetBefore())
	assert.Equal(t, "gdpr-eu-principals", first.GetPolicies()[0].GetId())
	again, err := client.InstantiatePack(ctx, req)
	require.NoError(t, err)
	assert.Empty(t, again.GetChanges(), "instantiating again changes nothing")
	assert.Equal(t, first.GetPolicies()[0].GetEtag(), again.GetPolicies()[0].GetEtag())

	req.Parameters = map[string]string{"regions": "eu-central-1"}
	changed, err := client.InstantiatePack(ctx, req)
	require.NoError(t, err)
	require.Len(t, changed.GetChanges(), 1)
	assert.Equal(t, []string{"eu-*", "europe-*"}, changed.GetChanges()[0].GetBefore().GetObligations().GetAllowedEndpointRegions())

	_, err = client.InstantiatePack(ctx, &policyv1.InstantiatePackRequest{OrganizationId: "org-a", Pack: "sox", UpdatedBy: "admin"})
	require.Equal(t, codes.InvalidArgument, status.Code(err))
	assert.Equal(t, []string{"pack"}, grpctest.BadRequestFields(err))

	// The GDPR story through Explain: an EU principal, a route with no EU endpoint.
	x, err := client.Explain(ctx, &policyv1.ExplainRequest{
		Principal: &identityv1.Principal{OrganizationId: "org-a", Subject: "anna", Attributes: map[string]string{"jurisdiction": "EU"}},
		Model:     "gpt-4o",
		Endpoints: []*policyv1.EndpointFacts{{Id: "use1", Region: "us-east-1"}, {Id: "euw1", Region: "eu-west-1"}},
	})
	require.NoError(t, err)
	assert.Equal(t, policyv1.Decision_DECISION_DENY, x.GetDecision())
	assert.Equal(t, []string{`no endpoint of model "gpt-4o" is in an allowed region (eu-central-1)`}, x.GetReasons())
	assert.Equal(t, []string{"gdpr-eu-principals"}, x.GetPolicyIds())
	require.Len(t, x.GetPolicies(), 2)
	assert.Equal(t, policyv1.ConditionResult_CONDITION_RESULT_TRUE, x.GetPolicies()[0].GetCondition())
	assert.True(t, x.GetPolicies()[0].GetFired())
	assert.Len(t, x.GetEndpoints(), 2)
	assert.Contains(t, x.GetExplanation(), `Endpoint "euw1" may not serve the request: region "eu-west-1" is not among the allowed regions (eu-central-1).`)

	ev, err := client.Evaluate(ctx, &policyv1.EvaluateRequest{
		Principal: &identityv1.Principal{OrganizationId: "org-a", Subject: "anna", Attributes: map[string]string{"jurisdiction": "EU"}},
		Model:     "gpt-4o",
		Endpoints: []*policyv1.EndpointFacts{{Id: "use1", Region: "us-east-1"}, {Id: "euc1", Region: "eu-central-1"}},
	})
	require.NoError(t, err)
	assert.Equal(t, policyv1.Decision_DECISION_ALLOW, ev.GetDecision(), ev.GetReasons())
	assert.Equal(t, []string{"euc1"}, ev.GetAllowedEndpointIds())
	assert.Equal(t, []string{"eu-central-1"}, ev.GetObligations().GetAllowedEndpointRegions())
	assert.True(t, ev.GetObligations().GetMaskPersonalData())
	assert.Equal(t, "pii-mask", ev.GetObligations().GetModerationProfile())
}
