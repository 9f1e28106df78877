package policy

import (
	"fmt"
	"path"
	"regexp"
	"strings"
)

// Violation is one invalid field of a policy.
type Violation struct {
	Field       string
	Description string
}

// ValidationError lists every problem of an invalid policy at once.
type ValidationError struct {
	Violations []Violation
}

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Violations))
	for i, v := range e.Violations {
		parts[i] = v.Field + ": " + v.Description
	}
	return "invalid policy: " + strings.Join(parts, "; ")
}

var (
	identifier   = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._-]{0,127}$`)
	subjectValue = regexp.MustCompile(`^[^\s*]{1,256}$`)
	// A region, or a region prefix ending in '*' ("eu-*"; "*" alone: any region).
	regionPattern = regexp.MustCompile(`^([a-z0-9][a-z0-9-]{0,63})?\*?$`)
	modality      = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,31}$`)
	logGroup      = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._/-]{0,255}$`)
)

// SubjectKinds are the prefixes a subject selector may have before ':'.
var SubjectKinds = []string{"subject", "team", "role", "api_key"}

const (
	maxDescription = 1024
	maxPattern     = 256
)

// Validate reports every problem of p as a *ValidationError, or nil.
func (p Policy) Validate() error {
	var vs []Violation
	add := func(field, format string, args ...any) {
		vs = append(vs, Violation{Field: field, Description: fmt.Sprintf(format, args...)})
	}
	if !identifier.MatchString(p.ID) {
		add("id", "must match %s", identifier)
	}
	if !identifier.MatchString(p.OrganizationID) {
		add("organization_id", "must match %s", identifier)
	}
	if len(p.Description) > maxDescription {
		add("description", "must be at most %d bytes", maxDescription)
	}
	if p.Effect != EffectAllow && p.Effect != EffectDeny && p.Effect != EffectConstrain {
		add("effect", "must be allow, deny or constrain; got %q", p.Effect)
	}
	if len(p.Subjects) == 0 {
		add("subjects", "must name at least one subject (\"*\" for everyone)")
	}
	for i, s := range p.Subjects {
		if msg := checkSubject(s); msg != "" {
			add(fmt.Sprintf("subjects[%d]", i), "%s", msg)
		}
	}
	if len(p.Models) == 0 {
		add("models", "must name at least one model pattern (\"*\" for every model)")
	}
	for i, m := range p.Models {
		if _, err := path.Match(m, ""); err != nil || m == "" || len(m) > maxPattern {
			add(fmt.Sprintf("models[%d]", i), "must be a model name or path.Match pattern of at most %d bytes", maxPattern)
		}
	}
	if len(p.Condition) > MaxConditionBytes {
		add("condition", "must be at most %d bytes", MaxConditionBytes)
	} else if p.Condition != "" {
		if _, err := compileCondition(p.Condition); err != nil {
			add("condition", "invalid CEL expression: %v", err)
		}
	}
	if p.ModerationProfile != "" && !identifier.MatchString(p.ModerationProfile) {
		add("moderation_profile", "must match %s", identifier)
	}
	if p.MaxOutputTokens < 0 {
		add("max_output_tokens", "must not be negative")
	}
	for i, r := range p.AllowedEndpointRegions {
		if r == "" || !regionPattern.MatchString(r) {
			add(fmt.Sprintf("allowed_endpoint_regions[%d]", i), "must be a lower-case region, or a prefix ending in '*'")
		}
	}
	for i, m := range p.AllowedModalities {
		if !modality.MatchString(m) {
			add(fmt.Sprintf("allowed_modalities[%d]", i), "must match %s", modality)
		}
	}
	if d, ok := p.LogRetention.Limit(); ok && d < 0 {
		add("log_retention", "must not be negative")
	}
	if p.LogGroup != "" && !logGroup.MatchString(p.LogGroup) {
		add("log_group", "must match %s", logGroup)
	}
	if p.Effect == EffectDeny {
		zero := Obligations{}
		for _, f := range p.Obligations().set(zero) {
			add(f, "applies only to allow and constrain policies")
		}
	}
	if len(vs) > 0 {
		return &ValidationError{Violations: vs}
	}
	return nil
}

func checkSubject(s string) string {
	if s == "*" {
		return ""
	}
	kind, value, ok := strings.Cut(s, ":")
	known := false
	for _, k := range SubjectKinds {
		known = known || k == kind
	}
	if !ok || !known {
		return `must be "*" or one of subject:, team:, role:, api_key: followed by a value`
	}
	if !subjectValue.MatchString(value) {
		return "must have a value of 1 to 256 characters without spaces or '*'"
	}
	return ""
}
