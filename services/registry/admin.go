package registry

import (
	"context"
	"errors"
	"fmt"

	registryv1 "github.com/fmgate/fmgate/gen/fmgate/registry/v1"
	"github.com/fmgate/fmgate/internal/apierr"
)

// The admin RPCs of models and endpoints. Each mutating RPC answers with the record before
// and after the change, so that the admin layer in front of them can write the audit event.

// required adds a violation for each empty value, by field name, in order.
func required(fields ...string) []apierr.FieldViolation {
	var vs []apierr.FieldViolation
	for i := 0; i+1 < len(fields); i += 2 {
		if fields[i+1] == "" {
			vs = append(vs, apierr.FieldViolation{Field: fields[i], Description: "is required"})
		}
	}
	return vs
}

func checkPageSize(vs []apierr.FieldViolation, size int32) []apierr.FieldViolation {
	if size < 0 {
		vs = append(vs, apierr.FieldViolation{Field: "page_size", Description: "must not be negative"})
	}
	return vs
}

// prefixed names a record's invalid fields by their path in the request ("model.base_url"),
// and turns every other error into its status.
func prefixed(err error, prefix string) error {
	var ve *ValidationError
	if errors.As(err, &ve) {
		fvs := make([]apierr.FieldViolation, len(ve.Violations))
		for i, v := range ve.Violations {
			fvs[i] = apierr.FieldViolation{Field: prefix + v.Field, Description: v.Description}
		}
		return apierr.InvalidArgument(fvs...)
	}
	return toStatus(err)
}

func checkEtag(resource Resource, name, want, got string) error {
	if want != "" && want != got {
		return fmt.Errorf("%s %q changed since it was read: %w", resource, name, ErrEtagMismatch)
	}
	return nil
}

// CreateModel adds a model, PROPOSED.
func (s *Server) CreateModel(ctx context.Context, req *registryv1.CreateModelRequest) (*registryv1.CreateModelResponse, error) {
	in := req.GetModel()
	if in == nil {
		return nil, apierr.Field("model", "is required")
	}
	m := ModelFromProto(in)
	switch in.GetLifecycleState() {
	case registryv1.LifecycleState_LIFECYCLE_STATE_UNSPECIFIED, registryv1.LifecycleState_LIFECYCLE_STATE_PROPOSED:
		m.LifecycleState = LifecycleProposed
	default:
		return nil, apierr.Field("model.lifecycle_state", "new models start as proposed; move them with TransitionModel")
	}
	if err := s.store.CreateModel(ctx, m); err != nil {
		return nil, prefixed(err, "model.")
	}
	return &registryv1.CreateModelResponse{After: modelToProto(m.Clone())}, nil
}

// GetModel returns a model in any state.
func (s *Server) GetModel(ctx context.Context, req *registryv1.GetModelRequest) (*registryv1.GetModelResponse, error) {
	if vs := required("organization_id", req.GetOrganizationId(), "name", req.GetName()); len(vs) > 0 {
		return nil, apierr.InvalidArgument(vs...)
	}
	m, err := s.store.GetModel(ctx, req.GetOrganizationId(), req.GetName())
	if err != nil {
		return nil, toStatus(err)
	}
	return &registryv1.GetModelResponse{Model: modelToProto(m)}, nil
}

// UpdateModel changes the fields the mask names.
func (s *Server) UpdateModel(ctx context.Context, req *registryv1.UpdateModelRequest) (*registryv1.UpdateModelResponse, error) {
	in := req.GetModel()
	vs := required("model.organization_id", in.GetOrganizationId(), "model.name", in.GetName())
	sets, mvs := maskSetters(req.GetUpdateMask().GetPaths(), modelPaths, modelFixedPaths)
	if vs = append(vs, mvs...); len(vs) > 0 {
		return nil, apierr.InvalidArgument(vs...)
	}
	src := ModelFromProto(in)
	before, after, err := s.store.UpdateModel(ctx, in.GetOrganizationId(), in.GetName(), func(cur Model) (ModelChange, error) {
		if err := checkEtag(ResourceModel, cur.Name, in.GetEtag(), cur.Etag()); err != nil {
			return ModelChange{}, err
		}
		next := cur.Clone()
		for _, set := range sets {
			set(&next, src)
		}
		return ModelChange{Model: next.Clone()}, nil
	})
	if err != nil {
		return nil, prefixed(err, "model.")
	}
	return &registryv1.UpdateModelResponse{Before: modelToProto(before), After: modelToProto(after)}, nil
}

// Reasons of StateErrors.
const (
	ReasonModelInUse           = "MODEL_IN_USE"
	ReasonSuccessorNotRoutable = "SUCCESSOR_NOT_ROUTABLE"
)

// DeleteModel removes a proposed or retired model. Approved and deprecated models serve
// traffic and evaluating ones are under review: they are retired first, which is recorded.
func (s *Server) DeleteModel(ctx context.Context, req *registryv1.DeleteModelRequest) (*registryv1.DeleteModelResponse, error) {
	if vs := required("organization_id", req.GetOrganizationId(), "name", req.GetName()); len(vs) > 0 {
		return nil, apierr.InvalidArgument(vs...)
	}
	before, err := s.store.DeleteModel(ctx, req.GetOrganizationId(), req.GetName(), func(cur Model) error {
		if err := checkEtag(ResourceModel, cur.Name, req.GetEtag(), cur.Etag()); err != nil {
			return err
		}
		if cur.LifecycleState != LifecycleProposed && cur.LifecycleState != LifecycleRetired {
			return &StateError{Resource: ResourceModel, Name: cur.Name, Reason: ReasonModelInUse,
				Message: fmt.Sprintf("model %q is %s; only proposed or retired models can be deleted", cur.Name, cur.LifecycleState)}
		}
		return nil
	})
	if err != nil {
		return nil, toStatus(err)
	}
	return &registryv1.DeleteModelResponse{Before: modelToProto(before)}, nil
}

// TransitionModel moves a model along its lifecycle and records the transition.
func (s *Server) TransitionModel(ctx context.Context, req *registryv1.TransitionModelRequest) (*registryv1.TransitionModelResponse, error) {
	vs := required("organization_id", req.GetOrganizationId(), "name", req.GetName())
	to := LifecycleStateFromProto(req.GetToState())
	if to == "" {
		vs = append(vs, apierr.FieldViolation{Field: "to_state", Description: "must be a defined state"})
	}
	if len(vs) > 0 {
		return nil, apierr.InvalidArgument(vs...)
	}
	org, name := req.GetOrganizationId(), req.GetName()
	if to == LifecycleDeprecated {
		// Callers are told to move to the successor: it must be able to take them. Checked
		// before the update (a store's update callback cannot read the store); a successor
		// retired in between is caught by ResolveRoute's own checks.
		if err := s.checkSuccessor(ctx, org, name); err != nil {
			return nil, err
		}
	}
	var tr Transition
	before, after, err := s.store.UpdateModel(ctx, org, name, func(cur Model) (ModelChange, error) {
		if err := checkEtag(ResourceModel, cur.Name, req.GetEtag(), cur.Etag()); err != nil {
			return ModelChange{}, err
		}
		next, t, err := cur.Transition(to, req.GetActor(), req.GetEvidenceNote(), s.cfg.Now())
		if err != nil {
			return ModelChange{}, err
		}
		tr = t
		return ModelChange{Model: next, Transition: &t}, nil
	})
	if err != nil {
		return nil, toStatus(err)
	}
	return &registryv1.TransitionModelResponse{Before: modelToProto(before), After: modelToProto(after),
		Transition: transitionToProto(tr)}, nil
}

func (s *Server) checkSuccessor(ctx context.Context, org, name string) error {
	m, err := s.store.GetModel(ctx, org, name)
	if err != nil {
		return toStatus(err)
	}
	succ := m.Card.SuccessorModel
	if succ == "" {
		return nil
	}
	sm, err := s.store.GetModel(ctx, org, succ)
	if err == nil && sm.LifecycleState == LifecycleApproved {
		return nil
	}
	return toStatus(&StateError{Resource: ResourceModel, Name: name, Reason: ReasonSuccessorNotRoutable,
		Message: fmt.Sprintf("successor model %q of %q must exist and be approved before %q is deprecated", succ, name, name)})
}

// ListModelTransitions pages through a model's history, oldest first.
func (s *Server) ListModelTransitions(ctx context.Context, req *registryv1.ListModelTransitionsRequest) (*registryv1.ListModelTransitionsResponse, error) {
	vs := required("organization_id", req.GetOrganizationId(), "name", req.GetName())
	if vs = checkPageSize(vs, req.GetPageSize()); len(vs) > 0 {
		return nil, apierr.InvalidArgument(vs...)
	}
	trs, next, err := s.store.ListTransitions(ctx, req.GetOrganizationId(), req.GetName(),
		Page{Size: int(req.GetPageSize()), Token: req.GetPageToken()})
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &registryv1.ListModelTransitionsResponse{NextPageToken: next}
	for _, t := range trs {
		resp.Transitions = append(resp.Transitions, transitionToProto(t))
	}
	return resp, nil
}

// CreateEndpoint adds an endpoint.
func (s *Server) CreateEndpoint(ctx context.Context, req *registryv1.CreateEndpointRequest) (*registryv1.CreateEndpointResponse, error) {
	if req.GetEndpoint() == nil {
		return nil, apierr.Field("endpoint", "is required")
	}
	e := EndpointFromProto(req.GetEndpoint())
	if err := s.store.CreateEndpoint(ctx, e); err != nil {
		return nil, prefixed(err, "endpoint.")
	}
	return &registryv1.CreateEndpointResponse{After: endpointToProto(e)}, nil
}

// ListEndpoints pages through the organization's endpoints.
func (s *Server) ListEndpoints(ctx context.Context, req *registryv1.ListEndpointsRequest) (*registryv1.ListEndpointsResponse, error) {
	vs := required("organization_id", req.GetOrganizationId())
	if vs = checkPageSize(vs, req.GetPageSize()); len(vs) > 0 {
		return nil, apierr.InvalidArgument(vs...)
	}
	eps, next, err := s.store.ListEndpoints(ctx, req.GetOrganizationId(), Page{Size: int(req.GetPageSize()), Token: req.GetPageToken()})
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &registryv1.ListEndpointsResponse{NextPageToken: next}
	for _, e := range eps {
		resp.Endpoints = append(resp.Endpoints, endpointToProto(e))
	}
	return resp, nil
}

// UpdateEndpoint changes the fields the mask names.
func (s *Server) UpdateEndpoint(ctx context.Context, req *registryv1.UpdateEndpointRequest) (*registryv1.UpdateEndpointResponse, error) {
	in := req.GetEndpoint()
	vs := required("endpoint.organization_id", in.GetOrganizationId(), "endpoint.id", in.GetId())
	sets, mvs := maskSetters(req.GetUpdateMask().GetPaths(), endpointPaths, endpointFixedPaths)
	if vs = append(vs, mvs...); len(vs) > 0 {
		return nil, apierr.InvalidArgument(vs...)
	}
	src := EndpointFromProto(in)
	before, after, err := s.store.UpdateEndpoint(ctx, in.GetOrganizationId(), in.GetId(), func(cur Endpoint) (Endpoint, error) {
		if err := checkEtag(ResourceEndpoint, cur.ID, in.GetEtag(), cur.Etag()); err != nil {
			return Endpoint{}, err
		}
		for _, set := range sets {
			set(&cur, src)
		}
		return cur, nil
	})
	if err != nil {
		return nil, prefixed(err, "endpoint.")
	}
	return &registryv1.UpdateEndpointResponse{Before: endpointToProto(before), After: endpointToProto(after)}, nil
}

// DeleteEndpoint removes an endpoint; models that name it skip it when resolved.
func (s *Server) DeleteEndpoint(ctx context.Context, req *registryv1.DeleteEndpointRequest) (*registryv1.DeleteEndpointResponse, error) {
	if vs := required("organization_id", req.GetOrganizationId(), "id", req.GetId()); len(vs) > 0 {
		return nil, apierr.InvalidArgument(vs...)
	}
	before, err := s.store.DeleteEndpoint(ctx, req.GetOrganizationId(), req.GetId(), func(cur Endpoint) error {
		return checkEtag(ResourceEndpoint, cur.ID, req.GetEtag(), cur.Etag())
	})
	if err != nil {
		return nil, toStatus(err)
	}
	return &registryv1.DeleteEndpointResponse{Before: endpointToProto(before)}, nil
}
