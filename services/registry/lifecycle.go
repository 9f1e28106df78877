package registry

import (
	"fmt"
	"slices"
	"time"
)

// transitions are the lifecycle's edges. A proposal is evaluated, then approved or sent back
// or withdrawn (retired); an approved model is deprecated before it is retired, so that its
// callers are warned first; a deprecation can be undone; retirement is final.
var transitions = map[LifecycleState][]LifecycleState{
	LifecycleProposed:   {LifecycleEvaluating, LifecycleRetired},
	LifecycleEvaluating: {LifecycleApproved, LifecycleProposed, LifecycleRetired},
	LifecycleApproved:   {LifecycleDeprecated},
	LifecycleDeprecated: {LifecycleApproved, LifecycleRetired},
	LifecycleRetired:    nil,
}

// CanTransition reports whether the lifecycle allows a model to go from one state to another.
func CanTransition(from, to LifecycleState) bool { return slices.Contains(transitions[from], to) }

// NextStates returns the states a model in state s may move to.
func NextStates(s LifecycleState) []LifecycleState { return slices.Clone(transitions[s]) }

// Transition is one recorded move of a model along its lifecycle.
type Transition struct {
	OrganizationID string
	Model          string
	From, To       LifecycleState
	Actor          string
	EvidenceNote   string
	Time           time.Time // UTC, microsecond precision (what Postgres keeps)
}

// TransitionError reports a transition the lifecycle forbids.
type TransitionError struct {
	Resource Resource
	Name     string
	From, To string
	Allowed  []string
}

func (e *TransitionError) Error() string {
	return fmt.Sprintf("%s %q cannot go from %s to %s; allowed: %v", e.Resource, e.Name, e.From, e.To, e.Allowed)
}

// Transition moves m to state to, returning the changed model and the record to keep, or a
// *TransitionError, or a *ValidationError for a missing actor or note.
func (m Model) Transition(to LifecycleState, actor, note string, at time.Time) (Model, Transition, error) {
	var vs violations
	if !to.Valid() {
		vs.add("to_state", "must be one of proposed, evaluating, approved, deprecated, retired")
	}
	checkActor(&vs, "actor", actor)
	if note == "" {
		vs.add("evidence_note", "is required")
	} else if len(note) > maxLongText {
		vs.add("evidence_note", "must be at most %d bytes", maxLongText)
	}
	if err := vs.err(); err != nil {
		return Model{}, Transition{}, err
	}
	if !CanTransition(m.LifecycleState, to) {
		allowed := make([]string, 0, 3)
		for _, s := range transitions[m.LifecycleState] {
			allowed = append(allowed, string(s))
		}
		return Model{}, Transition{}, &TransitionError{Resource: ResourceModel, Name: m.Name,
			From: string(m.LifecycleState), To: string(to), Allowed: allowed}
	}
	tr := Transition{OrganizationID: m.OrganizationID, Model: m.Name, From: m.LifecycleState, To: to,
		Actor: actor, EvidenceNote: note, Time: at.UTC().Truncate(time.Microsecond)}
	m.LifecycleState = to
	return m, tr, nil
}

func checkActor(vs *violations, field, actor string) {
	if actor == "" {
		vs.add(field, "is required")
	} else if len(actor) > maxText {
		vs.add(field, "must be at most %d bytes", maxText)
	}
}

// Deprecation is what callers of a deprecated model are told.
type Deprecation struct {
	SuccessorModel string
	Message        string
}

// DeprecationOf returns the warning for a deprecated model, and false for any other state.
func DeprecationOf(m Model) (Deprecation, bool) {
	if m.LifecycleState != LifecycleDeprecated {
		return Deprecation{}, false
	}
	d := Deprecation{SuccessorModel: m.Card.SuccessorModel}
	if d.SuccessorModel != "" {
		d.Message = fmt.Sprintf("model %q is deprecated and will be retired; use %q instead", m.Name, d.SuccessorModel)
	} else {
		d.Message = fmt.Sprintf("model %q is deprecated and will be retired", m.Name)
	}
	return d, true
}
