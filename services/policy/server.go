package policy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	policyv1 "github.com/fmgate/fmgate/gen/fmgate/policy/v1"
	"github.com/fmgate/fmgate/internal/apierr"
)

var tracer = otel.Tracer("github.com/fmgate/fmgate/services/policy")

// Server implements policyv1.PolicyServiceServer.
type Server struct {
	policyv1.UnimplementedPolicyServiceServer
	store Store
	log   *slog.Logger

	// sets caches each organization's compiled policies under the version they were read
	// at, so that an evaluation costs one Version read while nothing changes.
	mu   sync.RWMutex
	sets map[string]*policySet
}

type policySet struct {
	version  string
	compiled *Compiled
}

// NewServer returns a server evaluating the policies of store.
func NewServer(store Store, log *slog.Logger) *Server {
	return &Server{store: store, log: log, sets: map[string]*policySet{}}
}

// Register adds the service to r. All-in-one and mesh make the same call.
func (s *Server) Register(r grpc.ServiceRegistrar) { policyv1.RegisterPolicyServiceServer(r, s) }

// Evaluate decides on one request. A denial is a normal response.
func (s *Server) Evaluate(ctx context.Context, req *policyv1.EvaluateRequest) (*policyv1.EvaluateResponse, error) {
	var vs []apierr.FieldViolation
	bad := func(field, desc string) { vs = append(vs, apierr.FieldViolation{Field: field, Description: desc}) }
	p := req.GetPrincipal()
	if p.GetOrganizationId() == "" {
		bad("principal.organization_id", "is required")
	}
	if p.GetSubject() == "" {
		bad("principal.subject", "is required")
	}
	if req.GetModel() == "" {
		bad("model", "is required")
	}
	if req.GetRequest().GetMaxOutputTokens() < 0 {
		bad("request.max_output_tokens", "must not be negative")
	}
	if req.GetRequest().GetMessageCount() < 0 {
		bad("request.message_count", "must not be negative")
	}
	if len(vs) > 0 {
		return nil, apierr.InvalidArgument(vs...)
	}

	ctx, span := tracer.Start(ctx, "policy.Evaluate")
	defer span.End()
	set, err := s.policySet(ctx, p.GetOrganizationId())
	if err != nil {
		return nil, toStatus(err)
	}
	f := req.GetRequest()
	d := set.compiled.Evaluate(p, req.GetModel(), Facts{
		MessageCount: f.GetMessageCount(), Stream: f.GetStream(), MaxOutputTokens: f.GetMaxOutputTokens(),
	})
	span.SetAttributes(
		attribute.Bool("fmgate.policy.allowed", d.Allowed()),
		attribute.String("fmgate.policy.version", set.version),
		attribute.StringSlice("fmgate.policy.ids", d.PolicyIDs),
	)
	decision := policyv1.Decision_DECISION_DENY
	if d.Allowed() {
		decision = policyv1.Decision_DECISION_ALLOW
	}
	return &policyv1.EvaluateResponse{
		Decision:  decision,
		Reasons:   d.Reasons,
		PolicyIds: d.PolicyIDs,
		Obligations: &policyv1.Obligations{
			ModerationProfile: d.Obligations.ModerationProfile,
			MaxOutputTokens:   d.Obligations.MaxOutputTokens,
		},
		PolicyVersion: set.version,
	}, nil
}

// policySet returns the organization's compiled policies at their current version.
func (s *Server) policySet(ctx context.Context, org string) (*policySet, error) {
	version, err := s.store.Version(ctx, org)
	if err != nil {
		return nil, fmt.Errorf("policy version of %s: %w", org, err)
	}
	s.mu.RLock()
	set := s.sets[org]
	s.mu.RUnlock()
	if set != nil && set.version == version {
		return set, nil
	}
	// The list carries the version it was read at, which may already be newer than the one
	// above: caching under it never pairs a version with other content.
	policies, version, err := s.store.ListPolicies(ctx, org)
	if err != nil {
		return nil, fmt.Errorf("list policies of %s: %w", org, err)
	}
	set = &policySet{version: version, compiled: Compile(policies)}
	s.mu.Lock()
	s.sets[org] = set
	s.mu.Unlock()
	return set, nil
}

// toStatus turns a domain error into the gRPC status clients see. Errors it does not know
// pass through unchanged: the last server interceptor turns them into INTERNAL with a
// generic message and logs them once.
func toStatus(err error) error {
	var ve *ValidationError
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrNotFound):
		return apierr.WithReason(codes.NotFound, "POLICY_NOT_FOUND", "policy not found")
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
