package registry

import (
	"slices"
	"time"
)

// HostingState is where a dedicated-hosting request stands.
type HostingState string

// The hosting states. A request is submitted, then approved or rejected by an admin; an
// approved request is provisioned, then active.
const (
	HostingSubmitted    HostingState = "submitted"
	HostingApproved     HostingState = "approved"
	HostingRejected     HostingState = "rejected"
	HostingProvisioning HostingState = "provisioning"
	HostingActive       HostingState = "active"
)

// HostingStates lists every hosting state.
var HostingStates = []HostingState{HostingSubmitted, HostingApproved, HostingRejected, HostingProvisioning, HostingActive}

// Valid reports whether s is one of the defined states.
func (s HostingState) Valid() bool { return slices.Contains(HostingStates, s) }

var hostingTransitions = map[HostingState][]HostingState{
	HostingSubmitted:    {HostingApproved, HostingRejected},
	HostingApproved:     {HostingProvisioning},
	HostingProvisioning: {HostingActive},
}

// HostingRequest asks for a model to be hosted for the organization alone. ID is unique
// within the organization and sorts in creation order.
type HostingRequest struct {
	OrganizationID    string
	ID                string
	Requester         string // the requester's subject
	Model             string // a registry model name or a vendor model id
	RequestsPerMinute int32
	TokensPerMinute   int64
	Region            string
	Justification     string
	State             HostingState
	// DecidedBy and DecisionNote are the admin who approved or rejected the request, and why;
	// DecideTime is when (zero before the decision).
	DecidedBy    string
	DecisionNote string
	DecideTime   time.Time
	// UpdatedBy and StatusNote are who made the last state change and their note.
	UpdatedBy  string
	StatusNote string
	CreateTime time.Time
	UpdateTime time.Time
	// TeamID is the team the request is made for, set at creation and never changed.
	// Left out of the etag's JSON when empty, as for requests stored before teams were
	// recorded, so that those keep their etags.
	TeamID string `json:",omitempty"`
}

// Etag identifies the content of h, as Model.Etag.
func (h HostingRequest) Etag() string { return etagOf(h) }

// HostingFilter narrows ListHostingRequests. The zero value matches every request.
type HostingFilter struct {
	States    []HostingState // empty keeps all
	Requester string         // "" keeps all
	TeamID    string         // "" keeps all
}

// Match reports whether h passes the filter.
func (f HostingFilter) Match(h HostingRequest) bool {
	return (len(f.States) == 0 || slices.Contains(f.States, h.State)) &&
		(f.Requester == "" || f.Requester == h.Requester) &&
		(f.TeamID == "" || f.TeamID == h.TeamID)
}

// ValidateNew reports every problem of a request about to be created, as a
// *ValidationError, or nil: its fields (validate) and a missing team (a request stored before
// teams were recorded has none and can still be decided).
func (h HostingRequest) ValidateNew() error {
	var vs violations
	if h.TeamID == "" {
		vs.add("team_id", "is required")
	}
	return h.validate(vs)
}

// ValidateUpdate reports every problem of h as the change of cur: its fields (validate) and
// a change of team, which is fixed at creation.
func (h HostingRequest) ValidateUpdate(cur HostingRequest) error {
	var vs violations
	if h.TeamID != cur.TeamID {
		vs.add("team_id", "cannot change")
	}
	return h.validate(vs)
}

func (h HostingRequest) validate(vs violations) error {
	checkOrganization(&vs, h.OrganizationID)
	if h.TeamID != "" && !identifier.MatchString(h.TeamID) {
		vs.add("team_id", "must match %s", identifier)
	}
	if h.ID == "" {
		vs.add("id", "is required")
	} else if !identifier.MatchString(h.ID) {
		vs.add("id", "must match %s", identifier)
	}
	checkActor(&vs, "requester", h.Requester)
	if h.Model == "" {
		vs.add("model", "is required")
	} else if len(h.Model) > maxText {
		vs.add("model", "must be at most %d bytes", maxText)
	}
	if h.RequestsPerMinute < 0 {
		vs.add("requests_per_minute", "must not be negative")
	}
	if h.TokensPerMinute < 0 {
		vs.add("tokens_per_minute", "must not be negative")
	}
	if h.RequestsPerMinute == 0 && h.TokensPerMinute == 0 {
		vs.add("requests_per_minute", "expected load is required: requests_per_minute or tokens_per_minute")
	}
	if h.Region == "" {
		vs.add("region", "is required")
	} else if !identifier.MatchString(h.Region) {
		vs.add("region", "must match %s", identifier)
	}
	if h.Justification == "" {
		vs.add("justification", "is required")
	} else if len(h.Justification) > maxLongText {
		vs.add("justification", "must be at most %d bytes", maxLongText)
	}
	if !h.State.Valid() {
		vs.add("state", "must be one of submitted, approved, rejected, provisioning, active; got %q", h.State)
	}
	if len(h.DecisionNote) > maxLongText {
		vs.add("decision_note", "must be at most %d bytes", maxLongText)
	}
	if len(h.StatusNote) > maxLongText {
		vs.add("status_note", "must be at most %d bytes", maxLongText)
	}
	return vs.err()
}

// Transition moves h to state to on behalf of actor, or returns a *TransitionError (or a
// *ValidationError for a missing actor, or a rejection without a note). Approval and
// rejection are decisions: they record the decider, note and time.
func (h HostingRequest) Transition(to HostingState, actor, note string, at time.Time) (HostingRequest, error) {
	var vs violations
	field := "actor"
	if to == HostingApproved || to == HostingRejected {
		field = "decided_by"
	}
	checkActor(&vs, field, actor)
	if to == HostingRejected && note == "" {
		vs.add("note", "is required to reject: the requester reads it")
	}
	if len(note) > maxLongText {
		vs.add("note", "must be at most %d bytes", maxLongText)
	}
	if err := vs.err(); err != nil {
		return HostingRequest{}, err
	}
	if !slices.Contains(hostingTransitions[h.State], to) {
		allowed := []string{}
		for _, s := range hostingTransitions[h.State] {
			allowed = append(allowed, string(s))
		}
		return HostingRequest{}, &TransitionError{Resource: ResourceHostingRequest, Name: h.ID,
			From: string(h.State), To: string(to), Allowed: allowed}
	}
	at = at.UTC().Truncate(time.Microsecond)
	if to == HostingApproved || to == HostingRejected {
		h.DecidedBy, h.DecisionNote, h.DecideTime = actor, note, at
	}
	h.State, h.UpdatedBy, h.StatusNote, h.UpdateTime = to, actor, note, at
	return h, nil
}
