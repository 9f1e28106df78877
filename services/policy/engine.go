package policy

import (
	"cmp"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/cel-go/cel"

	identityv1 "github.com/fmgate/fmgate/gen/fmgate/identity/v1"
	policyv1 "github.com/fmgate/fmgate/gen/fmgate/policy/v1"
)

// Obligations are conditions an allowed request must be served under (the package
// documentation gives the merge rules).
type Obligations struct {
	ModerationProfile      string // "" when no policy names one
	MaxOutputTokens        int32  // 0: no limit
	AllowedEndpointRegions []string
	AllowedModalities      []string
	LogRetention           Retention
	LogGroup               string
	MaskPersonalData       bool
	RequireBAACoverage     bool
}

func (o Obligations) equal(q Obligations) bool {
	return o.ModerationProfile == q.ModerationProfile && o.MaxOutputTokens == q.MaxOutputTokens &&
		slices.Equal(o.AllowedEndpointRegions, q.AllowedEndpointRegions) &&
		slices.Equal(o.AllowedModalities, q.AllowedModalities) && o.LogRetention == q.LogRetention &&
		o.LogGroup == q.LogGroup && o.MaskPersonalData == q.MaskPersonalData &&
		o.RequireBAACoverage == q.RequireBAACoverage
}

// set returns the names of the fields of o that differ from zero.
func (o Obligations) set(zero Obligations) []string {
	var fs []string
	add := func(cond bool, name string) {
		if cond {
			fs = append(fs, name)
		}
	}
	add(o.ModerationProfile != zero.ModerationProfile, "moderation_profile")
	add(o.MaxOutputTokens != zero.MaxOutputTokens, "max_output_tokens")
	add(len(o.AllowedEndpointRegions) > 0, "allowed_endpoint_regions")
	add(len(o.AllowedModalities) > 0, "allowed_modalities")
	add(o.LogRetention != zero.LogRetention, "log_retention")
	add(o.LogGroup != zero.LogGroup, "log_group")
	add(o.MaskPersonalData, "mask_personal_data")
	add(o.RequireBAACoverage, "require_baa_coverage")
	return fs
}

// Decision is the outcome of an evaluation. Its slices may share memory with the Compiled
// set that made it: read them, do not modify them.
type Decision struct {
	Effect Effect
	// Reasons say why, in words an administrator can act on, naming the policies; a
	// refusal by a denying policy quotes its description (reasonDescription).
	Reasons []string
	// PolicyIDs are the policies that decided: the matching denies when one matched, else
	// the matching allows, or the policies whose obligations refused the request.
	PolicyIDs   []string
	Obligations Obligations
	// AllowedEndpointIDs are, when the request listed endpoints, those the obligations leave,
	// in request order.
	AllowedEndpointIDs []string
}

// Allowed reports whether the request may proceed.
func (d Decision) Allowed() bool { return d.Effect == EffectAllow }

// ConditionResult is what a policy's condition gave.
type ConditionResult uint8

// The condition results.
const (
	ConditionAbsent ConditionResult = iota + 1 // no condition: holds
	ConditionTrue
	ConditionFalse
	ConditionError
)

// Trace is how one policy fared in an evaluation.
type Trace struct {
	PolicyID        string
	Effect          Effect
	Revision        int64
	SubjectsMatched bool
	ModelsMatched   bool
	Condition       ConditionResult
	ConditionError  string
	Fired           bool // subjects, models and condition held
}

// EndpointTrace says whether the obligations leave an endpoint, and why not.
type EndpointTrace struct {
	ID      string
	Allowed bool
	Reason  string
}

// Explanation is a decision and how it was reached.
type Explanation struct {
	Decision  Decision
	Policies  []Trace // every policy of the organization, in id order
	Endpoints []EndpointTrace
	Text      string
}

// Evaluate decides on req under policies. It compiles the policies on every call: hold a
// Compiled to evaluate a set often.
func Evaluate(policies []Policy, req *policyv1.EvaluateRequest) Decision {
	return Compile(policies).Evaluate(req)
}

// Compiled is a policy set prepared for evaluation, CEL conditions included. It is
// immutable and safe for concurrent use.
type Compiled struct {
	policies []compiledPolicy // ordered by id
}

type subjectKind uint8

const (
	anyone subjectKind = iota
	bySubject
	byTeam
	byRole
	byAPIKey
)

type subjectSelector struct {
	kind  subjectKind
	value string
}

type modelSelector struct {
	pattern string
	exact   bool // no wildcard: compare, do not match
}

type compiledPolicy struct {
	id, organizationID string
	effect             Effect
	revision           int64
	subjects           []subjectSelector
	anyModel           bool
	models             []modelSelector
	condition          cel.Program // nil: none
	conditionErr       error       // the stored condition no longer compiles: it fails
	obligations        Obligations
	// why is the policy's description as its refusals quote it (reasonDescription): "" or
	// ": " and the description.
	why string
}

// maxReasonDescription bounds, in bytes, the part of a denying policy's description that
// its refusal reasons quote: enough for a sentence saying why, short enough for an error
// message (descriptions may be up to 1024 bytes).
const maxReasonDescription = 200

// reasonDescription returns description as a refusal reason quotes it after the policy it
// describes: on one line, without its final full stop, at most maxReasonDescription bytes
// (cut at a word where it can be, marked "..."), after ": "; "" when there is none.
func reasonDescription(description string) string {
	d := strings.TrimRight(strings.Join(strings.Fields(description), " "), ".")
	if d == "" {
		return ""
	}
	if len(d) > maxReasonDescription {
		cut := maxReasonDescription - len("...")
		for cut > 0 && !utf8.RuneStart(d[cut]) {
			cut--
		}
		if sp := strings.LastIndexByte(d[:cut], ' '); sp > cut/2 {
			cut = sp
		}
		d = strings.TrimRight(d[:cut], " ,;:") + "..."
	}
	return ": " + d
}

// Compile prepares policies for evaluation. Policies are expected to be valid (stores only
// hold valid ones); a subject selector Compile does not understand matches no one, and a
// condition that does not compile fails at every evaluation, closed.
func Compile(policies []Policy) *Compiled {
	c := &Compiled{policies: make([]compiledPolicy, 0, len(policies))}
	for _, p := range policies {
		cp := compiledPolicy{
			id: p.ID, organizationID: p.OrganizationID, effect: p.Effect, revision: p.Revision,
			obligations: p.Clone().Obligations(), why: reasonDescription(p.Description),
		}
		for _, s := range p.Subjects {
			if sel, ok := compileSubject(s); ok {
				cp.subjects = append(cp.subjects, sel)
			}
		}
		for _, m := range p.Models {
			if m == "*" {
				cp.anyModel = true
				continue
			}
			cp.models = append(cp.models, modelSelector{pattern: m, exact: !strings.ContainsAny(m, `*?[\`)})
		}
		if p.Condition != "" {
			cp.condition, cp.conditionErr = compileCondition(p.Condition)
		}
		c.policies = append(c.policies, cp)
	}
	slices.SortFunc(c.policies, func(a, b compiledPolicy) int { return cmp.Compare(a.id, b.id) })
	return c
}

func compileSubject(s string) (subjectSelector, bool) {
	if s == "*" {
		return subjectSelector{kind: anyone}, true
	}
	kind, value, _ := strings.Cut(s, ":")
	switch kind {
	case "subject":
		return subjectSelector{kind: bySubject, value: value}, true
	case "team":
		return subjectSelector{kind: byTeam, value: value}, true
	case "role":
		return subjectSelector{kind: byRole, value: value}, true
	case "api_key":
		return subjectSelector{kind: byAPIKey, value: value}, true
	}
	return subjectSelector{}, false
}

func (s subjectSelector) matches(p *identityv1.Principal) bool {
	switch s.kind {
	case anyone:
		return true
	case bySubject:
		return p.GetSubject() == s.value
	case byTeam:
		return p.GetTeamId() == s.value
	case byAPIKey:
		return p.GetApiKeyId() == s.value
	case byRole:
		return slices.Contains(p.GetRoles(), s.value)
	}
	return false
}

func (m modelSelector) matches(model string) bool {
	if m.exact {
		return m.pattern == model
	}
	ok, _ := path.Match(m.pattern, model) // patterns were validated on write
	return ok
}

func (cp *compiledPolicy) subjectsMatch(p *identityv1.Principal) bool {
	for _, s := range cp.subjects {
		if s.matches(p) {
			return true
		}
	}
	return false
}

func (cp *compiledPolicy) modelsMatch(model string) bool {
	if cp.anyModel {
		return true
	}
	for _, m := range cp.models {
		if m.matches(model) {
			return true
		}
	}
	return false
}

var emptyRequest = &policyv1.RequestFacts{}

// input is one request as the engine reads it; the CEL activation is built on first use.
type input struct {
	req *policyv1.EvaluateRequest
	act *activation
}

func (in *input) activation() *activation {
	if in.act == nil {
		r := in.req
		mf := r.GetModelFacts()
		if mf.GetName() == "" {
			mf = &policyv1.ModelFacts{Name: r.GetModel(), Vendor: mf.GetVendor(), LifecycleState: mf.GetLifecycleState()}
		}
		rf := r.GetRequest()
		if rf == nil {
			rf = emptyRequest
		}
		principal := r.GetPrincipal()
		if principal == nil {
			principal = &identityv1.Principal{}
		}
		in.act = &activation{principal: principal, model: mf, request: rf, endpoints: r.GetEndpoints()}
	}
	return in.act
}

func (cp *compiledPolicy) evalCondition(in *input) (ConditionResult, error) {
	switch {
	case cp.conditionErr != nil:
		return ConditionError, fmt.Errorf("does not compile: %w", cp.conditionErr)
	case cp.condition == nil:
		return ConditionAbsent, nil
	}
	ok, err := eval(cp.condition, in.activation())
	switch {
	case err != nil:
		return ConditionError, err
	case ok:
		return ConditionTrue, nil
	}
	return ConditionFalse, nil
}

// Evaluate decides on one request (the package documentation gives the rules). req is
// expected to be valid: the server checks it.
func (c *Compiled) Evaluate(req *policyv1.EvaluateRequest) Decision {
	d, _ := c.decide(req, false)
	return d
}

// Explain decides on req as Evaluate does and says how.
func (c *Compiled) Explain(req *policyv1.EvaluateRequest) Explanation {
	d, x := c.decide(req, true)
	x.Decision = d
	x.Text = x.text(req)
	return x
}

// decide is Evaluate, and with explain, also records every policy's trace. Without it,
// matching stops at the first test that fails.
func (c *Compiled) decide(req *policyv1.EvaluateRequest, explain bool) (Decision, Explanation) {
	var x Explanation
	principal, model := req.GetPrincipal(), req.GetModel()
	in := &input{req: req}
	var denies, failed, allows, obliged []*compiledPolicy
	var failures []string
	for i := range c.policies {
		cp := &c.policies[i]
		if cp.organizationID != principal.GetOrganizationId() {
			continue
		}
		t := Trace{PolicyID: cp.id, Effect: cp.effect, Revision: cp.revision}
		t.SubjectsMatched = cp.subjectsMatch(principal)
		if t.SubjectsMatched || explain {
			t.ModelsMatched = cp.modelsMatch(model)
		}
		var condErr error
		if (t.SubjectsMatched && t.ModelsMatched) || explain {
			t.Condition, condErr = cp.evalCondition(in)
			if condErr != nil {
				t.ConditionError = condErr.Error()
			}
		}
		applies := t.SubjectsMatched && t.ModelsMatched
		t.Fired = applies && (t.Condition == ConditionAbsent || t.Condition == ConditionTrue)
		if explain {
			x.Policies = append(x.Policies, t)
		}
		switch {
		case applies && t.Condition == ConditionError && cp.effect != EffectAllow:
			failed = append(failed, cp)
			failures = append(failures, t.ConditionError)
		case !t.Fired:
		case cp.effect == EffectDeny:
			denies = append(denies, cp)
		case cp.effect == EffectAllow:
			allows = append(allows, cp)
			obliged = append(obliged, cp)
		default:
			obliged = append(obliged, cp)
		}
	}
	who := strconv.Quote(principal.GetSubject())
	what := strconv.Quote(model)

	if len(denies)+len(failed) > 0 {
		d := Decision{Effect: EffectDeny}
		for _, cp := range denies {
			d.PolicyIDs = append(d.PolicyIDs, cp.id)
			d.Reasons = append(d.Reasons, "policy "+strconv.Quote(cp.id)+" denies model "+what+" to subject "+who+cp.why)
		}
		for i, cp := range failed {
			d.PolicyIDs = append(d.PolicyIDs, cp.id)
			d.Reasons = append(d.Reasons, "policy "+strconv.Quote(cp.id)+" could not evaluate its condition ("+
				failures[i]+"), which refuses model "+what+" to subject "+who+cp.why)
		}
		return d, x
	}
	if len(allows) == 0 {
		return Decision{Effect: EffectDeny, Reasons: []string{"no policy grants model " + what + " to subject " + who}}, x
	}

	ob, limitedBy, sources := merge(obliged)
	refuse := func(ids []string, reason string) (Decision, Explanation) {
		return Decision{Effect: EffectDeny, Reasons: []string{reason}, PolicyIDs: ids, Obligations: ob}, x
	}
	facts := req.GetRequest()
	if ob.MaxOutputTokens > 0 && facts.GetMaxOutputTokens() > ob.MaxOutputTokens {
		return refuse(limitedBy, fmt.Sprintf("max_output_tokens %d exceeds the limit of %d set by %s for model %s",
			facts.GetMaxOutputTokens(), ob.MaxOutputTokens, policyList(limitedBy), what))
	}
	if sources.regions != nil && len(ob.AllowedEndpointRegions) == 0 {
		return refuse(sources.regions, fmt.Sprintf("%s allow no endpoint region in common for model %s",
			policyList(sources.regions), what))
	}
	if sources.modalities != nil {
		if len(ob.AllowedModalities) == 0 {
			return refuse(sources.modalities, fmt.Sprintf("%s allow no modality in common for model %s",
				policyList(sources.modalities), what))
		}
		for _, m := range facts.GetModalities() {
			if !slices.Contains(ob.AllowedModalities, m) {
				return refuse(sources.modalities, fmt.Sprintf("modality %q is not among the modalities (%s) %s allow for model %s",
					m, strings.Join(ob.AllowedModalities, ", "), policyList(sources.modalities), what))
			}
		}
	}

	d := Decision{Effect: EffectAllow, Reasons: make([]string, len(allows)), PolicyIDs: make([]string, len(allows)), Obligations: ob}
	for i, cp := range allows {
		d.PolicyIDs[i] = cp.id
		d.Reasons[i] = "policy " + strconv.Quote(cp.id) + " grants model " + what + " to subject " + who
	}
	if eps := req.GetEndpoints(); len(eps) > 0 {
		regionFail, baaFail := false, false
		for _, e := range eps {
			reason := ""
			switch {
			case len(ob.AllowedEndpointRegions) > 0 && !regionAllowed(e.GetRegion(), ob.AllowedEndpointRegions):
				regionFail = true
				reason = fmt.Sprintf("region %q is not among the allowed regions (%s)", e.GetRegion(), strings.Join(ob.AllowedEndpointRegions, ", "))
			case ob.RequireBAACoverage && !e.GetCoveredByBaa():
				baaFail = true
				reason = "not covered by a business associate agreement"
			default:
				d.AllowedEndpointIDs = append(d.AllowedEndpointIDs, e.GetId())
			}
			if explain {
				x.Endpoints = append(x.Endpoints, EndpointTrace{ID: e.GetId(), Allowed: reason == "", Reason: reason})
			}
		}
		if len(d.AllowedEndpointIDs) == 0 {
			var ids []string
			var why []string
			if regionFail {
				ids = append(ids, sources.regions...)
				why = append(why, "in an allowed region ("+strings.Join(ob.AllowedEndpointRegions, ", ")+")")
			}
			if baaFail {
				ids = append(ids, sources.baa...)
				why = append(why, "covered by a business associate agreement")
			}
			slices.Sort(ids)
			ids = slices.Compact(ids)
			return refuse(ids, "no endpoint of model "+what+" is "+strings.Join(why, " or "))
		}
	}
	return d, x
}

// obligationSources names the policies that set the obligations that can refuse a request.
type obligationSources struct {
	regions, modalities, baa []string
}

// merge merges the obligations of policies (in id order), returning also the policies
// that set the smallest max_output_tokens.
func merge(policies []*compiledPolicy) (Obligations, []string, obligationSources) {
	var ob Obligations
	var limitedBy []string
	var src obligationSources
	for _, effect := range []Effect{EffectConstrain, EffectAllow} {
		for _, cp := range policies {
			if cp.effect == effect && ob.ModerationProfile == "" {
				ob.ModerationProfile = cp.obligations.ModerationProfile
			}
		}
	}
	for _, cp := range policies {
		o := &cp.obligations
		switch n := o.MaxOutputTokens; {
		case n == 0:
		case ob.MaxOutputTokens == 0 || n < ob.MaxOutputTokens:
			ob.MaxOutputTokens, limitedBy = n, append(limitedBy[:0], cp.id)
		case n == ob.MaxOutputTokens:
			limitedBy = append(limitedBy, cp.id)
		}
		if len(o.AllowedEndpointRegions) > 0 {
			if src.regions == nil {
				ob.AllowedEndpointRegions = o.AllowedEndpointRegions
			} else {
				ob.AllowedEndpointRegions = intersectRegions(ob.AllowedEndpointRegions, o.AllowedEndpointRegions)
			}
			src.regions = append(src.regions, cp.id)
		}
		if len(o.AllowedModalities) > 0 {
			if src.modalities == nil {
				ob.AllowedModalities = o.AllowedModalities
			} else {
				var both []string
				for _, m := range ob.AllowedModalities {
					if slices.Contains(o.AllowedModalities, m) {
						both = append(both, m)
					}
				}
				ob.AllowedModalities = both
			}
			src.modalities = append(src.modalities, cp.id)
		}
		if d, ok := o.LogRetention.Limit(); ok {
			if cur, set := ob.LogRetention.Limit(); !set || d < cur {
				ob.LogRetention = RetainFor(d)
			}
		}
		if ob.LogGroup == "" {
			ob.LogGroup = o.LogGroup
		}
		ob.MaskPersonalData = ob.MaskPersonalData || o.MaskPersonalData
		if o.RequireBAACoverage {
			ob.RequireBAACoverage = true
			src.baa = append(src.baa, cp.id)
		}
	}
	return ob, limitedBy, src
}

// intersectRegions returns the regions that satisfy both a and b, each a list of exact
// regions and prefixes ending in '*'.
func intersectRegions(a, b []string) []string {
	var out []string
	for _, x := range a {
		for _, y := range b {
			if r, ok := intersectRegion(x, y); ok && !slices.Contains(out, r) {
				out = append(out, r)
			}
		}
	}
	return out
}

func intersectRegion(x, y string) (string, bool) {
	xp, xPrefix := strings.CutSuffix(x, "*")
	yp, yPrefix := strings.CutSuffix(y, "*")
	switch {
	case xPrefix && yPrefix && strings.HasPrefix(xp, yp):
		return x, true
	case xPrefix && yPrefix && strings.HasPrefix(yp, xp):
		return y, true
	case xPrefix && !yPrefix && strings.HasPrefix(y, xp):
		return y, true
	case !xPrefix && yPrefix && strings.HasPrefix(x, yp):
		return x, true
	case !xPrefix && !yPrefix && x == y:
		return x, true
	}
	return "", false
}

// regionAllowed reports whether region satisfies one of allowed. An endpoint without a
// region satisfies no restriction.
func regionAllowed(region string, allowed []string) bool {
	if region == "" {
		return false
	}
	for _, a := range allowed {
		if p, ok := strings.CutSuffix(a, "*"); ok {
			if strings.HasPrefix(region, p) {
				return true
			}
		} else if a == region {
			return true
		}
	}
	return false
}

func policyList(ids []string) string {
	q := make([]string, len(ids))
	for i, id := range ids {
		q[i] = strconv.Quote(id)
	}
	if len(q) == 1 {
		return "policy " + q[0]
	}
	return "policies " + strings.Join(q, ", ")
}

var conditionWords = map[ConditionResult]string{
	ConditionAbsent: "no condition", ConditionTrue: "condition holds", ConditionFalse: "condition does not hold",
}

// text tells the explanation in words, one sentence per line.
func (x Explanation) text(req *policyv1.EvaluateRequest) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Subject %q of organization %q asks for model %q.\n",
		req.GetPrincipal().GetSubject(), req.GetPrincipal().GetOrganizationId(), req.GetModel())
	if len(x.Policies) == 0 {
		b.WriteString("The organization has no policies.\n")
	}
	for _, t := range x.Policies {
		var parts []string
		parts = append(parts, map[bool]string{true: "subjects match", false: "subjects do not match"}[t.SubjectsMatched])
		parts = append(parts, map[bool]string{true: "models match", false: "models do not match"}[t.ModelsMatched])
		if t.Condition == ConditionError {
			parts = append(parts, "condition failed: "+t.ConditionError)
		} else {
			parts = append(parts, conditionWords[t.Condition])
		}
		verdict := "does not apply"
		if t.Fired {
			verdict = map[Effect]string{EffectAllow: "grants", EffectDeny: "refuses", EffectConstrain: "adds its obligations"}[t.Effect]
		}
		fmt.Fprintf(&b, "Policy %q (%s, revision %d): %s; it %s.\n", t.PolicyID, t.Effect, t.Revision, strings.Join(parts, ", "), verdict)
	}
	for _, e := range x.Endpoints {
		if e.Allowed {
			fmt.Fprintf(&b, "Endpoint %q may serve the request.\n", e.ID)
		} else {
			fmt.Fprintf(&b, "Endpoint %q may not serve the request: %s.\n", e.ID, e.Reason)
		}
	}
	fmt.Fprintf(&b, "Decision: %s.\n", x.Decision.Effect)
	for _, r := range x.Decision.Reasons {
		b.WriteString(strings.ToUpper(r[:1]) + r[1:] + ".\n")
	}
	if d, ok := x.Decision.Obligations.LogRetention.Limit(); ok {
		fmt.Fprintf(&b, "Logs may keep the request for %s.\n", d.Round(time.Second))
	}
	return b.String()
}
