// Package registry is the source of truth for the models an organization has and the
// endpoints that serve them, and resolves a model name to the endpoints to try.
package registry

import (
	"context"
	"errors"
	"fmt"
	"slices"
)

// ErrNotFound is matched (errors.Is) by every "no such model or endpoint" error. Stores return
// it as a *NotFoundError so that the server can name the missing resource.
var ErrNotFound = errors.New("not found")

// ErrInvalidPageToken is returned by List methods for a token they did not issue.
var ErrInvalidPageToken = errors.New("invalid page token")

// ErrAlreadyExists is matched by every "that name is taken" error; stores return it as an
// *AlreadyExistsError.
var ErrAlreadyExists = errors.New("already exists")

// ErrEtagMismatch reports an update or delete whose etag no longer matches the record: someone
// changed it since the caller read it.
var ErrEtagMismatch = errors.New("etag mismatch")

// AlreadyExistsError reports that an organization already has a record of that name. It
// matches ErrAlreadyExists.
type AlreadyExistsError struct {
	Resource Resource
	Name     string
}

func (e *AlreadyExistsError) Error() string {
	return fmt.Sprintf("%s %q already exists", e.Resource, e.Name)
}

// Is makes errors.Is(err, ErrAlreadyExists) true.
func (e *AlreadyExistsError) Is(target error) bool { return target == ErrAlreadyExists }

// StateError reports an operation the record's current state forbids (other than a
// lifecycle transition, which is a *TransitionError).
type StateError struct {
	Resource Resource
	Name     string
	Reason   string // an ErrorInfo reason, UPPER_SNAKE_CASE
	Message  string
}

func (e *StateError) Error() string { return e.Message }

// Resource names a kind of registry record in errors.
type Resource string

// The resources a NotFoundError can name.
const (
	ResourceModel          Resource = "model"
	ResourceEndpoint       Resource = "endpoint"
	ResourceHostingRequest Resource = "hosting request"
)

// NotFoundError reports that an organization has no record of that name. It matches
// ErrNotFound.
type NotFoundError struct {
	Resource Resource
	Name     string
}

func (e *NotFoundError) Error() string { return fmt.Sprintf("%s %q not found", e.Resource, e.Name) }

// Is makes errors.Is(err, ErrNotFound) true.
func (e *NotFoundError) Is(target error) bool { return target == ErrNotFound }

// LifecycleState is where a model stands in the approval process.
type LifecycleState string

// The lifecycle states, in the order a model goes through them.
const (
	LifecycleProposed   LifecycleState = "proposed"
	LifecycleEvaluating LifecycleState = "evaluating"
	LifecycleApproved   LifecycleState = "approved"
	LifecycleDeprecated LifecycleState = "deprecated"
	LifecycleRetired    LifecycleState = "retired"
)

// Valid reports whether s is one of the defined states.
func (s LifecycleState) Valid() bool {
	switch s {
	case LifecycleProposed, LifecycleEvaluating, LifecycleApproved, LifecycleDeprecated, LifecycleRetired:
		return true
	}
	return false
}

// Routable reports whether requests may be sent to a model in state s: approved models, and
// deprecated ones until they are retired.
func (s LifecycleState) Routable() bool {
	return s == LifecycleApproved || s == LifecycleDeprecated
}

// RoutableStates are the states Routable accepts, for list filters.
var RoutableStates = []LifecycleState{LifecycleApproved, LifecycleDeprecated}

// Provider is the wire protocol an endpoint speaks.
type Provider string

// The providers dispatch knows.
const (
	ProviderOpenAI           Provider = "openai"
	ProviderOpenAICompatible Provider = "openai_compatible"
	ProviderAzureOpenAI      Provider = "azure_openai"
	ProviderAnthropic        Provider = "anthropic"
	ProviderBedrock          Provider = "bedrock"
	ProviderGemini           Provider = "gemini"
)

// Providers lists every defined provider.
var Providers = []Provider{ProviderOpenAI, ProviderOpenAICompatible, ProviderAzureOpenAI,
	ProviderAnthropic, ProviderBedrock, ProviderGemini}

// Valid reports whether p is one of the defined providers.
func (p Provider) Valid() bool { return slices.Contains(Providers, p) }

// Model is a model of an organization's catalogue. Name is unique within the organization.
type Model struct {
	OrganizationID        string
	Name                  string
	DisplayName           string
	Vendor                string
	LifecycleState        LifecycleState
	ContextWindow         int32
	InputPricePerMillion  float64 // US dollars per million input tokens
	OutputPricePerMillion float64 // US dollars per million output tokens
	// EndpointIDs are the endpoints that serve the model, in the order to try them within
	// one priority (Endpoint.Priority). They may name endpoints that do not exist (yet):
	// resolution skips those.
	EndpointIDs []string
	// FallbackModels name models of the same organization whose endpoints are tried, in
	// this order, after every endpoint of this model. Resolution skips names that do not
	// exist or are not routable, and does not follow a fallback's own fallbacks. At most
	// MaxFallbackModels, never the model itself.
	FallbackModels []string
	// Card is the rest of the model card.
	Card ModelCard
}

// MaxFallbackModels bounds Model.FallbackModels, and so the work of one resolution.
const MaxFallbackModels = 5

// Endpoint is one place a model is served. ID is unique within the organization.
type Endpoint struct {
	OrganizationID string
	ID             string
	Provider       Provider
	BaseURL        string
	// UpstreamModel is the model name the vendor expects.
	UpstreamModel string
	// CredentialRef says where dispatch finds the credential: "", "env:NAME" or
	// "file:/absolute/path". Never the secret itself.
	CredentialRef string
	// Region is where the endpoint serves; required for bedrock, whose requests are signed
	// for a region.
	Region string
	// Weight shares traffic among endpoints of one model with the same Priority, in
	// proportion to the weights: 0..MaxWeight, and 0 means 1 (EffectiveWeight).
	Weight int32
	// Priority orders a model's endpoints: 0..MaxPriority, and LOWER values are tried
	// FIRST. Endpoints of a higher value are tried only when every endpoint of a lower one
	// has failed. Equal priorities keep the model's listed order and share traffic by Weight.
	Priority int32
	// APIVersion is the vendor API version, where the vendor wants one; required for
	// azure_openai (its api-version query parameter).
	APIVersion string
	// CoveredByBAA says the vendor serving the endpoint has signed a business associate
	// agreement (HIPAA) with the organization. Policies read it as the endpoint fact
	// covered_by_baa. Left out of the etag's JSON when false, so that endpoints stored
	// before the field existed keep their etags.
	CoveredByBAA bool `json:",omitempty"`
}

// Bounds of Endpoint.Weight and Endpoint.Priority.
const (
	MaxWeight   = 1000
	MaxPriority = 100
)

// EffectiveWeight is the weight dispatch balances by: Weight, or 1 when it is 0.
func (e Endpoint) EffectiveWeight() int32 {
	if e.Weight == 0 {
		return 1
	}
	return e.Weight
}

// Page selects one page of a list ordered by key. The zero value is the first page of
// DefaultPageSize items.
type Page struct {
	Size  int    // 1..MaxPageSize; 0 means DefaultPageSize, larger values are capped
	Token string // "" for the first page, else a next-page token from the previous call
}

// Page sizes of list methods.
const (
	DefaultPageSize = 50
	MaxPageSize     = 1000
)

// Limit returns the number of items the page holds at most.
func (p Page) Limit() int {
	switch {
	case p.Size <= 0:
		return DefaultPageSize
	case p.Size > MaxPageSize:
		return MaxPageSize
	}
	return p.Size
}

// ModelFilter narrows ListModels. The zero value matches every model.
type ModelFilter struct {
	// States keeps models in one of these states; empty keeps all.
	States []LifecycleState
	// Vendor keeps models of this vendor; "" keeps all.
	Vendor string
	// UseCaseTag keeps models whose card carries this tag; "" keeps all.
	UseCaseTag string
}

// Match reports whether m passes the filter.
func (f ModelFilter) Match(m Model) bool {
	return (len(f.States) == 0 || slices.Contains(f.States, m.LifecycleState)) &&
		(f.Vendor == "" || m.Vendor == f.Vendor) &&
		(f.UseCaseTag == "" || slices.Contains(m.Card.UseCaseTags, f.UseCaseTag))
}

// ModelChange is what an UpdateModel callback returns: the new model and, when it changes
// the lifecycle state, the transition to record in the same transaction.
type ModelChange struct {
	Model      Model
	Transition *Transition
}

// Store persists models and endpoints. Every method is scoped to one organization: no call
// reads or writes another organization's records. Implementations pass
// registrytest.TestStore and are safe for concurrent use. Returned values share no memory
// with the store.
type Store interface {
	// PutModel creates m, or replaces the model of that organization and name. It is
	// idempotent: putting the same value again changes nothing. It returns a *ValidationError
	// for an invalid model. Endpoints named by m need not exist.
	PutModel(ctx context.Context, m Model) error
	// GetModel returns a *NotFoundError (ErrNotFound) when the organization has no such model.
	GetModel(ctx context.Context, organizationID, name string) (Model, error)
	// ListModels returns the organization's models that pass filter, ordered by name (byte
	// order), one page at a time, and the token of the next page ("" after the last page).
	// A token is valid only with the same organization and filter; a token the store did not
	// issue gives ErrInvalidPageToken.
	ListModels(ctx context.Context, organizationID string, filter ModelFilter, page Page) ([]Model, string, error)

	// PutEndpoint creates e, or replaces the endpoint of that organization and id, with the
	// same guarantees as PutModel.
	PutEndpoint(ctx context.Context, e Endpoint) error
	// GetEndpoint returns a *NotFoundError (ErrNotFound) when the organization has no such
	// endpoint.
	GetEndpoint(ctx context.Context, organizationID, id string) (Endpoint, error)
	// GetEndpoints returns the organization's endpoints with the given ids, in the order of
	// ids, leaving out ids the organization does not have. It never returns ErrNotFound.
	GetEndpoints(ctx context.Context, organizationID string, ids []string) ([]Endpoint, error)
	// ListEndpoints pages through the organization's endpoints ordered by id, as ListModels.
	ListEndpoints(ctx context.Context, organizationID string, page Page) ([]Endpoint, string, error)

	// CreateModel stores m, which must not exist: *AlreadyExistsError (ErrAlreadyExists)
	// otherwise, *ValidationError for an invalid model.
	CreateModel(ctx context.Context, m Model) error
	// UpdateModel reads the organization's model, calls fn with it and stores what fn
	// returns, atomically: no other write to the model happens in between, so fn may check
	// an etag. fn runs under the store's lock or row lock and must not call the store. fn's error is returned as is and nothing is written. The model's organization
	// and name cannot change (*ValidationError). When the change carries a Transition it is
	// recorded in the same transaction. It returns the model before and after.
	// *NotFoundError when the model does not exist.
	UpdateModel(ctx context.Context, organizationID, name string, fn func(current Model) (ModelChange, error)) (before, after Model, err error)
	// DeleteModel removes the model if check, called with it atomically, returns nil, and
	// returns what was removed. Its transitions stay. *NotFoundError when it does not exist.
	DeleteModel(ctx context.Context, organizationID, name string, check func(current Model) error) (Model, error)
	// ListTransitions pages through the transitions recorded for the organization's model
	// name, oldest first. The model need not exist any more.
	ListTransitions(ctx context.Context, organizationID, name string, page Page) ([]Transition, string, error)

	// CreateEndpoint, UpdateEndpoint and DeleteEndpoint are CreateModel, UpdateModel and
	// DeleteModel for endpoints.
	CreateEndpoint(ctx context.Context, e Endpoint) error
	UpdateEndpoint(ctx context.Context, organizationID, id string, fn func(current Endpoint) (Endpoint, error)) (before, after Endpoint, err error)
	DeleteEndpoint(ctx context.Context, organizationID, id string, check func(current Endpoint) error) (Endpoint, error)

	// CreateHostingRequest stores h, which must not exist (*AlreadyExistsError) and must
	// pass HostingRequest.ValidateNew (*ValidationError; a team is required).
	CreateHostingRequest(ctx context.Context, h HostingRequest) error
	// GetHostingRequest returns a *NotFoundError when the organization has no such request.
	GetHostingRequest(ctx context.Context, organizationID, id string) (HostingRequest, error)
	// ListHostingRequests pages through the organization's requests that pass filter,
	// ordered by id (which is creation order), as ListModels.
	ListHostingRequests(ctx context.Context, organizationID string, filter HostingFilter, page Page) ([]HostingRequest, string, error)
	// UpdateHostingRequest is UpdateModel for hosting requests; what fn returns must pass
	// HostingRequest.ValidateUpdate (the team cannot change).
	UpdateHostingRequest(ctx context.Context, organizationID, id string, fn func(current HostingRequest) (HostingRequest, error)) (before, after HostingRequest, err error)
}
