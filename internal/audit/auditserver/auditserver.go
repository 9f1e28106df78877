// Package auditserver serves fmgate.audit.v1.AuditService over an audit.Store: the admin
// API's read side of the audit trail. The admin layer in front of it authenticates the
// caller, requires audit.read and confines every call to the caller's organisation; the
// server scopes every store call by the request's organization_id all the same.
package auditserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	auditv1 "github.com/fmgate/fmgate/gen/fmgate/audit/v1"
	"github.com/fmgate/fmgate/internal/apierr"
	"github.com/fmgate/fmgate/internal/audit"
)

// Server implements auditv1.AuditServiceServer.
type Server struct {
	auditv1.UnimplementedAuditServiceServer
	store audit.Store
}

// New returns a server reading store.
func New(store audit.Store) *Server { return &Server{store: store} }

// Register registers the server on r.
func (s *Server) Register(r grpc.ServiceRegistrar) { auditv1.RegisterAuditServiceServer(r, s) }

// ListAuditEvents pages through an organisation's records.
func (s *Server) ListAuditEvents(ctx context.Context, req *auditv1.ListAuditEventsRequest) (*auditv1.ListAuditEventsResponse, error) {
	var vs []apierr.FieldViolation
	if req.GetOrganizationId() == "" {
		vs = append(vs, apierr.FieldViolation{Field: "organization_id", Description: "is required"})
	}
	if n := req.GetPageSize(); n < 0 || n > audit.MaxPageSize {
		vs = append(vs, apierr.FieldViolation{Field: "page_size", Description: fmt.Sprintf("must be 0 to %d", audit.MaxPageSize)})
	}
	f := audit.Filter{
		OrganizationID: req.GetOrganizationId(), Service: req.GetService(), Action: req.GetAction(),
		ActorSubject: req.GetActorSubject(),
	}
	if t := req.GetStartTime(); t != nil {
		f.From = t.AsTime()
	}
	if t := req.GetEndTime(); t != nil {
		f.To = t.AsTime()
	}
	if !f.From.IsZero() && !f.To.IsZero() && !f.From.Before(f.To) {
		vs = append(vs, apierr.FieldViolation{Field: "end_time", Description: "must be after start_time"})
	}
	if len(vs) > 0 {
		return nil, apierr.InvalidArgument(vs...)
	}
	events, next, err := s.store.List(ctx, f, audit.Page{Size: int(req.GetPageSize()), Token: req.GetPageToken()})
	switch {
	case errors.Is(err, audit.ErrInvalidPageToken):
		return nil, apierr.InvalidArgument(apierr.FieldViolation{Field: "page_token", Description: "is not a token this list issued"})
	case err != nil:
		return nil, status.Error(codes.Unavailable, "audit store unavailable")
	}
	resp := &auditv1.ListAuditEventsResponse{AuditEvents: make([]*auditv1.AuditEvent, 0, len(events)), NextPageToken: next}
	for _, e := range events {
		pe, err := toProto(e)
		if err != nil {
			return nil, err
		}
		resp.AuditEvents = append(resp.AuditEvents, pe)
	}
	return resp, nil
}

// VerifyAuditChain verifies one chain.
func (s *Server) VerifyAuditChain(ctx context.Context, req *auditv1.VerifyAuditChainRequest) (*auditv1.VerifyAuditChainResponse, error) {
	var vs []apierr.FieldViolation
	if req.GetOrganizationId() == "" {
		vs = append(vs, apierr.FieldViolation{Field: "organization_id", Description: "is required"})
	}
	if req.GetService() == "" {
		vs = append(vs, apierr.FieldViolation{Field: "service", Description: "is required"})
	}
	if len(vs) > 0 {
		return nil, apierr.InvalidArgument(vs...)
	}
	v, err := s.store.Verify(ctx, req.GetOrganizationId(), req.GetService())
	if err != nil {
		return nil, status.Error(codes.Unavailable, "audit store unavailable")
	}
	return &auditv1.VerifyAuditChainResponse{
		Checked: v.Records, HeadSequence: v.HeadSequence, HeadHash: v.HeadHash.String(),
		BrokenSequence: v.Broken, BrokenReason: v.Reason,
	}, nil
}

func toProto(e audit.Event) (*auditv1.AuditEvent, error) {
	out := &auditv1.AuditEvent{
		Id: e.ID, OrganizationId: e.OrganizationID, Service: e.Service, Time: timestamppb.New(e.Time),
		ActorSubject: e.Actor.Subject, ActorKind: e.Actor.Kind, Action: e.Action,
		ResourceType: e.Resource.Type, ResourceId: e.Resource.ID, TraceId: e.TraceID,
		Sequence: e.Sequence, PrevHash: e.PrevHash.String(), Hash: e.Hash.String(),
	}
	var err error
	if out.Before, err = object("before", e.Before); err != nil {
		return nil, err
	}
	if out.After, err = object("after", e.After); err != nil {
		return nil, err
	}
	if out.Details, err = object("details", e.Details); err != nil {
		return nil, err
	}
	return out, nil
}

// object decodes a record's JSON object; absent or null is nil.
func object(field string, raw json.RawMessage) (*structpb.Struct, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, status.Errorf(codes.DataLoss, "audit record: %s is not a JSON object", field)
	}
	st, err := structpb.NewStruct(m)
	if err != nil {
		return nil, status.Errorf(codes.DataLoss, "audit record: %s: %v", field, err)
	}
	return st, nil
}
