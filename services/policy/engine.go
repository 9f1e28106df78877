package policy

import (
	"cmp"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"

	identityv1 "github.com/fmgate/fmgate/gen/fmgate/identity/v1"
)

// Facts describe a generation request without its content.
type Facts struct {
	MessageCount    int32
	Stream          bool
	MaxOutputTokens int32 // 0: the caller set no limit
}

// Obligations are conditions an allowed request must be served under.
type Obligations struct {
	ModerationProfile string // "" when no policy names one
	MaxOutputTokens   int32  // 0: no limit
}

// Decision is the outcome of an evaluation.
type Decision struct {
	Effect Effect
	// Reasons say why, in words an administrator can act on, naming the policies.
	Reasons []string
	// PolicyIDs are the policies that decided: the matching denies when one matched, else
	// the matching allows.
	PolicyIDs   []string
	Obligations Obligations
}

// Allowed reports whether the request may proceed.
func (d Decision) Allowed() bool { return d.Effect == EffectAllow }

// Evaluate decides whether principal may use model with the given request facts under
// policies. It compiles the policies on every call: hold a Compiled to evaluate a set often.
func Evaluate(policies []Policy, principal *identityv1.Principal, model string, facts Facts) Decision {
	return Compile(policies).Evaluate(principal, model, facts)
}

// Compiled is a policy set prepared for evaluation. It is immutable and safe for
// concurrent use.
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
	subjects           []subjectSelector
	anyModel           bool
	models             []modelSelector
	moderationProfile  string
	maxOutputTokens    int32
}

// Compile prepares policies for evaluation. Policies are expected to be valid (stores only
// hold valid ones); a subject selector Compile does not understand matches no one.
func Compile(policies []Policy) *Compiled {
	c := &Compiled{policies: make([]compiledPolicy, 0, len(policies))}
	for _, p := range policies {
		cp := compiledPolicy{
			id: p.ID, organizationID: p.OrganizationID, effect: p.Effect,
			moderationProfile: p.ModerationProfile, maxOutputTokens: p.MaxOutputTokens,
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

// matches is where conditions on request facts will join subject and model matching.
func (cp *compiledPolicy) matches(p *identityv1.Principal, model string) bool {
	if cp.organizationID != p.GetOrganizationId() {
		return false
	}
	subject := false
	for _, s := range cp.subjects {
		if s.matches(p) {
			subject = true
			break
		}
	}
	if !subject {
		return false
	}
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

// Evaluate decides on one request: deny unless a policy allows it, any matching deny wins,
// and the obligations of the matching allows apply: the first moderation profile in policy
// id order and the smallest max_output_tokens. A request asking for more output tokens than
// that allows is denied.
func (c *Compiled) Evaluate(principal *identityv1.Principal, model string, facts Facts) Decision {
	var denies, allows []*compiledPolicy
	for i := range c.policies {
		cp := &c.policies[i]
		if !cp.matches(principal, model) {
			continue
		}
		if cp.effect == EffectDeny {
			denies = append(denies, cp)
		} else {
			allows = append(allows, cp)
		}
	}
	who := strconv.Quote(principal.GetSubject())
	what := strconv.Quote(model)

	if len(denies) > 0 {
		d := Decision{Effect: EffectDeny, Reasons: make([]string, len(denies)), PolicyIDs: make([]string, len(denies))}
		for i, cp := range denies {
			d.PolicyIDs[i] = cp.id
			d.Reasons[i] = "policy " + strconv.Quote(cp.id) + " denies model " + what + " to subject " + who
		}
		return d
	}
	if len(allows) == 0 {
		return Decision{Effect: EffectDeny, Reasons: []string{"no policy grants model " + what + " to subject " + who}}
	}

	var ob Obligations
	var limitedBy []string // the policies that set the smallest max_output_tokens
	for _, cp := range allows {
		if ob.ModerationProfile == "" {
			ob.ModerationProfile = cp.moderationProfile
		}
		switch n := cp.maxOutputTokens; {
		case n == 0:
		case ob.MaxOutputTokens == 0 || n < ob.MaxOutputTokens:
			ob.MaxOutputTokens, limitedBy = n, append(limitedBy[:0], cp.id)
		case n == ob.MaxOutputTokens:
			limitedBy = append(limitedBy, cp.id)
		}
	}
	if ob.MaxOutputTokens > 0 && facts.MaxOutputTokens > ob.MaxOutputTokens {
		return Decision{
			Effect: EffectDeny,
			Reasons: []string{fmt.Sprintf("max_output_tokens %d exceeds the limit of %d set by %s for model %s",
				facts.MaxOutputTokens, ob.MaxOutputTokens, policyList(limitedBy), what)},
			PolicyIDs:   limitedBy,
			Obligations: ob,
		}
	}
	d := Decision{Effect: EffectAllow, Reasons: make([]string, len(allows)), PolicyIDs: make([]string, len(allows)), Obligations: ob}
	for i, cp := range allows {
		d.PolicyIDs[i] = cp.id
		d.Reasons[i] = "policy " + strconv.Quote(cp.id) + " grants model " + what + " to subject " + who
	}
	return d
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
