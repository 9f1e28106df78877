package registry

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"time"

	registryv1 "github.com/fmgate/fmgate/gen/fmgate/registry/v1"
	"github.com/fmgate/fmgate/internal/apierr"
)

// The dedicated-hosting RPCs. Deciding is for admins: the admin layer in front of the
// registry enforces who may call Approve, Reject and Mark; the registry records who did.

// newHostingID returns an id that sorts in creation order: "hr-", the creation time in
// nanoseconds and 32 random bits, in hex.
func (s *Server) newHostingID() string {
	var b [12]byte
	binary.BigEndian.PutUint64(b[:8], uint64(s.cfg.Now().UnixNano()))
	_, _ = rand.Read(b[8:]) // never fails (crypto/rand)
	return "hr-" + hex.EncodeToString(b[:])
}

// CreateHostingRequest submits a request for dedicated hosting.
func (s *Server) CreateHostingRequest(ctx context.Context, req *registryv1.CreateHostingRequestRequest) (*registryv1.CreateHostingRequestResponse, error) {
	in := req.GetHostingRequest()
	if in == nil {
		return nil, apierr.Field("hosting_request", "is required")
	}
	now := s.cfg.Now().UTC()
	h := HostingRequest{
		OrganizationID:    in.GetOrganizationId(),
		ID:                s.newHostingID(),
		Requester:         in.GetRequester(),
		Model:             in.GetModel(),
		RequestsPerMinute: in.GetRequestsPerMinute(),
		TokensPerMinute:   in.GetTokensPerMinute(),
		Region:            in.GetRegion(),
		Justification:     in.GetJustification(),
		State:             HostingSubmitted,
		UpdatedBy:         in.GetRequester(),
		TeamID:            in.GetTeamId(),
	}
	h.CreateTime = now.Truncate(time.Microsecond) // what Postgres keeps
	h.UpdateTime = h.CreateTime
	if err := s.store.CreateHostingRequest(ctx, h); err != nil {
		return nil, prefixed(err, "hosting_request.")
	}
	return &registryv1.CreateHostingRequestResponse{After: hostingToProtoMsg(h)}, nil
}

// GetHostingRequest returns one hosting request; with team_id, only one of that team (a
// request of another team is NOT_FOUND, as if it did not exist).
func (s *Server) GetHostingRequest(ctx context.Context, req *registryv1.GetHostingRequestRequest) (*registryv1.GetHostingRequestResponse, error) {
	if vs := required("organization_id", req.GetOrganizationId(), "id", req.GetId()); len(vs) > 0 {
		return nil, apierr.InvalidArgument(vs...)
	}
	h, err := s.store.GetHostingRequest(ctx, req.GetOrganizationId(), req.GetId())
	if err == nil && req.GetTeamId() != "" && h.TeamID != req.GetTeamId() {
		err = &NotFoundError{Resource: ResourceHostingRequest, Name: req.GetId()}
	}
	if err != nil {
		return nil, toStatus(err)
	}
	return &registryv1.GetHostingRequestResponse{HostingRequest: hostingToProtoMsg(h)}, nil
}

// ListHostingRequests pages through the organization's hosting requests, oldest first.
func (s *Server) ListHostingRequests(ctx context.Context, req *registryv1.ListHostingRequestsRequest) (*registryv1.ListHostingRequestsResponse, error) {
	vs := checkPageSize(required("organization_id", req.GetOrganizationId()), req.GetPageSize())
	filter := HostingFilter{Requester: req.GetRequester(), TeamID: req.GetTeamId()}
	for i, st := range req.GetStates() {
		d := fromProto(hostingToProto, st)
		if d == "" {
			vs = append(vs, apierr.FieldViolation{Field: fmt.Sprintf("states[%d]", i), Description: "must be a defined state"})
		}
		filter.States = append(filter.States, d)
	}
	if len(vs) > 0 {
		return nil, apierr.InvalidArgument(vs...)
	}
	hs, next, err := s.store.ListHostingRequests(ctx, req.GetOrganizationId(), filter,
		Page{Size: int(req.GetPageSize()), Token: req.GetPageToken()})
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &registryv1.ListHostingRequestsResponse{NextPageToken: next}
	for _, h := range hs {
		resp.HostingRequests = append(resp.HostingRequests, hostingToProtoMsg(h))
	}
	return resp, nil
}

// moveHosting applies one state change to a hosting request.
func (s *Server) moveHosting(ctx context.Context, org, id string, to HostingState, actorField, actor, note string) (*registryv1.HostingRequest, *registryv1.HostingRequest, error) {
	if vs := required("organization_id", org, "id", id, actorField, actor); len(vs) > 0 {
		return nil, nil, apierr.InvalidArgument(vs...)
	}
	before, after, err := s.store.UpdateHostingRequest(ctx, org, id, func(cur HostingRequest) (HostingRequest, error) {
		return cur.Transition(to, actor, note, s.cfg.Now())
	})
	if err != nil {
		return nil, nil, toStatus(err)
	}
	return hostingToProtoMsg(before), hostingToProtoMsg(after), nil
}

// ApproveHostingRequest approves a submitted request.
func (s *Server) ApproveHostingRequest(ctx context.Context, req *registryv1.ApproveHostingRequestRequest) (*registryv1.ApproveHostingRequestResponse, error) {
	b, a, err := s.moveHosting(ctx, req.GetOrganizationId(), req.GetId(), HostingApproved, "decided_by", req.GetDecidedBy(), req.GetNote())
	if err != nil {
		return nil, err
	}
	return &registryv1.ApproveHostingRequestResponse{Before: b, After: a}, nil
}

// RejectHostingRequest rejects a submitted request.
func (s *Server) RejectHostingRequest(ctx context.Context, req *registryv1.RejectHostingRequestRequest) (*registryv1.RejectHostingRequestResponse, error) {
	b, a, err := s.moveHosting(ctx, req.GetOrganizationId(), req.GetId(), HostingRejected, "decided_by", req.GetDecidedBy(), req.GetNote())
	if err != nil {
		return nil, err
	}
	return &registryv1.RejectHostingRequestResponse{Before: b, After: a}, nil
}

// MarkHostingRequestProvisioning records that an approved request is being provisioned.
func (s *Server) MarkHostingRequestProvisioning(ctx context.Context, req *registryv1.MarkHostingRequestProvisioningRequest) (*registryv1.MarkHostingRequestProvisioningResponse, error) {
	b, a, err := s.moveHosting(ctx, req.GetOrganizationId(), req.GetId(), HostingProvisioning, "actor", req.GetActor(), req.GetNote())
	if err != nil {
		return nil, err
	}
	return &registryv1.MarkHostingRequestProvisioningResponse{Before: b, After: a}, nil
}

// MarkHostingRequestActive records that a provisioning request's hosting serves.
func (s *Server) MarkHostingRequestActive(ctx context.Context, req *registryv1.MarkHostingRequestActiveRequest) (*registryv1.MarkHostingRequestActiveResponse, error) {
	b, a, err := s.moveHosting(ctx, req.GetOrganizationId(), req.GetId(), HostingActive, "actor", req.GetActor(), req.GetNote())
	if err != nil {
		return nil, err
	}
	return &registryv1.MarkHostingRequestActiveResponse{Before: b, After: a}, nil
}
