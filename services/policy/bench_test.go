package policy_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	identityv1 "github.com/fmgate/fmgate/gen/fmgate/identity/v1"
	policyv1 "github.com/fmgate/fmgate/gen/fmgate/policy/v1"
	"github.com/fmgate/fmgate/services/policy"
	"github.com/fmgate/fmgate/services/policy/policytest"
)

// benchPolicies is an organization's 50 policies, 16 of them with CEL conditions: team
// grants, role grants with obligations, key grants, denies, and jurisdiction constraints.
// For benchPrincipal asking for gpt-4o, nine conditions are evaluated per decision.
func benchPolicies() []policy.Policy {
	var ps []policy.Policy
	for i := range 28 {
		p := policytest.Allow("org-a", fmt.Sprintf("team-%02d", i),
			[]string{fmt.Sprintf("team:team-%d", i)}, []string{"gpt-4o", fmt.Sprintf("vendor-%d/*", i)})
		if i%4 == 3 {
			p.Condition = `request.message_count <= 100 && !(model.lifecycle_state in ["retired", "proposed"])`
		}
		ps = append(ps, p)
	}
	for i := range 10 {
		p := withObligations(policytest.Allow("org-a", fmt.Sprintf("role-%02d", i),
			[]string{fmt.Sprintf("role:role-%d", i), fmt.Sprintf("subject:user-%d", i)}, []string{"gpt-*", "claude-*"}),
			fmt.Sprintf("profile-%d", i), int32(1000*(i+1)))
		if i%3 == 0 {
			p.Condition = `principal.kind == 1 && request.max_output_tokens <= 4096`
		}
		ps = append(ps, p)
	}
	for i := range 5 {
		p := policytest.Allow("org-a", fmt.Sprintf("key-%02d", i), []string{fmt.Sprintf("api_key:key-%d", i)}, []string{"*"})
		p.Condition = `"batch" in principal.roles || !request.stream`
		ps = append(ps, p)
	}
	for i := range 4 {
		ps = append(ps, policytest.Deny("org-a", fmt.Sprintf("deny-%02d", i),
			[]string{fmt.Sprintf("role:blocked-%d", i)}, []string{"o1*", "gpt-3*"}))
	}
	deny := policytest.Deny("org-a", "deny-revoked", []string{"*"}, []string{"*"})
	deny.Condition = `principal.attributes.?clearance.orValue("") == "revoked" || model.vendor == "banned"`
	ps = append(ps, deny)
	eu := constrain("eu", func(p *policy.Policy) {
		p.AllowedEndpointRegions, p.MaskPersonalData = []string{"eu-*", "europe-*"}, true
	})
	eu.Condition = `principal.attributes.?jurisdiction.orValue("") == "EU"`
	phi := constrain("phi", func(p *policy.Policy) { p.RequireBAACoverage = true })
	phi.Condition = `principal.attributes.?handles_phi.orValue("") == "true" && endpoints.exists(e, e.provider != "internal")`
	ps = append(ps, eu, phi)
	return ps
}

var benchPrincipal = &identityv1.Principal{
	OrganizationId: "org-a", Subject: "user-3", TeamId: "team-7", ApiKeyId: "key-2",
	Kind:       identityv1.PrincipalKind_PRINCIPAL_KIND_USER,
	Roles:      []string{"reader", "role-3", "role-8"},
	Attributes: map[string]string{"jurisdiction": "EU", "cost_center": "42"},
}

var benchRequest = &policyv1.EvaluateRequest{
	Principal:  benchPrincipal,
	Model:      "gpt-4o",
	Request:    &policyv1.RequestFacts{MessageCount: 3, MaxOutputTokens: 512},
	ModelFacts: &policyv1.ModelFacts{Name: "gpt-4o", Vendor: "openai", LifecycleState: "approved"},
	Endpoints: []*policyv1.EndpointFacts{
		{Id: "use1", Region: "us-east-1", Provider: "openai"},
		{Id: "euw1", Region: "eu-west-1", Provider: "azure_openai"},
	},
}

func TestBenchPolicies(t *testing.T) {
	ps := benchPolicies()
	if len(ps) != 50 {
		t.Fatalf("%d policies, want 50", len(ps))
	}
	for _, p := range ps {
		if err := p.Validate(); err != nil {
			t.Fatal(err)
		}
	}
	d := policy.Compile(ps).Evaluate(benchRequest)
	if !d.Allowed() || len(d.AllowedEndpointIDs) != 1 || d.AllowedEndpointIDs[0] != "euw1" {
		t.Fatalf("the benchmark decides %v %v %v", d.Effect, d.Reasons, d.AllowedEndpointIDs)
	}
}

// BenchmarkEvaluate measures one decision over 50 policies with CEL conditions, and reports
// its p50 and p99 besides the mean (issue 4's target: p50 ≤ 20 µs in process).
func BenchmarkEvaluate(b *testing.B) {
	c := policy.Compile(benchPolicies())
	var took []time.Duration
	b.ReportAllocs()
	for b.Loop() {
		start := time.Now()
		d := c.Evaluate(benchRequest)
		took = append(took, time.Since(start))
		if !d.Allowed() {
			b.Fatal(d.Reasons)
		}
	}
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2].Nanoseconds())/1e3, "p50-µs")
	b.ReportMetric(float64(took[len(took)*99/100].Nanoseconds())/1e3, "p99-µs")
}

func BenchmarkExplain(b *testing.B) {
	c := policy.Compile(benchPolicies())
	b.ReportAllocs()
	for b.Loop() {
		if x := c.Explain(benchRequest); !x.Decision.Allowed() {
			b.Fatal(x.Decision.Reasons)
		}
	}
}

func BenchmarkCompile(b *testing.B) {
	ps := benchPolicies()
	b.ReportAllocs()
	for b.Loop() {
		policy.Compile(ps)
	}
}
