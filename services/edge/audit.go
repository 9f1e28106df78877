package edge

import (
	"context"
	"math"
	"strconv"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	identityv1 "github.com/fmgate/fmgate/gen/fmgate/identity/v1"
	moderationv1 "github.com/fmgate/fmgate/gen/fmgate/moderation/v1"
	policyv1 "github.com/fmgate/fmgate/gen/fmgate/policy/v1"
	registryv1 "github.com/fmgate/fmgate/gen/fmgate/registry/v1"
	typev1 "github.com/fmgate/fmgate/gen/fmgate/type/v1"
	"github.com/fmgate/fmgate/internal/audit"
)

// AuditService is the service name of the edge's audit chain.
const AuditService = "edge"

// Audit actions the edge records.
const (
	ActionGeneration = "generation"
	ActionEmbedding  = "embedding"
	ActionRefused    = "generation.refused"
)

// Recorder takes the edge's audit events; *audit.Recorder implements it. Record must not
// wait longer than a bounded time: it is called before the answer is returned.
type Recorder interface {
	Record(ctx context.Context, e audit.Event) error
}

// generationDetails is the Details of the edge's events: an audit.Generation and the ids of
// the policies that decided. It holds no prompt or answer text, and no credential.
type generationDetails struct {
	audit.Generation
	PolicyIDs []string `json:"policy_ids,omitempty"`
}

// auditRecord is what the edge knows of one generation when it records it.
type auditRecord struct {
	action    string
	principal *identityv1.Principal
	model     string
	route     *registryv1.ResolveRouteResponse
	decision  *policyv1.EvaluateResponse
	findings  []audit.Finding
	endpoint  string
	usage     *typev1.Usage
	finish    typev1.FinishReason
	outcome   string
}

// record sends one audit event to the recorder. It never fails the request: a failure is
// logged at Error with the number of events lost so far, and counted.
func (s *Server) record(ctx context.Context, r auditRecord) {
	if s.d.Audit == nil {
		return
	}
	g := generationDetails{
		Generation: audit.Generation{
			Model:         r.model,
			Endpoint:      r.endpoint,
			PolicyVerdict: verdictOf(r.decision),
			PolicyVersion: r.decision.GetPolicyVersion(),
			Obligations:   obligationsOf(r.decision.GetObligations()),
			Findings:      r.findings,
			InputTokens:   r.usage.GetInputTokens(),
			OutputTokens:  r.usage.GetOutputTokens(),
			CostMicros:    costMicros(r.route.GetModel(), r.usage),
			Currency:      "USD",
			Outcome:       r.outcome,
		},
		PolicyIDs: r.decision.GetPolicyIds(),
	}
	if r.finish != typev1.FinishReason_FINISH_REASON_UNSPECIFIED {
		g.FinishedReason = enumName(r.finish.String(), "FINISH_REASON_")
	}
	p := r.principal
	e := audit.Event{
		OrganizationID: p.GetOrganizationId(),
		Actor:          audit.Actor{Subject: p.GetSubject(), Kind: principalKind(p)},
		Action:         r.action,
		Resource:       audit.Resource{Type: "model", ID: r.model},
		Details:        audit.JSON(g),
	}
	// The caller hanging up does not erase the record; the trace id still comes from ctx,
	// and the recorder's own enqueue timeout bounds the wait.
	if err := s.d.Audit.Record(context.WithoutCancel(ctx), e); err != nil {
		lost := s.auditLost.Add(1)
		s.d.Log.ErrorContext(ctx, "audit event not recorded", "organization_id", e.OrganizationID,
			"action", e.Action, "model", r.model, "error", err.Error(), "audit_events_lost", lost)
	}
}

// refused records a refusal after authentication: the key's scope, policy denial, an
// unaccepted licence, quota exhaustion or blocked input. Other errors (a service
// unavailable, a bad request) are not decisions about a generation and are not recorded.
func (s *Server) refused(ctx context.Context, p *identityv1.Principal, model string, route *registryv1.ResolveRouteResponse,
	decision *policyv1.EvaluateResponse, findings []audit.Finding, outcome string,
) {
	s.record(ctx, auditRecord{
		action: ActionRefused, principal: p, model: model, route: route, decision: decision,
		findings: findings, outcome: outcome,
	})
}

// quotaRefusal reports whether err is quota's refusal (not a failure to reach it).
func quotaRefusal(err error) bool { return status.Code(err) == codes.ResourceExhausted }

// audit returns the record of an admitted request, before dispatch.
func (a *admitted) audit(action string) auditRecord {
	return auditRecord{
		action: action, principal: a.principal, model: a.route.GetModel().GetName(), route: a.route,
		decision: a.decision, findings: append([]audit.Finding(nil), a.findings...),
	}
}

// outcomeOf names how a generation ended: the status code in lower case when it failed,
// else the outcome already noted ("blocked"), else "ok".
func outcomeOf(err error, noted string) string {
	switch {
	case err != nil:
		return strings.ToLower(status.Code(err).String())
	case noted != "":
		return noted
	}
	return "ok"
}

func verdictOf(d *policyv1.EvaluateResponse) string {
	switch {
	case d == nil:
		return "" // refused before policy was asked (the key's scope)
	case d.GetDecision() == policyv1.Decision_DECISION_ALLOW:
		return "allow"
	}
	return "deny"
}

// obligationsOf lists the decision's obligations as "name=value" strings.
func obligationsOf(o *policyv1.Obligations) []string {
	var out []string
	if o.GetModerationProfile() != "" {
		out = append(out, "moderation_profile="+o.GetModerationProfile())
	}
	for _, r := range o.GetAllowedEndpointRegions() {
		out = append(out, "endpoint_region="+r)
	}
	if o.GetMaxOutputTokens() > 0 {
		out = append(out, "max_output_tokens="+strconv.Itoa(int(o.GetMaxOutputTokens())))
	}
	for _, m := range o.GetAllowedModalities() {
		out = append(out, "modality="+m)
	}
	if o.GetMaskPersonalData() {
		out = append(out, "mask_personal_data=true")
	}
	if o.GetRequireBaaCoverage() {
		out = append(out, "require_baa_coverage=true")
	}
	if o.GetLogRetention() != nil {
		out = append(out, "log_retention="+o.GetLogRetention().AsDuration().String())
	}
	return out
}

// mergeFindings adds more to have, summing the counts of the same (detector, stage, action).
func mergeFindings(have, more []audit.Finding) []audit.Finding {
	for _, f := range more {
		merged := false
		for i := range have {
			if have[i].Detector == f.Detector && have[i].Stage == f.Stage && have[i].Action == f.Action {
				have[i].Count += f.Count
				merged = true
				break
			}
		}
		if !merged {
			have = append(have, f)
		}
	}
	return have
}

// findingsOf turns moderation findings of one stage into audit findings, merged by
// (detector, action): what and how often, never the text.
func findingsOf(stage string, in []*moderationv1.Finding) []audit.Finding {
	var out []audit.Finding
	for _, f := range in {
		out = mergeFindings(out, []audit.Finding{{
			Detector: f.GetDetector(), Stage: stage, Action: enumName(f.GetAction().String(), "ACTION_"),
			Count: max(int(f.GetCount()), 1),
		}})
	}
	return out
}

// costMicros is the generation's cost in millionths of a US dollar, from the model's prices
// per million tokens: tokens × price-per-million / 10⁶ dollars = tokens × price micro-dollars.
func costMicros(m *registryv1.Model, u *typev1.Usage) int64 {
	c := float64(u.GetInputTokens())*m.GetInputPricePerMillion() + float64(u.GetOutputTokens())*m.GetOutputPricePerMillion()
	switch {
	case c <= 0 || math.IsNaN(c):
		return 0
	case c >= math.MaxInt64:
		return math.MaxInt64
	}
	return int64(math.Round(c))
}

func principalKind(p *identityv1.Principal) string {
	if p.GetKind() == identityv1.PrincipalKind_PRINCIPAL_KIND_UNSPECIFIED {
		return ""
	}
	return enumName(p.GetKind().String(), "PRINCIPAL_KIND_")
}

func enumName(s, prefix string) string { return strings.ToLower(strings.TrimPrefix(s, prefix)) }
