package policy_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	identityv1 "github.com/fmgate/fmgate/gen/fmgate/identity/v1"
	policyv1 "github.com/fmgate/fmgate/gen/fmgate/policy/v1"
	"github.com/fmgate/fmgate/services/policy"
	"github.com/fmgate/fmgate/services/policy/policytest"
)

func when(p policy.Policy, condition string) policy.Policy {
	p.Condition = condition
	return p
}

func constrain(id string, edit func(p *policy.Policy)) policy.Policy {
	p := policytest.Allow("org-a", id, []string{"*"}, []string{"*"})
	p.Effect = policy.EffectConstrain
	edit(&p)
	return p
}

func request(attrs map[string]string, model string, edit func(r *policyv1.EvaluateRequest)) *policyv1.EvaluateRequest {
	r := &policyv1.EvaluateRequest{
		Principal: &identityv1.Principal{OrganizationId: "org-a", Subject: "alice", TeamId: "risk", Attributes: attrs,
			Kind: identityv1.PrincipalKind_PRINCIPAL_KIND_USER},
		Model:   model,
		Request: &policyv1.RequestFacts{MessageCount: 2},
	}
	if edit != nil {
		edit(r)
	}
	return r
}

func endpoints(eps ...*policyv1.EndpointFacts) func(r *policyv1.EvaluateRequest) {
	return func(r *policyv1.EvaluateRequest) { r.Endpoints = eps }
}

func TestConditions(t *testing.T) {
	grantAll := policytest.Allow("org-a", "grant-all", []string{"*"}, []string{"*"})
	tests := []struct {
		name     string
		policies []policy.Policy
		req      *policyv1.EvaluateRequest
		allowed  bool
		ids      []string
		reason   string
	}{
		{
			name:     "an allow applies only when its condition holds",
			policies: []policy.Policy{when(grantAll, `!request.stream && request.message_count < 5`)},
			req:      request(nil, "gpt-4o", func(r *policyv1.EvaluateRequest) { r.Request.Stream = true }),
			reason:   `no policy grants model "gpt-4o" to subject "alice"`,
		},
		{
			name:     "and grants when it does",
			policies: []policy.Policy{when(grantAll, `!request.stream && request.message_count < 5`)},
			req:      request(nil, "gpt-4o", nil),
			allowed:  true, ids: []string{"grant-all"},
		},
		{
			name: "conditions see the model facts",
			policies: []policy.Policy{grantAll, when(policytest.Deny("org-a", "deny-unapproved", []string{"*"}, []string{"*"}),
				`model.lifecycle_state != "approved" || model.vendor == "acme"`)},
			req: request(nil, "gpt-4o", func(r *policyv1.EvaluateRequest) {
				r.ModelFacts = &policyv1.ModelFacts{Vendor: "openai", LifecycleState: "evaluating"}
			}),
			ids: []string{"deny-unapproved"}, reason: `policy "deny-unapproved" denies model "gpt-4o" to subject "alice"`,
		},
		{
			name:     "model.name defaults to the requested model",
			policies: []policy.Policy{when(grantAll, `model.name == "gpt-4o" && principal.kind == 1 && principal.team_id == "risk"`)},
			req:      request(nil, "gpt-4o", nil),
			allowed:  true, ids: []string{"grant-all"},
		},
		{
			name: "a deny whose condition fails refuses: closed",
			policies: []policy.Policy{grantAll, when(policytest.Deny("org-a", "deny-x", []string{"*"}, []string{"*"}),
				`principal.attributes["clearance"] == "none"`)},
			req: request(nil, "gpt-4o", nil),
			ids: []string{"deny-x"}, reason: `policy "deny-x" could not evaluate its condition (no such key: clearance), which refuses model "gpt-4o" to subject "alice": refuses deny-x`,
		},
		{
			name:     "an allow whose condition fails grants nothing",
			policies: []policy.Policy{when(grantAll, `principal.attributes["clearance"] == "high"`)},
			req:      request(nil, "gpt-4o", nil),
			reason:   `no policy grants model "gpt-4o" to subject "alice"`,
		},
		{
			name:     "a failing condition of a policy whose subjects do not match is not evaluated",
			policies: []policy.Policy{grantAll, when(policytest.Deny("org-a", "deny-x", []string{"team:other"}, []string{"*"}), `principal.attributes["x"] == ""`)},
			req:      request(nil, "gpt-4o", nil),
			allowed:  true, ids: []string{"grant-all"},
		},
		{
			name: "the cost limit bounds a condition, closed",
			policies: []policy.Policy{grantAll, when(policytest.Deny("org-a", "deny-costly", []string{"*"}, []string{"*"}),
				`[1,2,3,4,5,6,7,8,9,request.message_count].all(a, [1,2,3,4,5,6,7,8,9,a].all(b, [1,2,3,4,5,6,7,8,9,b].all(c, [1,2,3,4,5,6,7,8,9,c].all(d, a+b+c+d < 100))))`)},
			req: request(nil, "gpt-4o", nil),
			ids: []string{"deny-costly"}, reason: "operation cancelled: actual cost limit exceeded",
		},
		{
			name:     "a constrain policy grants nothing",
			policies: []policy.Policy{constrain("c", func(p *policy.Policy) { p.MaskPersonalData = true })},
			req:      request(nil, "gpt-4o", nil),
			reason:   `no policy grants model "gpt-4o" to subject "alice"`,
		},
		{
			name:     "a request using a modality outside the allowed ones is refused",
			policies: []policy.Policy{grantAll, constrain("text-only", func(p *policy.Policy) { p.AllowedModalities = []string{"text"} })},
			req:      request(nil, "gpt-4o", func(r *policyv1.EvaluateRequest) { r.Request.Modalities = []string{"text", "image"} }),
			ids:      []string{"text-only"}, reason: `modality "image" is not among the modalities (text) policy "text-only" allow for model "gpt-4o"`,
		},
		{
			name: "disjoint region lists refuse",
			policies: []policy.Policy{grantAll,
				constrain("eu", func(p *policy.Policy) { p.AllowedEndpointRegions = []string{"eu-*"} }),
				constrain("us", func(p *policy.Policy) { p.AllowedEndpointRegions = []string{"us-east-1"} })},
			req: request(nil, "gpt-4o", nil),
			ids: []string{"eu", "us"}, reason: `policies "eu", "us" allow no endpoint region in common for model "gpt-4o"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, p := range tt.policies {
				require.NoError(t, p.Validate(), p.ID)
			}
			d := policy.Evaluate(tt.policies, tt.req)
			assert.Equal(t, tt.allowed, d.Allowed(), d.Reasons)
			assert.Equal(t, tt.ids, d.PolicyIDs)
			if tt.reason != "" {
				require.Len(t, d.Reasons, 1)
				assert.Contains(t, d.Reasons[0], tt.reason)
			}
		})
	}
}

func TestObligationsMerge(t *testing.T) {
	grant := policytest.Allow("org-a", "b-grant", []string{"*"}, []string{"*"})
	grant.ModerationProfile, grant.LogGroup, grant.MaxOutputTokens = "lenient", "grants", 500
	grant.AllowedModalities = []string{"text", "image", "audio"}
	ps := []policy.Policy{
		grant,
		constrain("a-eu", func(p *policy.Policy) {
			p.AllowedEndpointRegions = []string{"eu-*", "europe-*"}
			p.LogRetention = policy.RetainFor(30 * 24 * time.Hour)
			p.AllowedModalities = []string{"image", "text"}
		}),
		constrain("c-west", func(p *policy.Policy) {
			p.AllowedEndpointRegions = []string{"eu-west-*", "us-west-2", "europe-west4"}
			p.LogRetention = policy.RetainFor(7 * 24 * time.Hour)
			p.ModerationProfile, p.LogGroup, p.MaskPersonalData, p.MaxOutputTokens = "pii-mask", "eu-west", true, 300
		}),
		when(constrain("d-not-applying", func(p *policy.Policy) { p.LogRetention = policy.RetainFor(0) }), `request.stream`),
	}
	d := policy.Evaluate(ps, request(nil, "gpt-4o", nil))
	require.True(t, d.Allowed(), d.Reasons)
	assert.Equal(t, []string{"b-grant"}, d.PolicyIDs, "constrain policies do not decide")
	assert.Equal(t, policy.Obligations{
		ModerationProfile:      "pii-mask", // a constrain policy's profile wins over a grant's
		MaxOutputTokens:        300,
		AllowedEndpointRegions: []string{"eu-west-*", "europe-west4"},
		AllowedModalities:      []string{"image", "text"},
		LogRetention:           policy.RetainFor(7 * 24 * time.Hour),
		LogGroup:               "grants", // the first in policy id order
		MaskPersonalData:       true,
	}, d.Obligations)

	d = policy.Evaluate(ps, request(nil, "gpt-4o", func(r *policyv1.EvaluateRequest) { r.Request.Stream = true }))
	require.True(t, d.Allowed())
	assert.Equal(t, policy.RetainFor(0), d.Obligations.LogRetention, "zero is the strictest retention")
}

func TestEndpointFiltering(t *testing.T) {
	ps := []policy.Policy{
		policytest.Allow("org-a", "grant", []string{"*"}, []string{"*"}),
		when(constrain("eu", func(p *policy.Policy) { p.AllowedEndpointRegions = []string{"eu-*"} }),
			`principal.attributes.?jurisdiction.orValue("") == "EU"`),
		when(constrain("phi", func(p *policy.Policy) { p.RequireBAACoverage = true }),
			`principal.attributes.?handles_phi.orValue("") == "true"`),
	}
	us := &policyv1.EndpointFacts{Id: "us", Region: "us-east-1", CoveredByBaa: true}
	eu := &policyv1.EndpointFacts{Id: "eu", Region: "eu-west-1"}
	euBAA := &policyv1.EndpointFacts{Id: "eu-baa", Region: "eu-central-1", CoveredByBaa: true}
	noRegion := &policyv1.EndpointFacts{Id: "nowhere"}
	tests := []struct {
		name    string
		attrs   map[string]string
		eps     []*policyv1.EndpointFacts
		allowed []string
		reason  string
		ids     []string
	}{
		{"unconstrained: every endpoint", nil, []*policyv1.EndpointFacts{us, eu, noRegion}, []string{"us", "eu", "nowhere"}, "", []string{"grant"}},
		{"EU: EU endpoints only", map[string]string{"jurisdiction": "EU"}, []*policyv1.EndpointFacts{us, eu, noRegion, euBAA}, []string{"eu", "eu-baa"}, "", []string{"grant"}},
		{"EU without an EU endpoint", map[string]string{"jurisdiction": "EU"}, []*policyv1.EndpointFacts{us, noRegion}, nil,
			`no endpoint of model "gpt-4o" is in an allowed region (eu-*)`, []string{"eu"}},
		{"PHI: covered endpoints only", map[string]string{"handles_phi": "true"}, []*policyv1.EndpointFacts{us, eu}, []string{"us"}, "", []string{"grant"}},
		{"EU and PHI", map[string]string{"jurisdiction": "EU", "handles_phi": "true"}, []*policyv1.EndpointFacts{us, eu, euBAA}, []string{"eu-baa"}, "", []string{"grant"}},
		{"EU and PHI, none both", map[string]string{"jurisdiction": "EU", "handles_phi": "true"}, []*policyv1.EndpointFacts{us, eu}, nil,
			`no endpoint of model "gpt-4o" is in an allowed region (eu-*) or covered by a business associate agreement`, []string{"eu", "phi"}},
		{"no endpoint facts: the caller filters", map[string]string{"jurisdiction": "EU"}, nil, nil, "", []string{"grant"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := policy.Evaluate(ps, request(tt.attrs, "gpt-4o", endpoints(tt.eps...)))
			assert.Equal(t, tt.reason == "", d.Allowed(), d.Reasons)
			assert.Equal(t, tt.allowed, d.AllowedEndpointIDs)
			assert.Equal(t, tt.ids, d.PolicyIDs)
			if tt.reason != "" {
				assert.Equal(t, []string{tt.reason}, d.Reasons)
			}
		})
	}
}

func packPolicies(t *testing.T, names ...string) []policy.Policy {
	t.Helper()
	ps := []policy.Policy{policytest.Allow("org-a", "grant", []string{"*"}, []string{"*"})}
	for _, n := range names {
		k, err := policy.FindPack(n)
		require.NoError(t, err)
		more, err := k.Policies("org-a", nil)
		require.NoError(t, err)
		ps = append(ps, more...)
	}
	return ps
}

func TestPacks(t *testing.T) {
	ps := packPolicies(t, "gdpr", "ccpa", "hipaa")
	usEP := &policyv1.EndpointFacts{Id: "us", Region: "us-east-1", Provider: "openai"}
	euEP := &policyv1.EndpointFacts{Id: "eu", Region: "europe-west4", Provider: "gemini"}
	baaEP := &policyv1.EndpointFacts{Id: "baa", Region: "us-east-2", Provider: "bedrock", CoveredByBaa: true}

	t.Run("GDPR: an EU principal reaches EU endpoints, masked", func(t *testing.T) {
		d := policy.Evaluate(ps, request(map[string]string{"jurisdiction": "EU"}, "gpt-4o", endpoints(usEP, euEP)))
		require.True(t, d.Allowed(), d.Reasons)
		assert.Equal(t, []string{"eu"}, d.AllowedEndpointIDs)
		assert.Equal(t, []string{"eu-*", "europe-*"}, d.Obligations.AllowedEndpointRegions)
		assert.True(t, d.Obligations.MaskPersonalData)
		assert.Equal(t, "pii-mask", d.Obligations.ModerationProfile)
	})
	t.Run("GDPR: refused when the route has no EU endpoint", func(t *testing.T) {
		d := policy.Evaluate(ps, request(map[string]string{"jurisdiction": "EU"}, "gpt-4o", endpoints(usEP, baaEP)))
		assert.False(t, d.Allowed())
		assert.Equal(t, []string{`no endpoint of model "gpt-4o" is in an allowed region (eu-*, europe-*)`}, d.Reasons)
		assert.Equal(t, []string{"gdpr-eu-principals"}, d.PolicyIDs)
	})
	t.Run("GDPR: others are not constrained", func(t *testing.T) {
		d := policy.Evaluate(ps, request(map[string]string{"jurisdiction": "US"}, "gpt-4o", endpoints(usEP, euEP)))
		require.True(t, d.Allowed())
		assert.Equal(t, []string{"us", "eu"}, d.AllowedEndpointIDs)
		assert.Equal(t, policy.Obligations{}, d.Obligations)
	})
	for _, attrs := range []map[string]string{{"state": "CA"}, {"residency": "CA"}} {
		t.Run("CCPA: California residents are masked and not retained", func(t *testing.T) {
			d := policy.Evaluate(ps, request(attrs, "gpt-4o", nil))
			require.True(t, d.Allowed())
			assert.True(t, d.Obligations.MaskPersonalData)
			assert.Equal(t, policy.RetainFor(0), d.Obligations.LogRetention)
		})
	}
	t.Run("HIPAA: PHI handlers reach covered endpoints only", func(t *testing.T) {
		d := policy.Evaluate(ps, request(map[string]string{"handles_phi": "true"}, "gpt-4o", endpoints(usEP, baaEP)))
		require.True(t, d.Allowed(), d.Reasons)
		assert.Equal(t, []string{"baa"}, d.AllowedEndpointIDs)
		assert.True(t, d.Obligations.RequireBAACoverage)
	})
	t.Run("HIPAA: refused by the deny policy without a covered endpoint", func(t *testing.T) {
		for _, eps := range [][]*policyv1.EndpointFacts{{usEP, euEP}, nil} {
			d := policy.Evaluate(ps, request(map[string]string{"handles_phi": "true"}, "gpt-4o", endpoints(eps...)))
			assert.False(t, d.Allowed())
			assert.Equal(t, []string{"hipaa-deny-without-baa"}, d.PolicyIDs)
			assert.Equal(t, []string{`policy "hipaa-deny-without-baa" denies model "gpt-4o" to subject "alice": ` +
				`HIPAA pack v1: refuses principals handling PHI a model no BAA-covered endpoint serves`}, d.Reasons,
				"the refusal says why, in the policy's description")
		}
	})
	t.Run("parameters", func(t *testing.T) {
		k, err := policy.FindPack("gdpr")
		require.NoError(t, err)
		custom, err := k.Policies("org-a", map[string]string{"attribute": "geo", "value": "EEA", "regions": "eu-central-1"})
		require.NoError(t, err)
		d := policy.Evaluate(append(packPolicies(t), custom...), request(map[string]string{"geo": "EEA"}, "m", endpoints(euEP)))
		assert.False(t, d.Allowed(), "europe-west4 is not eu-central-1")

		_, err = k.Policies("org-a", map[string]string{"value": `EU" || true || "`, "colour": "blue"})
		var ve *policy.ValidationError
		require.ErrorAs(t, err, &ve)
		assert.Equal(t, "parameters.colour", ve.Violations[0].Field)
		assert.Equal(t, "parameters.value", ve.Violations[1].Field)
		_, err = policy.FindPack("sox")
		assert.ErrorIs(t, err, policy.ErrUnknownPack)
	})
}

func TestExplain(t *testing.T) {
	ps := append(packPolicies(t, "gdpr"), policytest.Deny("org-a", "deny-interns", []string{"role:intern"}, []string{"*"}))
	req := request(map[string]string{"jurisdiction": "EU"}, "gpt-4o", endpoints(
		&policyv1.EndpointFacts{Id: "use1", Region: "us-east-1"}, &policyv1.EndpointFacts{Id: "usw2", Region: "us-west-2"}))
	c := policy.Compile(ps)
	x := c.Explain(req)
	assert.Equal(t, c.Evaluate(req), x.Decision, "Explain decides as Evaluate does")
	assert.False(t, x.Decision.Allowed())
	assert.Equal(t, []policy.Trace{
		{PolicyID: "deny-interns", Effect: policy.EffectDeny, ModelsMatched: true, Condition: policy.ConditionAbsent},
		{PolicyID: "gdpr-eu-principals", Effect: policy.EffectConstrain, SubjectsMatched: true, ModelsMatched: true, Condition: policy.ConditionTrue, Fired: true},
		{PolicyID: "grant", Effect: policy.EffectAllow, SubjectsMatched: true, ModelsMatched: true, Condition: policy.ConditionAbsent, Fired: true},
	}, x.Policies)
	assert.Equal(t, []policy.EndpointTrace{
		{ID: "use1", Reason: `region "us-east-1" is not among the allowed regions (eu-*, europe-*)`},
		{ID: "usw2", Reason: `region "us-west-2" is not among the allowed regions (eu-*, europe-*)`},
	}, x.Endpoints)
	assert.Contains(t, x.Text, `Policy "gdpr-eu-principals" (constrain, revision 0): subjects match, models match, condition holds; it adds its obligations.`)
	assert.Contains(t, x.Text, `Policy "deny-interns" (deny, revision 0): subjects do not match, models match, no condition; it does not apply.`)
	assert.Contains(t, x.Text, `Endpoint "use1" may not serve the request: region "us-east-1" is not among the allowed regions (eu-*, europe-*).`)
	assert.Contains(t, x.Text, "Decision: deny.\nNo endpoint of model \"gpt-4o\" is in an allowed region (eu-*, europe-*).\n")
}
