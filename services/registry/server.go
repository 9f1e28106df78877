package registry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	registryv1 "github.com/fmgate/fmgate/gen/fmgate/registry/v1"
	"github.com/fmgate/fmgate/internal/apierr"
)

// Server implements registryv1.RegistryServiceServer.
type Server struct {
	registryv1.UnimplementedRegistryServiceServer
	store Store
	log   *slog.Logger
	cfg   Config
}

// Config holds the server's optional knobs; the zero value works.
type Config struct {
	// Now is the clock of recorded transitions and hosting requests; nil means time.Now.
	Now func() time.Time
	// HTTPClient calls vendors' catalogue APIs (ImportVendorModels); nil means a client with
	// a 30-second timeout.
	HTTPClient *http.Client
	// Credentials resolves an endpoint's credential reference for ImportVendorModels; nil
	// means EnvFileCredentials.
	Credentials CredentialResolver
}

// NewServer returns a server on store with the default Config.
func NewServer(store Store, log *slog.Logger) *Server {
	return NewServerWithConfig(store, log, Config{})
}

// NewServerWithConfig returns a server on store.
func NewServerWithConfig(store Store, log *slog.Logger, cfg Config) *Server {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	if cfg.Credentials == nil {
		cfg.Credentials = EnvFileCredentials{}
	}
	return &Server{store: store, log: log, cfg: cfg}
}

// Register adds the service to r. All-in-one and mesh make the same call.
func (s *Server) Register(r grpc.ServiceRegistrar) { registryv1.RegisterRegistryServiceServer(r, s) }

// ResolveRoute returns the model and the endpoints to try, in order: the model's own
// endpoints by priority, then those of each routable fallback model likewise (route.go).
func (s *Server) ResolveRoute(ctx context.Context, req *registryv1.ResolveRouteRequest) (*registryv1.ResolveRouteResponse, error) {
	var vs []apierr.FieldViolation
	if req.GetOrganizationId() == "" {
		vs = append(vs, apierr.FieldViolation{Field: "organization_id", Description: "is required"})
	}
	if req.GetModel() == "" {
		vs = append(vs, apierr.FieldViolation{Field: "model", Description: "is required"})
	}
	if len(vs) > 0 {
		return nil, apierr.InvalidArgument(vs...)
	}
	route, err := s.resolve(ctx, req.GetOrganizationId(), req.GetModel())
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &registryv1.ResolveRouteResponse{
		Model:          modelToProto(route.Model),
		Endpoints:      make([]*registryv1.Endpoint, len(route.Endpoints)),
		EndpointTiers:  route.Tiers,
		EndpointModels: route.EndpointModels,
		FallbackModels: make([]*registryv1.Model, len(route.Fallbacks)),
	}
	for i, e := range route.Endpoints {
		resp.Endpoints[i] = endpointToProto(e)
	}
	for i, m := range route.Fallbacks {
		resp.FallbackModels[i] = modelToProto(m)
	}
	if d, ok := DeprecationOf(route.Model); ok {
		resp.Deprecation = &registryv1.Deprecation{SuccessorModel: d.SuccessorModel, Message: d.Message}
	}
	return resp, nil
}

// resolve builds the route of the organization's model name. Only the requested model's own
// state decides whether there is a route: a fallback that is missing or not routable is
// skipped with a log line, never an error, so that a fallback retired by an admin does not
// take down the models that name it.
func (s *Server) resolve(ctx context.Context, org, name string) (Route, error) {
	m, err := s.store.GetModel(ctx, org, name)
	if err != nil {
		return Route{}, err
	}
	if err := CheckRoutable(m); err != nil {
		return Route{}, err
	}
	own, err := s.endpointsOf(ctx, m)
	if err != nil {
		return Route{}, err
	}
	b := routeBuilder{route: Route{Model: m}}
	b.add(m, own)
	for _, fb := range m.FallbackModels {
		fm, err := s.store.GetModel(ctx, org, fb)
		if errors.Is(err, ErrNotFound) {
			s.log.WarnContext(ctx, "fallback model skipped: it does not exist",
				"organization_id", org, "model", name, "fallback", fb)
			continue
		}
		if err != nil {
			return Route{}, err
		}
		if err := CheckRoutable(fm); err != nil {
			s.log.WarnContext(ctx, "fallback model skipped: it is not routable",
				"organization_id", org, "model", name, "fallback", fb, "lifecycle_state", string(fm.LifecycleState))
			continue
		}
		eps, err := s.endpointsOf(ctx, fm)
		if err != nil {
			return Route{}, err
		}
		b.addFallback(fm, eps)
	}
	if len(b.route.Endpoints) == 0 {
		return Route{}, &RouteError{Failure: FailureNoEndpoint, Model: m.Name, State: m.LifecycleState}
	}
	if len(own) == 0 {
		s.log.WarnContext(ctx, "model has no endpoint of its own; its fallbacks serve it",
			"organization_id", org, "model", name)
	}
	return b.route, nil
}

// endpointsOf returns the endpoints of m that exist, ordered by priority (OrderByPriority).
func (s *Server) endpointsOf(ctx context.Context, m Model) ([]Endpoint, error) {
	eps, err := s.store.GetEndpoints(ctx, m.OrganizationID, m.EndpointIDs)
	if err != nil {
		return nil, err
	}
	if len(eps) < len(m.EndpointIDs) {
		// A model may be declared before its endpoints; say so, but serve what exists.
		s.log.WarnContext(ctx, "model names endpoints that do not exist",
			"organization_id", m.OrganizationID, "model", m.Name, "declared", len(m.EndpointIDs), "found", len(eps))
	}
	OrderByPriority(eps)
	return eps, nil
}

// ListModels lists the organization's models that pass the request's filter, ordered by
// name; with no state filter, the routable ones.
func (s *Server) ListModels(ctx context.Context, req *registryv1.ListModelsRequest) (*registryv1.ListModelsResponse, error) {
	var vs []apierr.FieldViolation
	if req.GetOrganizationId() == "" {
		vs = append(vs, apierr.FieldViolation{Field: "organization_id", Description: "is required"})
	}
	if req.GetPageSize() < 0 {
		vs = append(vs, apierr.FieldViolation{Field: "page_size", Description: "must not be negative"})
	}
	filter := ModelFilter{States: RoutableStates, Vendor: req.GetVendor(), UseCaseTag: req.GetUseCaseTag()}
	if len(req.GetLifecycleStates()) > 0 {
		filter.States = nil
		for i, st := range req.GetLifecycleStates() {
			d := LifecycleStateFromProto(st)
			if d == "" {
				vs = append(vs, apierr.FieldViolation{Field: fmt.Sprintf("lifecycle_states[%d]", i), Description: "must be a defined state"})
			}
			filter.States = append(filter.States, d)
		}
	}
	if len(vs) > 0 {
		return nil, apierr.InvalidArgument(vs...)
	}
	// Page.Limit applies the default (50) and the cap (1000), as AIP-158 asks.
	page := Page{Size: int(req.GetPageSize()), Token: req.GetPageToken()}
	models, next, err := s.store.ListModels(ctx, req.GetOrganizationId(), filter, page)
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &registryv1.ListModelsResponse{Models: make([]*registryv1.Model, len(models)), NextPageToken: next}
	for i, m := range models {
		resp.Models[i] = modelToProto(m)
	}
	return resp, nil
}

// GetEndpoint returns one endpoint of the organization.
func (s *Server) GetEndpoint(ctx context.Context, req *registryv1.GetEndpointRequest) (*registryv1.GetEndpointResponse, error) {
	var vs []apierr.FieldViolation
	if req.GetOrganizationId() == "" {
		vs = append(vs, apierr.FieldViolation{Field: "organization_id", Description: "is required"})
	}
	if req.GetId() == "" {
		vs = append(vs, apierr.FieldViolation{Field: "id", Description: "is required"})
	}
	if len(vs) > 0 {
		return nil, apierr.InvalidArgument(vs...)
	}
	e, err := s.store.GetEndpoint(ctx, req.GetOrganizationId(), req.GetId())
	if err != nil {
		return nil, toStatus(err)
	}
	return &registryv1.GetEndpointResponse{Endpoint: endpointToProto(e)}, nil
}

// Reasons of the registry's errors, beside the RouteFailure values and StateError reasons.
const (
	ReasonModelNotFound          = "MODEL_NOT_FOUND"
	ReasonEndpointNotFound       = "ENDPOINT_NOT_FOUND"
	ReasonHostingRequestNotFound = "HOSTING_REQUEST_NOT_FOUND"
	ReasonAlreadyExists          = "ALREADY_EXISTS"
	ReasonEtagMismatch           = "ETAG_MISMATCH"
	ReasonInvalidTransition      = "INVALID_TRANSITION"
)

// withInfo returns a status with an ErrorInfo carrying reason and metadata.
func withInfo(code codes.Code, reason, msg string, metadata map[string]string) error {
	st, err := status.New(code, msg).WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: apierr.Domain, Metadata: metadata})
	if err != nil {
		return status.Error(code, msg)
	}
	return st.Err()
}

// toStatus turns a domain error into the gRPC status clients see. Errors it does not know
// pass through unchanged: the last server interceptor turns them into INTERNAL with a
// generic message and logs them once.
func toStatus(err error) error {
	var (
		nf *NotFoundError
		re *RouteError
		ve *ValidationError
		ae *AlreadyExistsError
		te *TransitionError
		se *StateError
	)
	switch {
	case err == nil:
		return nil
	case errors.As(err, &nf):
		reason := ReasonModelNotFound
		switch nf.Resource {
		case ResourceEndpoint:
			reason = ReasonEndpointNotFound
		case ResourceHostingRequest:
			reason = ReasonHostingRequestNotFound
		}
		return apierr.WithReason(codes.NotFound, reason, nf.Error())
	case errors.As(err, &re):
		md := map[string]string{"model": re.Model}
		if re.Successor != "" {
			md["successor_model"] = re.Successor
		}
		return withInfo(codes.FailedPrecondition, string(re.Failure), re.Error(), md)
	case errors.As(err, &ae):
		return apierr.WithReason(codes.AlreadyExists, ReasonAlreadyExists, ae.Error())
	case errors.Is(err, ErrEtagMismatch):
		return apierr.WithReason(codes.Aborted, ReasonEtagMismatch, err.Error()+": read it again and retry")
	case errors.As(err, &te):
		return withInfo(codes.FailedPrecondition, ReasonInvalidTransition, te.Error(),
			map[string]string{"from": te.From, "to": te.To})
	case errors.As(err, &se):
		return apierr.WithReason(codes.FailedPrecondition, se.Reason, se.Message)
	case errors.Is(err, ErrInvalidPageToken):
		return apierr.Field("page_token", "is not a token this service issued")
	case errors.As(err, &ve):
		fvs := make([]apierr.FieldViolation, len(ve.Violations))
		for i, v := range ve.Violations {
			fvs[i] = apierr.FieldViolation{Field: v.Field, Description: v.Description}
		}
		return apierr.InvalidArgument(fvs...)
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, context.Canceled.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, context.DeadlineExceeded.Error())
	}
	return err
}
