package quota

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	quotav1 "github.com/fmgate/fmgate/gen/fmgate/quota/v1"
	"github.com/fmgate/fmgate/internal/apierr"
)

// Server implements quotav1.QuotaServiceServer.
type Server struct {
	quotav1.UnimplementedQuotaServiceServer
	limiter Limiter
	// byOrg indexes the limits by Match.OrganizationID: a request only ever looks at its
	// own organisation's limits.
	byOrg map[string][]Limit
	log   *slog.Logger
}

// NewServer returns a Server enforcing limits through limiter. It reports every invalid
// limit and every duplicate name at once.
func NewServer(limiter Limiter, limits []Limit, log *slog.Logger) (*Server, error) {
	if limiter == nil {
		return nil, errors.New("quota: nil limiter")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var errs []error
	seen := make(map[string]bool, len(limits))
	byOrg := make(map[string][]Limit)
	for _, l := range limits {
		if err := l.Validate(); err != nil {
			errs = append(errs, err)
			continue
		}
		if seen[l.Name] {
			errs = append(errs, fmt.Errorf("limit %q: name is not unique", l.Name))
			continue
		}
		seen[l.Name] = true
		byOrg[l.Match.OrganizationID] = append(byOrg[l.Match.OrganizationID], l)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &Server{limiter: limiter, byOrg: byOrg, log: log}, nil
}

// Register adds the service to r. All-in-one and mesh make the same call.
func (s *Server) Register(r grpc.ServiceRegistrar) { quotav1.RegisterQuotaServiceServer(r, s) }

// Reserve admits one request under every limit that matches it.
func (s *Server) Reserve(ctx context.Context, req *quotav1.ReserveRequest) (*quotav1.ReserveResponse, error) {
	if err := validateRequest(req.GetSubject(), req.GetModel()); err != nil {
		return nil, err
	}
	limits, counters := s.applicable(req.GetSubject(), req.GetModel(), false)
	if len(counters) == 0 {
		return &quotav1.ReserveResponse{}, nil
	}
	org := req.GetSubject().GetOrganizationId()
	dec, err := s.limiter.Reserve(ctx, org, counters)
	if err != nil {
		return nil, s.fail(ctx, "Reserve", err)
	}
	if len(dec.Counters) != len(counters) {
		return nil, s.fail(ctx, "Reserve", fmt.Errorf("limiter returned %d counter states for %d counters", len(dec.Counters), len(counters)))
	}
	if !dec.Admitted {
		// Name the limit that frees last: retrying earlier would be refused again.
		worst := -1
		for i, c := range dec.Counters {
			if !c.Fits && (worst < 0 || c.RetryAfter > dec.Counters[worst].RetryAfter) {
				worst = i
			}
		}
		if worst < 0 {
			return nil, s.fail(ctx, "Reserve", errors.New("limiter refused without a refusing counter"))
		}
		l := limits[worst]
		return nil, apierr.ResourceExhausted(
			fmt.Sprintf("rate limit %q reached: %d %s per %s", l.Name, l.Amount, l.Kind, l.Window),
			l.Name, max(dec.Counters[worst].RetryAfter, time.Millisecond))
	}
	resp := &quotav1.ReserveResponse{Limits: make([]*quotav1.LimitStatus, len(limits))}
	for i, l := range limits {
		c := dec.Counters[i]
		resp.Limits[i] = &quotav1.LimitStatus{
			Name:       l.Name,
			Limit:      l.Amount,
			Remaining:  c.Remaining,
			ResetAfter: durationpb.New(c.ResetAfter),
		}
	}
	return resp, nil
}

// Commit charges the tokens a request used to the token limits that match it. Usage
// without a total is charged input plus output tokens.
func (s *Server) Commit(ctx context.Context, req *quotav1.CommitRequest) (*quotav1.CommitResponse, error) {
	if err := validateRequest(req.GetSubject(), req.GetModel()); err != nil {
		return nil, err
	}
	u := req.GetUsage()
	if u.GetTotalTokens() < 0 || u.GetInputTokens() < 0 || u.GetOutputTokens() < 0 {
		return nil, apierr.Field("usage", "token counts must not be negative")
	}
	tokens := u.GetTotalTokens()
	if tokens == 0 {
		tokens = u.GetInputTokens() + u.GetOutputTokens()
	}
	if tokens == 0 {
		return &quotav1.CommitResponse{}, nil
	}
	_, counters := s.applicable(req.GetSubject(), req.GetModel(), true)
	if len(counters) == 0 {
		return &quotav1.CommitResponse{}, nil
	}
	if err := s.limiter.Commit(ctx, req.GetSubject().GetOrganizationId(), counters, tokens); err != nil {
		return nil, s.fail(ctx, "Commit", err)
	}
	return &quotav1.CommitResponse{}, nil
}

// fail turns a limiter error into the status the client sees, logging the real error once
// when the client cannot be blamed.
func (s *Server) fail(ctx context.Context, rpc string, err error) error {
	st := toStatus(err)
	if c := status.Code(st); c == codes.Unavailable || c == codes.Internal {
		s.log.ErrorContext(ctx, "quota limiter failed", "rpc", rpc, "code", c.String(), "error", err)
	}
	return st
}

// toStatus maps a Limiter error to a gRPC status. Any store failure is UNAVAILABLE: quota
// fails closed, a request is never admitted because its counters could not be read.
func toStatus(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, "request canceled")
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, "deadline exceeded")
	case errors.Is(err, ErrInvalidCounter):
		return status.Error(codes.Internal, "internal error")
	default:
		return status.Error(codes.Unavailable, "quota store unavailable")
	}
}

func validateRequest(sub *quotav1.Subject, model string) error {
	var vs []apierr.FieldViolation
	if sub == nil {
		vs = append(vs, apierr.FieldViolation{Field: "subject", Description: "is required"})
	} else {
		if sub.GetOrganizationId() == "" {
			vs = append(vs, apierr.FieldViolation{Field: "subject.organization_id", Description: "is required"})
		}
		if sub.GetSubject() == "" {
			vs = append(vs, apierr.FieldViolation{Field: "subject.subject", Description: "is required"})
		}
	}
	if model == "" {
		vs = append(vs, apierr.FieldViolation{Field: "model", Description: "is required"})
	}
	if len(vs) > 0 {
		return apierr.InvalidArgument(vs...)
	}
	return nil
}

// applicable returns the limits that match the request, in configuration order, and one
// counter for each. With tokensOnly it keeps only token limits.
func (s *Server) applicable(sub *quotav1.Subject, model string, tokensOnly bool) ([]Limit, []Counter) {
	var limits []Limit
	var counters []Counter
	for _, l := range s.byOrg[sub.GetOrganizationId()] {
		if tokensOnly && l.Kind != KindTokens {
			continue
		}
		key, ok := counterKey(l, sub, model)
		if !ok || !matches(l.Match, sub, model) {
			continue
		}
		limits = append(limits, l)
		counters = append(counters, Counter{Key: key, Kind: l.Kind, Amount: l.Amount, Window: l.Window})
	}
	return limits, counters
}

func matches(m Match, sub *quotav1.Subject, model string) bool {
	return m.OrganizationID == sub.GetOrganizationId() &&
		(m.TeamID == "" || m.TeamID == sub.GetTeamId()) &&
		(m.Subject == "" || m.Subject == sub.GetSubject()) &&
		(m.APIKeyID == "" || m.APIKeyID == sub.GetApiKeyId()) &&
		(m.Model == "" || m.Model == model)
}

// counterKey names the counter l uses for this request within the organisation (the
// limiter's tenant): "l:<name>" then the partition value and, with PerModel, the model.
// Each part is query-escaped so that no value can contain a separator and two different
// requests can never share a key by accident. It reports false when the request lacks the
// attribute the limit partitions by.
func counterKey(l Limit, sub *quotav1.Subject, model string) (string, bool) {
	var b strings.Builder
	b.WriteString("l:")
	b.WriteString(url.QueryEscape(l.Name))
	part := func(tag, v string) bool {
		if v == "" {
			return false
		}
		b.WriteString(":" + tag + ":")
		b.WriteString(url.QueryEscape(v))
		return true
	}
	switch l.Scope.By {
	case ByOrganization:
	case ByTeam:
		if !part("t", sub.GetTeamId()) {
			return "", false
		}
	case BySubject:
		if !part("s", sub.GetSubject()) {
			return "", false
		}
	case ByAPIKey:
		if !part("k", sub.GetApiKeyId()) {
			return "", false
		}
	default:
		return "", false
	}
	if l.Scope.PerModel && !part("m", model) {
		return "", false
	}
	return b.String(), true
}
