package policy_test

import (
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"

	identityv1 "github.com/fmgate/fmgate/gen/fmgate/identity/v1"
	policyv1 "github.com/fmgate/fmgate/gen/fmgate/policy/v1"
	"github.com/fmgate/fmgate/services/policy"
	"github.com/fmgate/fmgate/services/policy/policytest"
)

func withObligations(p policy.Policy, profile string, maxTokens int32) policy.Policy {
	p.ModerationProfile, p.MaxOutputTokens = profile, maxTokens
	return p
}

func enginePolicies() []policy.Policy {
	return []policy.Policy{
		policytest.Allow("org-a", "allow-risk", []string{"team:risk"}, []string{"gpt-*"}),
		withObligations(policytest.Allow("org-a", "allow-analyst", []string{"role:analyst"}, []string{"gpt-4o"}), "strict", 2048),
		withObligations(policytest.Allow("org-a", "allow-bot", []string{"subject:svc:bot"}, []string{"meta/*"}), "", 512),
		withObligations(policytest.Allow("org-a", "allow-key", []string{"api_key:k1"}, []string{"*"}), "lenient", 4096),
		withObligations(policytest.Allow("org-a", "allow-key-too", []string{"api_key:k1"}, []string{"claude-?"}), "", 4096),
		policytest.Deny("org-a", "deny-intern", []string{"role:intern"}, []string{"*"}),
		policytest.Deny("org-a", "deny-o1", []string{"*"}, []string{"o1*"}),
		policytest.Allow("org-b", "allow-everything", []string{"*"}, []string{"*"}),
	}
}

func TestEvaluate(t *testing.T) {
	principal := func(org, subject, team, key string, roles ...string) *identityv1.Principal {
		return &identityv1.Principal{OrganizationId: org, Subject: subject, TeamId: team, ApiKeyId: key, Roles: roles}
	}
	tests := []struct {
		name      string
		principal *identityv1.Principal
		model     string
		maxTokens int32
		want      policy.Decision
	}{
		{
			name:      "no policy matches",
			principal: principal("org-a", "alice", "ops", ""),
			model:     "gpt-4o",
			want: policy.Decision{Effect: policy.EffectDeny,
				Reasons: []string{`no policy grants model "gpt-4o" to subject "alice"`}},
		},
		{
			name:      "team grant",
			principal: principal("org-a", "alice", "risk", ""),
			model:     "gpt-4o-mini",
			want: policy.Decision{Effect: policy.EffectAllow, PolicyIDs: []string{"allow-risk"},
				Reasons: []string{`policy "allow-risk" grants model "gpt-4o-mini" to subject "alice"`}},
		},
		{
			name:      "obligations combine in policy id order",
			principal: principal("org-a", "alice", "risk", "", "reader", "analyst"),
			model:     "gpt-4o",
			maxTokens: 2048,
			want: policy.Decision{Effect: policy.EffectAllow, PolicyIDs: []string{"allow-analyst", "allow-risk"},
				Reasons: []string{
					`policy "allow-analyst" grants model "gpt-4o" to subject "alice"`,
					`policy "allow-risk" grants model "gpt-4o" to subject "alice"`,
				},
				Obligations: policy.Obligations{ModerationProfile: "strict", MaxOutputTokens: 2048}},
		},
		{
			name:      "request over the token limit",
			principal: principal("org-a", "alice", "risk", "", "analyst"),
			model:     "gpt-4o",
			maxTokens: 2049,
			want: policy.Decision{Effect: policy.EffectDeny, PolicyIDs: []string{"allow-analyst"},
				Reasons:     []string{`max_output_tokens 2049 exceeds the limit of 2048 set by policy "allow-analyst" for model "gpt-4o"`},
				Obligations: policy.Obligations{ModerationProfile: "strict", MaxOutputTokens: 2048}},
		},
		{
			name:      "equal limits name every policy that sets them",
			principal: principal("org-a", "bob", "", "k1"),
			model:     "claude-3",
			maxTokens: 5000,
			want: policy.Decision{Effect: policy.EffectDeny, PolicyIDs: []string{"allow-key", "allow-key-too"},
				Reasons:     []string{`max_output_tokens 5000 exceeds the limit of 4096 set by policies "allow-key", "allow-key-too" for model "claude-3"`},
				Obligations: policy.Obligations{ModerationProfile: "lenient", MaxOutputTokens: 4096}},
		},
		{
			name:      "deny wins over allows",
			principal: principal("org-a", "carol", "risk", "k1", "intern", "analyst"),
			model:     "gpt-4o",
			want: policy.Decision{Effect: policy.EffectDeny, PolicyIDs: []string{"deny-intern"},
				Reasons: []string{`policy "deny-intern" denies model "gpt-4o" to subject "carol": refuses deny-intern`}},
		},
		{
			name:      "every matching deny is named",
			principal: principal("org-a", "carol", "", "", "intern"),
			model:     "o1-preview",
			want: policy.Decision{Effect: policy.EffectDeny, PolicyIDs: []string{"deny-intern", "deny-o1"},
				Reasons: []string{
					`policy "deny-intern" denies model "o1-preview" to subject "carol": refuses deny-intern`,
					`policy "deny-o1" denies model "o1-preview" to subject "carol": refuses deny-o1`,
				}},
		},
		{
			name:      "a lone * matches names with a slash",
			principal: principal("org-a", "dave", "", "k1"),
			model:     "meta/llama-3",
			want: policy.Decision{Effect: policy.EffectAllow, PolicyIDs: []string{"allow-key"},
				Reasons:     []string{`policy "allow-key" grants model "meta/llama-3" to subject "dave"`},
				Obligations: policy.Obligations{ModerationProfile: "lenient", MaxOutputTokens: 4096}},
		},
		{
			name:      "subject grant with a vendor pattern",
			principal: principal("org-a", "svc:bot", "", ""),
			model:     "meta/llama-3",
			want: policy.Decision{Effect: policy.EffectAllow, PolicyIDs: []string{"allow-bot"},
				Reasons:     []string{`policy "allow-bot" grants model "meta/llama-3" to subject "svc:bot"`},
				Obligations: policy.Obligations{MaxOutputTokens: 512}},
		},
		{
			name:      "a pattern's * does not cross a slash",
			principal: principal("org-a", "svc:bot", "", ""),
			model:     "meta/llama/3",
			want: policy.Decision{Effect: policy.EffectDeny,
				Reasons: []string{`no policy grants model "meta/llama/3" to subject "svc:bot"`}},
		},
		{
			name:      "another organization's policies never apply",
			principal: principal("org-a", "eve", "", ""),
			model:     "gpt-4o",
			want: policy.Decision{Effect: policy.EffectDeny,
				Reasons: []string{`no policy grants model "gpt-4o" to subject "eve"`}},
		},
		{
			name:      "nor do org A's to org B",
			principal: principal("org-b", "carol", "risk", "", "intern"),
			model:     "o1",
			want: policy.Decision{Effect: policy.EffectAllow, PolicyIDs: []string{"allow-everything"},
				Reasons: []string{`policy "allow-everything" grants model "o1" to subject "carol"`}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := &policyv1.EvaluateRequest{Principal: tt.principal, Model: tt.model,
				Request: &policyv1.RequestFacts{MaxOutputTokens: tt.maxTokens}}
			ps := enginePolicies()
			assert.Equal(t, tt.want, policy.Evaluate(ps, req))
			slices.Reverse(ps)
			assert.Equal(t, tt.want, policy.Evaluate(ps, req), "input order does not matter")
		})
	}
}

func TestEvaluateNoPolicies(t *testing.T) {
	d := policy.Evaluate(nil, &policyv1.EvaluateRequest{Principal: &identityv1.Principal{OrganizationId: "o", Subject: "s"}, Model: "m"})
	assert.False(t, d.Allowed(), "deny by default")
	assert.Empty(t, d.PolicyIDs)
}
