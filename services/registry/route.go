package registry

import (
	"cmp"
	"fmt"
	"slices"
)

// RouteFailure says why a model that exists cannot be routed to. Its values are the
// ErrorInfo reasons clients see.
type RouteFailure string

// The ways a route can fail.
const (
	FailureNotRoutable RouteFailure = "MODEL_NOT_ROUTABLE" // proposed or evaluating
	FailureRetired     RouteFailure = "MODEL_RETIRED"
	FailureNoEndpoint  RouteFailure = "NO_ENDPOINT" // routable, but no endpoint exists
)

// RouteError reports a model that exists but cannot serve requests.
type RouteError struct {
	Failure RouteFailure
	Model   string
	State   LifecycleState
	// Successor is the model's successor, when its card names one.
	Successor string
}

func (e *RouteError) Error() string {
	switch e.Failure {
	case FailureRetired:
		if e.Successor != "" {
			return fmt.Sprintf("model %q is retired and can no longer be used; use %q instead", e.Model, e.Successor)
		}
		return fmt.Sprintf("model %q is retired and can no longer be used", e.Model)
	case FailureNoEndpoint:
		return fmt.Sprintf("model %q has no endpoint to serve it", e.Model)
	}
	return fmt.Sprintf("model %q is %s; only approved or deprecated models can be used", e.Model, e.State)
}

// Route is a model and the endpoints to try, in order: the model's own endpoints ordered by
// priority, then each routable fallback model's endpoints ordered the same way, each
// endpoint once. Dispatch balances by weight among consecutive endpoints of one model with
// the same priority, and moves on to the next group when a whole group fails.
type Route struct {
	Model     Model
	Endpoints []Endpoint
	// Tiers has one entry per endpoint: endpoints of one model with one priority share a
	// tier, and tiers rise with each priority group and each model, so that dispatch never
	// balances a fallback model's endpoints against the primary's.
	Tiers []int32
	// EndpointModels has one entry per endpoint: the name of the model it was routed for,
	// Model.Name or a fallback's. An endpoint several of them list counts for the first.
	EndpointModels []string
	// Fallbacks are the fallback models that contributed at least one endpoint, in route
	// order, so that callers can apply their own terms (such as their licences) to them.
	Fallbacks []Model
}

// OrderByPriority sorts eps by Priority, lowest (tried first) first, keeping the given
// order among equal priorities.
func OrderByPriority(eps []Endpoint) {
	slices.SortStableFunc(eps, func(a, b Endpoint) int { return cmp.Compare(a.Priority, b.Priority) })
}

// routeBuilder builds a route, adding the requested model then each fallback, each
// endpoint id once: an endpoint shared by a model and its fallback is tried, and counts,
// where it first appears.
type routeBuilder struct {
	route Route
	tier  int32
	seen  map[string]bool
}

// add appends model m's endpoints, already ordered by priority, in tiers of their own, and
// reports whether any was new. The first model added is the requested one.
func (b *routeBuilder) add(m Model, eps []Endpoint) bool {
	if b.seen == nil {
		b.seen = make(map[string]bool)
	}
	if len(b.route.Endpoints) > 0 {
		b.tier++ // a new model starts a new tier
	}
	first := true
	var prio int32
	for _, e := range eps {
		if b.seen[e.ID] {
			continue
		}
		if !first && e.Priority != prio {
			b.tier++
		}
		first, prio = false, e.Priority
		b.seen[e.ID] = true
		b.route.Endpoints = append(b.route.Endpoints, e)
		b.route.Tiers = append(b.route.Tiers, b.tier)
		b.route.EndpointModels = append(b.route.EndpointModels, m.Name)
	}
	return !first
}

// addFallback appends a fallback model's endpoints as add does, and its card when it
// contributed any.
func (b *routeBuilder) addFallback(m Model, eps []Endpoint) {
	if b.add(m, eps) {
		b.route.Fallbacks = append(b.route.Fallbacks, m)
	}
}

// CheckRoutable returns a *RouteError when m's lifecycle state forbids routing to it.
func CheckRoutable(m Model) error {
	switch {
	case m.LifecycleState == LifecycleRetired:
		return &RouteError{Failure: FailureRetired, Model: m.Name, State: m.LifecycleState, Successor: m.Card.SuccessorModel}
	case !m.LifecycleState.Routable():
		return &RouteError{Failure: FailureNotRoutable, Model: m.Name, State: m.LifecycleState}
	}
	return nil
}
