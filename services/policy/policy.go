// Package policy decides whether a principal may use a model, and under which obligations,
// and keeps the versioned policies it decides with.
//
// # Decisions
//
// A policy applies to a request when its subjects match the principal, its models match the
// model, and its condition (a CEL expression, see Condition) holds. Then:
//
//   - Any applying deny refuses the request, whatever allows it.
//   - Without an applying allow the request is refused: deny by default.
//   - Constrain policies neither grant nor refuse; they add their obligations to a request
//     that an allow grants. Jurisdiction packs (Packs) are made of them.
//   - A condition that fails to evaluate (a missing map key, the cost limit) fails closed:
//     in a deny or constrain policy it refuses the request, in an allow it grants nothing.
//
// # Obligations
//
// The obligations of every applying allow and constrain policy are merged:
//
//   - moderation_profile: the first non-empty one of the constrain policies in id order, else
//     of the allow policies in id order (a jurisdiction pack's profile wins over a grant's).
//   - max_output_tokens: the smallest non-zero one; a request asking for more is refused.
//   - allowed_endpoint_regions: the intersection of the lists that are set (a region must
//     satisfy every policy's list); entries are exact regions or prefixes ending in '*'. An
//     empty intersection refuses the request.
//   - allowed_modalities: the intersection of the lists that are set; an empty intersection,
//     or a request using a modality outside it, refuses the request.
//   - log_retention: the shortest one set (zero: keep nothing).
//   - log_group: the first non-empty one in policy id order.
//   - mask_personal_data, require_baa_coverage: true when any policy says so.
//
// When the request lists the endpoints that could serve it, the decision also lists those the
// merged obligations leave (region, BAA coverage), and refuses the request when none is left,
// saying why ("no endpoint of model "m" is in an allowed region (eu-*)").
//
// # History
//
// Every change of a policy makes a new revision (number, etag, time, author); deleting one
// records a deletion revision, and the history outlives the policy. Writes whose content
// equals the current one change nothing.
package policy

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"slices"
	"time"
)

// Errors of the store.
var (
	ErrNotFound      = errors.New("policy not found")
	ErrAlreadyExists = errors.New("policy already exists")
	// ErrConflict is returned when a write names an etag that is not the current one.
	ErrConflict = errors.New("policy etag does not match")
)

// Effect is what a matching policy does to a request, and the outcome of a decision.
type Effect string

// The effects.
const (
	EffectAllow     Effect = "allow"
	EffectDeny      Effect = "deny"
	EffectConstrain Effect = "constrain"
)

// Retention is how long generation logs may keep prompts and answers. The zero value sets
// no limit; RetainFor(0) keeps nothing. Retentions compare with ==.
type Retention struct {
	d   time.Duration
	set bool
}

// RetainFor returns a retention of d (not negative).
func RetainFor(d time.Duration) Retention { return Retention{d: d, set: true} }

// Limit returns the retention and whether there is one.
func (r Retention) Limit() (time.Duration, bool) { return r.d, r.set }

// Policy grants, refuses or constrains models to subjects of one organization. ID is unique
// within the organization.
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
	// Condition is a CEL expression of type bool over principal, model, request and
	// endpoints (see the proto's Policy.condition); empty always holds.
	Condition string

	// Obligations, of allow and constrain policies only.
	ModerationProfile      string
	MaxOutputTokens        int32 // 0: no limit
	AllowedEndpointRegions []string
	AllowedModalities      []string
	LogRetention           Retention
	LogGroup               string
	MaskPersonalData       bool
	RequireBAACoverage     bool

	// Set by the store on every write; ignored on input, except UpdatedBy, which names the
	// author of the write.
	Revision   int64
	Etag       string
	CreateTime time.Time
	UpdateTime time.Time
	UpdatedBy  string
}

// SameContent reports whether p and q say the same thing: every field but the ones the
// store sets (revision, etag, times, author).
func (p Policy) SameContent(q Policy) bool {
	return p.ID == q.ID && p.OrganizationID == q.OrganizationID && p.Description == q.Description &&
		p.Effect == q.Effect && slices.Equal(p.Subjects, q.Subjects) && slices.Equal(p.Models, q.Models) &&
		p.Condition == q.Condition && p.Obligations().equal(q.Obligations())
}

// Obligations returns the obligations p imposes.
func (p Policy) Obligations() Obligations {
	return Obligations{
		ModerationProfile: p.ModerationProfile, MaxOutputTokens: p.MaxOutputTokens,
		AllowedEndpointRegions: p.AllowedEndpointRegions, AllowedModalities: p.AllowedModalities,
		LogRetention: p.LogRetention, LogGroup: p.LogGroup,
		MaskPersonalData: p.MaskPersonalData, RequireBAACoverage: p.RequireBAACoverage,
	}
}

// SetObligations sets the obligations of p to o.
func (p *Policy) SetObligations(o Obligations) {
	p.ModerationProfile, p.MaxOutputTokens = o.ModerationProfile, o.MaxOutputTokens
	p.AllowedEndpointRegions, p.AllowedModalities = o.AllowedEndpointRegions, o.AllowedModalities
	p.LogRetention, p.LogGroup = o.LogRetention, o.LogGroup
	p.MaskPersonalData, p.RequireBAACoverage = o.MaskPersonalData, o.RequireBAACoverage
}

// Clone returns a copy of p that shares no memory with it.
func (p Policy) Clone() Policy {
	p.Subjects = slices.Clone(p.Subjects)
	p.Models = slices.Clone(p.Models)
	p.AllowedEndpointRegions = slices.Clone(p.AllowedEndpointRegions)
	p.AllowedModalities = slices.Clone(p.AllowedModalities)
	return p
}

// Etag returns the etag of revision rev of p's content: it changes with every revision,
// and two stores holding the same revision give the same etag.
func Etag(p Policy, rev int64) string {
	h := sha256.New()
	str := func(s string) {
		_ = binary.Write(h, binary.BigEndian, uint32(len(s)))
		h.Write([]byte(s))
	}
	strs := func(ss []string) {
		_ = binary.Write(h, binary.BigEndian, uint32(len(ss)))
		for _, s := range ss {
			str(s)
		}
	}
	str(p.OrganizationID)
	str(p.ID)
	_ = binary.Write(h, binary.BigEndian, rev)
	str(p.Description)
	str(string(p.Effect))
	strs(p.Subjects)
	strs(p.Models)
	str(p.Condition)
	str(p.ModerationProfile)
	_ = binary.Write(h, binary.BigEndian, p.MaxOutputTokens)
	strs(p.AllowedEndpointRegions)
	strs(p.AllowedModalities)
	d, set := p.LogRetention.Limit()
	_ = binary.Write(h, binary.BigEndian, int64(d))
	_ = binary.Write(h, binary.BigEndian, [3]bool{set, p.MaskPersonalData, p.RequireBAACoverage})
	str(p.LogGroup)
	return hex.EncodeToString(h.Sum(nil)[:12])
}

// Revision is one revision of a policy's history. A deletion's Policy is the content as
// deleted, with the deletion's revision number, time and author.
type Revision struct {
	Policy  Policy
	Deleted bool
}

// Change is what a write did. Before is nil when the write created the policy, After nil
// when it deleted it. Changed is false when the write found the content already in place;
// then Before and After are the same revision.
type Change struct {
	Before, After *Policy
	Changed       bool
}

// Store persists policies and their history. Every method is scoped to one organization:
// no call reads or writes another organization's policies. Each organization has a
// version, an opaque string that changes whenever any of its policies changes and never
// returns to an earlier value; decision caches key on it.
//
// Writes validate the policy (a *ValidationError names every bad field), set Revision,
// Etag, CreateTime, UpdateTime and take UpdatedBy as the author; a write that changes
// content makes exactly one new revision and bumps the version once, atomically.
// Implementations pass policytest.TestStore and are safe for concurrent use: of concurrent
// writes naming the same etag, exactly one succeeds. Returned values share no memory with
// the store.
type Store interface {
	// PutPolicy creates p, or replaces the content of the policy of that organization and
	// id whatever its etag. Putting the same content again changes nothing.
	PutPolicy(ctx context.Context, p Policy) (Change, error)
	// CreatePolicy creates p; ErrAlreadyExists when the organization has that id.
	CreatePolicy(ctx context.Context, p Policy) (Policy, error)
	// UpdatePolicy replaces the content of an existing policy: ErrNotFound when there is
	// none, ErrConflict when etag is not empty and not the current etag. The same content
	// changes nothing.
	UpdatePolicy(ctx context.Context, p Policy, etag string) (Change, error)
	// DeletePolicy removes a policy and records a deletion revision by updatedBy, returning
	// the policy as it was: ErrNotFound, or ErrConflict as UpdatePolicy.
	DeletePolicy(ctx context.Context, organizationID, id, etag, updatedBy string) (Policy, error)
	// GetPolicy returns ErrNotFound when the organization has no such policy.
	GetPolicy(ctx context.Context, organizationID, id string) (Policy, error)
	// ListPolicies returns all the organization's policies ordered by id (byte order), and
	// the version they are the content of, read together.
	ListPolicies(ctx context.Context, organizationID string) ([]Policy, string, error)
	// PagePolicies returns at most limit policies with ids after after, ordered by id.
	PagePolicies(ctx context.Context, organizationID, after string, limit int) ([]Policy, error)
	// ListRevisions returns at most limit revisions of a policy, newest first, whose numbers
	// are below before (0: from the newest); ErrNotFound when the id has no history.
	ListRevisions(ctx context.Context, organizationID, id string, before int64, limit int) ([]Revision, error)
	// Version returns the organization's current version, also when it has no policies.
	Version(ctx context.Context, organizationID string) (string, error)
}
