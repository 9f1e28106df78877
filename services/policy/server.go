package policy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	policyv1 "github.com/fmgate/fmgate/gen/fmgate/policy/v1"
	"github.com/fmgate/fmgate/internal/apierr"
)

var tracer = otel.Tracer("github.com/fmgate/fmgate/services/policy")

// Page sizes of the list RPCs.
const (
	defaultPageSize = 100
	maxPageSize     = 1000
)

// Server implements policyv1.PolicyServiceServer.
type Server struct {
	policyv1.UnimplementedPolicyServiceServer
	store Store
	log   *slog.Logger

	// sets caches each organization's compiled policies (CEL programs included) under the
	// version they were read at. An evaluation reads the store's Version unless the set was
	// confirmed current less than versionCheck ago; this server's own changes drop the
	// organisation's set at once.
	mu   sync.RWMutex
	sets map[string]*policySet
	// forgotten counts forget calls: a set read before a change that another call has
	// since forgotten is not cached (policySet), or it would be trusted for versionCheck.
	forgotten    uint64
	versionCheck time.Duration
}

type policySet struct {
	version  string
	compiled *Compiled
	checked  atomic.Int64 // when version was last confirmed current, Unix nanoseconds
}

// NewServer returns a server evaluating and administering the policies of store. Every
// evaluation confirms with the store that its cached policies are current, so that any
// change, through any replica, applies to the next evaluation.
func NewServer(store Store, log *slog.Logger) *Server {
	return &Server{store: store, log: log, sets: map[string]*policySet{}}
}

// SetVersionCheckInterval lets an evaluation trust cached policies confirmed current less
// than d ago instead of asking the store every time: for a store across a network
// (Postgres), where asking costs a round trip on every generation. A change made through
// another replica then applies within d; one made through this server still applies at
// once. Call it before serving.
func (s *Server) SetVersionCheckInterval(d time.Duration) { s.versionCheck = d }

// forget drops org's cached policies after a change made through this server.
func (s *Server) forget(org string) {
	s.mu.Lock()
	delete(s.sets, org)
	s.forgotten++
	s.mu.Unlock()
}

// Register adds the service to r. All-in-one and mesh make the same call.
func (s *Server) Register(r grpc.ServiceRegistrar) { policyv1.RegisterPolicyServiceServer(r, s) }

type violations []apierr.FieldViolation

func (vs *violations) add(field, desc string) {
	*vs = append(*vs, apierr.FieldViolation{Field: field, Description: desc})
}

func (vs violations) err() error {
	if len(vs) == 0 {
		return nil
	}
	return apierr.InvalidArgument(vs...)
}

func checkEvaluate(req *policyv1.EvaluateRequest) error {
	var vs violations
	p := req.GetPrincipal()
	if p.GetOrganizationId() == "" {
		vs.add("principal.organization_id", "is required")
	}
	if p.GetSubject() == "" {
		vs.add("principal.subject", "is required")
	}
	if req.GetModel() == "" {
		vs.add("model", "is required")
	}
	if req.GetRequest().GetMaxOutputTokens() < 0 {
		vs.add("request.max_output_tokens", "must not be negative")
	}
	if req.GetRequest().GetMessageCount() < 0 {
		vs.add("request.message_count", "must not be negative")
	}
	if n := len(req.GetEndpoints()); n > 256 {
		vs.add("endpoints", "must list at most 256 endpoints")
	}
	return vs.err()
}

// Evaluate decides on one request. A denial is a normal response.
func (s *Server) Evaluate(ctx context.Context, req *policyv1.EvaluateRequest) (*policyv1.EvaluateResponse, error) {
	if err := checkEvaluate(req); err != nil {
		return nil, err
	}
	ctx, span := tracer.Start(ctx, "policy.Evaluate")
	defer span.End()
	set, err := s.policySet(ctx, req.GetPrincipal().GetOrganizationId())
	if err != nil {
		return nil, toStatus(err)
	}
	d := set.compiled.Evaluate(req)
	span.SetAttributes(
		attribute.Bool("fmgate.policy.allowed", d.Allowed()),
		attribute.String("fmgate.policy.version", set.version),
		attribute.StringSlice("fmgate.policy.ids", d.PolicyIDs),
	)
	return &policyv1.EvaluateResponse{
		Decision:           decisionToProto(d),
		Reasons:            d.Reasons,
		PolicyIds:          d.PolicyIDs,
		Obligations:        obligationsToProto(d.Obligations),
		PolicyVersion:      set.version,
		AllowedEndpointIds: d.AllowedEndpointIDs,
	}, nil
}

func decisionToProto(d Decision) policyv1.Decision {
	if d.Allowed() {
		return policyv1.Decision_DECISION_ALLOW
	}
	return policyv1.Decision_DECISION_DENY
}

var conditionToProto = map[ConditionResult]policyv1.ConditionResult{
	ConditionAbsent: policyv1.ConditionResult_CONDITION_RESULT_ABSENT,
	ConditionTrue:   policyv1.ConditionResult_CONDITION_RESULT_TRUE,
	ConditionFalse:  policyv1.ConditionResult_CONDITION_RESULT_FALSE,
	ConditionError:  policyv1.ConditionResult_CONDITION_RESULT_ERROR,
}

// Explain decides on one request as Evaluate does and says how.
func (s *Server) Explain(ctx context.Context, in *policyv1.ExplainRequest) (*policyv1.ExplainResponse, error) {
	req := &policyv1.EvaluateRequest{Principal: in.GetPrincipal(), Model: in.GetModel(), Request: in.GetRequest(),
		ModelFacts: in.GetModelFacts(), Endpoints: in.GetEndpoints()}
	if err := checkEvaluate(req); err != nil {
		return nil, err
	}
	ctx, span := tracer.Start(ctx, "policy.Explain")
	defer span.End()
	set, err := s.policySet(ctx, req.GetPrincipal().GetOrganizationId())
	if err != nil {
		return nil, toStatus(err)
	}
	x := set.compiled.Explain(req)
	out := &policyv1.ExplainResponse{
		Decision:           decisionToProto(x.Decision),
		Reasons:            x.Decision.Reasons,
		PolicyIds:          x.Decision.PolicyIDs,
		Obligations:        obligationsToProto(x.Decision.Obligations),
		PolicyVersion:      set.version,
		AllowedEndpointIds: x.Decision.AllowedEndpointIDs,
		Explanation:        x.Text,
	}
	for _, t := range x.Policies {
		out.Policies = append(out.Policies, &policyv1.PolicyTrace{
			PolicyId: t.PolicyID, Effect: effectToProto[t.Effect], Revision: t.Revision,
			SubjectsMatched: t.SubjectsMatched, ModelsMatched: t.ModelsMatched,
			Condition: conditionToProto[t.Condition], ConditionError: t.ConditionError, Fired: t.Fired,
		})
	}
	for _, e := range x.Endpoints {
		out.Endpoints = append(out.Endpoints, &policyv1.EndpointTrace{EndpointId: e.ID, Allowed: e.Allowed, Reason: e.Reason})
	}
	return out, nil
}

// policySet returns the organization's compiled policies at their current version.
func (s *Server) policySet(ctx context.Context, org string) (*policySet, error) {
	s.mu.RLock()
	set, forgotten := s.sets[org], s.forgotten
	s.mu.RUnlock()
	now := time.Now().UnixNano()
	if set != nil && now-set.checked.Load() < int64(s.versionCheck) {
		return set, nil
	}
	version, err := s.store.Version(ctx, org)
	if err != nil {
		return nil, fmt.Errorf("policy version of %s: %w", org, err)
	}
	if set != nil && set.version == version {
		set.checked.Store(now)
		return set, nil
	}
	// The list carries the version it was read at, which may already be newer than the one
	// above: caching under it never pairs a version with other content.
	policies, version, err := s.store.ListPolicies(ctx, org)
	if err != nil {
		return nil, fmt.Errorf("list policies of %s: %w", org, err)
	}
	set = &policySet{version: version, compiled: Compile(policies)}
	set.checked.Store(now)
	s.mu.Lock()
	if s.forgotten == forgotten {
		s.sets[org] = set
	}
	s.mu.Unlock()
	return set, nil
}

func checkOrg(vs *violations, org string) {
	if !identifier.MatchString(org) {
		vs.add("organization_id", "must match "+identifier.String())
	}
}

func checkAuthor(vs *violations, by string) {
	if by == "" || len(by) > 256 {
		vs.add("updated_by", "is required (the subject making the change), at most 256 bytes")
	}
}

func pageSize(vs *violations, n int32) int {
	switch {
	case n < 0:
		vs.add("page_size", "must not be negative")
	case n == 0:
		return defaultPageSize
	}
	return min(int(n), maxPageSize)
}

// CreatePolicy adds a policy.
func (s *Server) CreatePolicy(ctx context.Context, req *policyv1.CreatePolicyRequest) (*policyv1.CreatePolicyResponse, error) {
	var vs violations
	checkOrg(&vs, req.GetOrganizationId())
	checkAuthor(&vs, req.GetUpdatedBy())
	if o := req.GetPolicy().GetOrganizationId(); o != "" && o != req.GetOrganizationId() {
		vs.add("policy.organization_id", "must be empty or organization_id")
	}
	if req.GetPolicy() == nil {
		vs.add("policy", "is required")
	}
	if err := vs.err(); err != nil {
		return nil, err
	}
	p := fromProto(req.GetPolicy())
	p.OrganizationID, p.UpdatedBy = req.GetOrganizationId(), req.GetUpdatedBy()
	created, err := s.store.CreatePolicy(ctx, p)
	if err != nil {
		return nil, toStatus(prefixFields(err, "policy."))
	}
	s.forget(p.OrganizationID)
	return &policyv1.CreatePolicyResponse{After: ToProto(created)}, nil
}

// GetPolicy returns a policy.
func (s *Server) GetPolicy(ctx context.Context, req *policyv1.GetPolicyRequest) (*policyv1.GetPolicyResponse, error) {
	var vs violations
	checkOrg(&vs, req.GetOrganizationId())
	if req.GetId() == "" {
		vs.add("id", "is required")
	}
	if err := vs.err(); err != nil {
		return nil, err
	}
	p, err := s.store.GetPolicy(ctx, req.GetOrganizationId(), req.GetId())
	if err != nil {
		return nil, toStatus(err)
	}
	return &policyv1.GetPolicyResponse{Policy: ToProto(p)}, nil
}

// ListPolicies pages through an organization's policies.
func (s *Server) ListPolicies(ctx context.Context, req *policyv1.ListPoliciesRequest) (*policyv1.ListPoliciesResponse, error) {
	var vs violations
	checkOrg(&vs, req.GetOrganizationId())
	size := pageSize(&vs, req.GetPageSize())
	after, err := decodePageToken(req.GetPageToken(), pagePolicies, req.GetOrganizationId(), "")
	if err != nil {
		vs.add("page_token", err.Error())
	}
	if err := vs.err(); err != nil {
		return nil, err
	}
	// One more than asked tells whether there is a next page.
	ps, err := s.store.PagePolicies(ctx, req.GetOrganizationId(), after, size+1)
	if err != nil {
		return nil, toStatus(err)
	}
	out := &policyv1.ListPoliciesResponse{}
	if len(ps) > size {
		ps = ps[:size]
		out.NextPageToken = encodePageToken(pagePolicies, req.GetOrganizationId(), "", ps[size-1].ID)
	}
	for _, p := range ps {
		out.Policies = append(out.Policies, ToProto(p))
	}
	return out, nil
}

// The update mask paths UpdatePolicy accepts, and what each copies.
var updatePaths = map[string]func(dst *Policy, src Policy){
	"description":                    func(d *Policy, s Policy) { d.Description = s.Description },
	"effect":                         func(d *Policy, s Policy) { d.Effect = s.Effect },
	"subjects":                       func(d *Policy, s Policy) { d.Subjects = s.Subjects },
	"models":                         func(d *Policy, s Policy) { d.Models = s.Models },
	"condition":                      func(d *Policy, s Policy) { d.Condition = s.Condition },
	"obligations":                    func(d *Policy, s Policy) { d.SetObligations(s.Obligations()) },
	"obligations.moderation_profile": func(d *Policy, s Policy) { d.ModerationProfile = s.ModerationProfile },
	"obligations.max_output_tokens":  func(d *Policy, s Policy) { d.MaxOutputTokens = s.MaxOutputTokens },
	"obligations.allowed_endpoint_regions": func(d *Policy, s Policy) {
		d.AllowedEndpointRegions = s.AllowedEndpointRegions
	},
	"obligations.allowed_modalities":   func(d *Policy, s Policy) { d.AllowedModalities = s.AllowedModalities },
	"obligations.log_retention":        func(d *Policy, s Policy) { d.LogRetention = s.LogRetention },
	"obligations.log_group":            func(d *Policy, s Policy) { d.LogGroup = s.LogGroup },
	"obligations.mask_personal_data":   func(d *Policy, s Policy) { d.MaskPersonalData = s.MaskPersonalData },
	"obligations.require_baa_coverage": func(d *Policy, s Policy) { d.RequireBAACoverage = s.RequireBAACoverage },
}

// UpdatePolicy changes the fields of a policy that update_mask names.
func (s *Server) UpdatePolicy(ctx context.Context, req *policyv1.UpdatePolicyRequest) (*policyv1.UpdatePolicyResponse, error) {
	var vs violations
	checkOrg(&vs, req.GetOrganizationId())
	checkAuthor(&vs, req.GetUpdatedBy())
	if req.GetPolicy().GetId() == "" {
		vs.add("policy.id", "is required")
	}
	if o := req.GetPolicy().GetOrganizationId(); o != "" && o != req.GetOrganizationId() {
		vs.add("policy.organization_id", "must be empty or organization_id")
	}
	paths := req.GetUpdateMask().GetPaths()
	if len(paths) == 0 {
		vs.add("update_mask", "must name at least one field (\"*\" for every one)")
	}
	for i, p := range paths {
		if _, ok := updatePaths[p]; !ok && p != "*" {
			vs.add(fmt.Sprintf("update_mask.paths[%d]", i), strconv.Quote(p)+" is not a field an update can change")
		}
	}
	if err := vs.err(); err != nil {
		return nil, err
	}
	org, id := req.GetOrganizationId(), req.GetPolicy().GetId()
	cur, err := s.store.GetPolicy(ctx, org, id)
	if err != nil {
		return nil, toStatus(err)
	}
	// Without an etag from the caller the update is conditional on the revision read
	// here, so a concurrent change is never overwritten silently (ABORTED: retry).
	etag := req.GetPolicy().GetEtag()
	if etag == "" {
		etag = cur.Etag
	}
	src := fromProto(req.GetPolicy())
	next := cur.Clone()
	for _, p := range paths {
		if p == "*" {
			for _, f := range updatePaths {
				f(&next, src)
			}
			continue
		}
		updatePaths[p](&next, src)
	}
	next.UpdatedBy = req.GetUpdatedBy()
	ch, err := s.store.UpdatePolicy(ctx, next, etag)
	if err != nil {
		return nil, toStatus(prefixFields(err, "policy."))
	}
	s.forget(next.OrganizationID)
	return &policyv1.UpdatePolicyResponse{Before: toProtoPtr(ch.Before), After: toProtoPtr(ch.After)}, nil
}

// DeletePolicy removes a policy.
func (s *Server) DeletePolicy(ctx context.Context, req *policyv1.DeletePolicyRequest) (*policyv1.DeletePolicyResponse, error) {
	var vs violations
	checkOrg(&vs, req.GetOrganizationId())
	checkAuthor(&vs, req.GetUpdatedBy())
	if req.GetId() == "" {
		vs.add("id", "is required")
	}
	if err := vs.err(); err != nil {
		return nil, err
	}
	before, err := s.store.DeletePolicy(ctx, req.GetOrganizationId(), req.GetId(), req.GetEtag(), req.GetUpdatedBy())
	if err != nil {
		return nil, toStatus(err)
	}
	s.forget(req.GetOrganizationId())
	return &policyv1.DeletePolicyResponse{Before: ToProto(before)}, nil
}

// ListPolicyRevisions pages through a policy's history, newest first.
func (s *Server) ListPolicyRevisions(ctx context.Context, req *policyv1.ListPolicyRevisionsRequest) (*policyv1.ListPolicyRevisionsResponse, error) {
	var vs violations
	checkOrg(&vs, req.GetOrganizationId())
	if req.GetId() == "" {
		vs.add("id", "is required")
	}
	size := pageSize(&vs, req.GetPageSize())
	before, err := decodeRevisionToken(req.GetPageToken(), req.GetOrganizationId(), req.GetId())
	if err != nil {
		vs.add("page_token", err.Error())
	}
	if err := vs.err(); err != nil {
		return nil, err
	}
	revs, err := s.store.ListRevisions(ctx, req.GetOrganizationId(), req.GetId(), before, size+1)
	if err != nil {
		return nil, toStatus(err)
	}
	out := &policyv1.ListPolicyRevisionsResponse{}
	if len(revs) > size {
		revs = revs[:size]
		last := strconv.FormatInt(revs[size-1].Policy.Revision, 10)
		out.NextPageToken = encodePageToken(pageRevisions, req.GetOrganizationId(), req.GetId(), last)
	}
	for _, r := range revs {
		out.Revisions = append(out.Revisions, &policyv1.PolicyRevision{Policy: ToProto(r.Policy), Deleted: r.Deleted})
	}
	return out, nil
}

// ListPackTemplates lists the built-in packs.
func (s *Server) ListPackTemplates(ctx context.Context, _ *policyv1.ListPackTemplatesRequest) (*policyv1.ListPackTemplatesResponse, error) {
	out := &policyv1.ListPackTemplatesResponse{}
	for _, k := range Packs {
		t := &policyv1.PackTemplate{Name: k.Name, Version: k.Version, Description: k.Description}
		for _, p := range k.Parameters {
			t.Parameters = append(t.Parameters, &policyv1.PackParameter{Name: p.Name, Description: p.Description, DefaultValue: p.Default})
		}
		ps, err := k.Policies("example", nil)
		if err != nil {
			return nil, fmt.Errorf("pack %s with defaults: %w", k.Name, err)
		}
		for _, p := range ps {
			p.OrganizationID = ""
			t.Policies = append(t.Policies, ToProto(p))
		}
		out.Templates = append(out.Templates, t)
	}
	return out, nil
}

// InstantiatePack writes a pack's policies into an organization, idempotently.
func (s *Server) InstantiatePack(ctx context.Context, req *policyv1.InstantiatePackRequest) (*policyv1.InstantiatePackResponse, error) {
	var vs violations
	checkOrg(&vs, req.GetOrganizationId())
	checkAuthor(&vs, req.GetUpdatedBy())
	pack, err := FindPack(req.GetPack())
	if err != nil {
		names := make([]string, len(Packs))
		for i, k := range Packs {
			names[i] = k.Name
		}
		vs.add("pack", fmt.Sprintf("must be one of %v", names))
	}
	if err := vs.err(); err != nil {
		return nil, err
	}
	ps, err := pack.Policies(req.GetOrganizationId(), req.GetParameters())
	if err != nil {
		return nil, toStatus(err)
	}
	out := &policyv1.InstantiatePackResponse{PackVersion: pack.Version}
	for _, p := range ps {
		p.UpdatedBy = req.GetUpdatedBy()
		ch, err := s.store.PutPolicy(ctx, p)
		s.forget(req.GetOrganizationId()) // also after a partial failure: some may be written
		if err != nil {
			return nil, toStatus(err)
		}
		out.Policies = append(out.Policies, toProtoPtr(ch.After))
		if ch.Changed {
			out.Changes = append(out.Changes, &policyv1.PolicyChange{Before: toProtoPtr(ch.Before), After: toProtoPtr(ch.After)})
		}
	}
	slices.SortFunc(out.Policies, func(a, b *policyv1.Policy) int { return strings.Compare(a.GetId(), b.GetId()) })
	return out, nil
}

// prefixFields names the fields of a *ValidationError within the request message.
func prefixFields(err error, prefix string) error {
	var ve *ValidationError
	if !errors.As(err, &ve) {
		return err
	}
	out := &ValidationError{Violations: make([]Violation, len(ve.Violations))}
	for i, v := range ve.Violations {
		out.Violations[i] = Violation{Field: prefix + v.Field, Description: v.Description}
	}
	return out
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
	case errors.Is(err, ErrAlreadyExists):
		return apierr.WithReason(codes.AlreadyExists, "POLICY_ALREADY_EXISTS", "policy already exists")
	case errors.Is(err, ErrConflict):
		return apierr.WithReason(codes.Aborted, "POLICY_ETAG_MISMATCH",
			"the policy changed since it was read (etag mismatch): read it again and retry")
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
