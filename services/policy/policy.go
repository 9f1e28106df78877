// Package policy decides whether a principal may use a model, and under which obligations.
//
// Access is denied unless a policy allows it, and any matching deny wins over every allow.
// Policies match on who asks (Subjects) and which model (Models); conditions on request
// facts (CEL) will extend matching in compiledPolicy.matches without changing the Store or
// the decision rules.
package policy

import (
	"context"
	"errors"
	"slices"
	"time"
)

// ErrNotFound is returned for a policy the organization does not have.
var ErrNotFound = errors.New("policy not found")

// Effect is what a matching policy does to a request, and the outcome of a decision.
type Effect string

// The effects.
const (
	EffectAllow Effect = "allow"
	EffectDeny  Effect = "deny"
)

// Policy grants or refuses models to subjects of one organization. ID is unique within the
// organization.
type Policy struct {
	ID             string
	OrganizationID string
	Description    string
	Effect         Effect
	// Subjects the policy applies to, any of: "*" (everyone), "subject:<s>", "team:<t>",
	// "role:<r>", "api_key:<id>".
	Subjects []string
	// Models the policy applies to, as path.Match patterns ("gpt-4*", "meta/*"), except that
	// "*" alone matches every model, "/" included.
	Models []string
	// Obligations of allow policies: the moderation profile to screen with, and the largest
	// max_output_tokens a request may ask for (0: no limit).
	ModerationProfile string
	MaxOutputTokens   int32
	// UpdateTime is set by the store when the policy's content last changed; it is ignored
	// on writes.
	UpdateTime time.Time
}

// SameContent reports whether p and q say the same thing: every field but UpdateTime.
func (p Policy) SameContent(q Policy) bool {
	return p.ID == q.ID && p.OrganizationID == q.OrganizationID && p.Description == q.Description &&
		p.Effect == q.Effect && slices.Equal(p.Subjects, q.Subjects) && slices.Equal(p.Models, q.Models) &&
		p.ModerationProfile == q.ModerationProfile && p.MaxOutputTokens == q.MaxOutputTokens
}

// Store persists policies. Every method is scoped to one organization: no call reads or
// writes another organization's policies. Each organization has a version, an opaque
// string that changes whenever any of its policies changes and never returns to an earlier
// value; decision caches key on it. Implementations pass policytest.TestStore and are safe
// for concurrent use. Returned values share no memory with the store.
type Store interface {
	// PutPolicy creates p, or replaces the policy of that organization and id, and reports
	// whether anything changed. Putting the same content again changes nothing: neither the
	// version nor UpdateTime. p.UpdateTime is ignored. An invalid p gives a *ValidationError.
	PutPolicy(ctx context.Context, p Policy) (changed bool, err error)
	// GetPolicy returns ErrNotFound when the organization has no such policy.
	GetPolicy(ctx context.Context, organizationID, id string) (Policy, error)
	// ListPolicies returns all the organization's policies ordered by id (byte order), and
	// the version they are the content of, read together.
	ListPolicies(ctx context.Context, organizationID string) ([]Policy, string, error)
	// DeletePolicy removes a policy, changing the version; ErrNotFound when there is none.
	DeletePolicy(ctx context.Context, organizationID, id string) error
	// Version returns the organization's current version, also when it has no policies.
	Version(ctx context.Context, organizationID string) (string, error)
}
