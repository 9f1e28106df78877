package policy

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
)

// ErrUnknownPack is returned for a pack name no built-in pack has.
var ErrUnknownPack = errors.New("unknown pack")

// PackParameter is one parameter of a pack.
type PackParameter struct {
	Name, Description, Default string
	// Valid is what a value must match; parameters are spliced into CEL string literals
	// and region lists, so they admit no quotes, spaces or backslashes.
	Valid *regexp.Regexp
}

// Pack is a built-in jurisdiction pack: a set of ordinary policies, written from Go code,
// whose ids start with the pack's name. Version increases whenever what Policies writes
// changes.
type Pack struct {
	Name        string
	Version     int32
	Description string
	Parameters  []PackParameter
	// Policies returns the pack's policies for org with every parameter set.
	policies func(org string, params map[string]string) []Policy
}

var (
	attrName    = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]{0,63}$`)
	attrValue   = regexp.MustCompile(`^[a-zA-Z0-9_.:-]{1,64}$`)
	regionsList = regexp.MustCompile(`^[a-z0-9*-]+(,[a-z0-9*-]+)*$`)
)

// attrIs is a CEL test that principal attribute name equals value; a principal without the
// attribute does not satisfy it (and does not make it fail).
func attrIs(name, value string) string {
	return fmt.Sprintf(`principal.attributes.?%s.orValue("") == %q`, name, value)
}

// Packs are the built-in jurisdiction packs, in name order.
var Packs = []Pack{
	{
		Name: "ccpa", Version: 1,
		Description: "CCPA: personal data of California residents is masked before it leaves fmgate, and no prompt is retained.",
		Parameters: []PackParameter{
			{Name: "state_attribute", Description: "principal attribute holding the state", Default: "state", Valid: attrName},
			{Name: "residency_attribute", Description: "principal attribute holding the residency", Default: "residency", Valid: attrName},
			{Name: "value", Description: "the value meaning California", Default: "CA", Valid: attrValue},
			{Name: "moderation_profile", Description: "a moderation profile that masks personal data", Default: "pii-mask", Valid: identifier},
		},
		policies: func(org string, p map[string]string) []Policy {
			return []Policy{{
				ID: "ccpa-california-residents", OrganizationID: org, Effect: EffectConstrain,
				Description: "CCPA pack v1: California residents' personal data is masked and prompts are not retained.",
				Subjects:    []string{"*"}, Models: []string{"*"},
				Condition:         attrIs(p["state_attribute"], p["value"]) + " || " + attrIs(p["residency_attribute"], p["value"]),
				ModerationProfile: p["moderation_profile"], MaskPersonalData: true, LogRetention: RetainFor(0),
			}}
		},
	},
	{
		Name: "gdpr", Version: 1,
		Description: "GDPR: EU principals are served only by endpoints in EU regions, and their personal data is masked before it reaches a vendor.",
		Parameters: []PackParameter{
			{Name: "attribute", Description: "principal attribute holding the jurisdiction", Default: "jurisdiction", Valid: attrName},
			{Name: "value", Description: "the value meaning the EU", Default: "EU", Valid: attrValue},
			{Name: "regions", Description: "comma-separated regions or prefixes ending in '*'", Default: "eu-*,europe-*", Valid: regionsList},
			{Name: "moderation_profile", Description: "a moderation profile that masks personal data", Default: "pii-mask", Valid: identifier},
		},
		policies: func(org string, p map[string]string) []Policy {
			return []Policy{{
				ID: "gdpr-eu-principals", OrganizationID: org, Effect: EffectConstrain,
				Description: "GDPR pack v1: EU principals only reach endpoints in EU regions, with personal data masked.",
				Subjects:    []string{"*"}, Models: []string{"*"},
				Condition:         attrIs(p["attribute"], p["value"]),
				ModerationProfile: p["moderation_profile"], MaskPersonalData: true,
				AllowedEndpointRegions: strings.Split(p["regions"], ","),
			}}
		},
	},
	{
		Name: "hipaa", Version: 1,
		Description: "HIPAA: principals handling protected health information reach only endpoints covered by a business associate agreement.",
		Parameters: []PackParameter{
			{Name: "attribute", Description: "principal attribute marking those who handle PHI", Default: "handles_phi", Valid: attrName},
			{Name: "value", Description: "the value meaning yes", Default: "true", Valid: attrValue},
		},
		policies: func(org string, p map[string]string) []Policy {
			phi := attrIs(p["attribute"], p["value"])
			return []Policy{
				{
					ID: "hipaa-baa-endpoints-only", OrganizationID: org, Effect: EffectConstrain,
					Description: "HIPAA pack v1: requests of principals handling PHI go only to endpoints covered by a BAA.",
					Subjects:    []string{"*"}, Models: []string{"*"}, Condition: phi,
					RequireBAACoverage: true,
				},
				{
					// Fails closed when the caller sends no endpoint facts: no endpoint is known
					// to be covered.
					ID: "hipaa-deny-without-baa", OrganizationID: org, Effect: EffectDeny,
					Description: "HIPAA pack v1: refuses principals handling PHI a model no BAA-covered endpoint serves.",
					Subjects:    []string{"*"}, Models: []string{"*"},
					Condition: phi + " && !endpoints.exists(e, e.covered_by_baa)",
				},
			}
		},
	},
}

// FindPack returns the built-in pack of that name; ErrUnknownPack otherwise.
func FindPack(name string) (Pack, error) {
	for _, p := range Packs {
		if p.Name == name {
			return p, nil
		}
	}
	return Pack{}, fmt.Errorf("%w %q", ErrUnknownPack, name)
}

// Policies returns the policies the pack writes into org with params (unset parameters
// take their defaults); a *ValidationError names each bad or unknown parameter as
// "parameters.<name>".
func (k Pack) Policies(org string, params map[string]string) ([]Policy, error) {
	all := map[string]string{}
	var vs []Violation
	for _, name := range slices.Sorted(maps.Keys(params)) {
		if !slices.ContainsFunc(k.Parameters, func(p PackParameter) bool { return p.Name == name }) {
			vs = append(vs, Violation{Field: "parameters." + name, Description: "is not a parameter of pack " + k.Name})
		}
	}
	for _, p := range k.Parameters {
		v, ok := params[p.Name]
		if !ok || v == "" {
			v = p.Default
		}
		if !p.Valid.MatchString(v) {
			vs = append(vs, Violation{Field: "parameters." + p.Name, Description: "must match " + p.Valid.String()})
		}
		all[p.Name] = v
	}
	if len(vs) > 0 {
		return nil, &ValidationError{Violations: vs}
	}
	ps := k.policies(org, all)
	for _, p := range ps {
		if err := p.Validate(); err != nil {
			return nil, fmt.Errorf("pack %s policy %s: %w", k.Name, p.ID, err)
		}
	}
	return ps, nil
}
