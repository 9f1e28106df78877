package identity

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"slices"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	identityv1 "github.com/fmgate/fmgate/gen/fmgate/identity/v1"
	"github.com/fmgate/fmgate/internal/apierr"
)

const (
	defaultPageSize = 100
	maxPageSize     = 1000
	// DefaultHeartbeatInterval is how often WatchRevocations sends a heartbeat by default.
	DefaultHeartbeatInterval = 5 * time.Second
)

// subjectPrefix is how a key's Subject names its owner's kind: "user:alice", "svc:billing".
var subjectPrefix = map[Kind]string{KindUser: "user:", KindServiceAccount: "svc:"}

// CreateApiKey implements identityv1.IdentityServiceServer. The owner must be a stored,
// enabled user or service account of the organisation (of team_id, when set); the key
// acts with the owner's team, roles and attributes as they are whenever it is used.
func (s *Server) CreateApiKey(ctx context.Context, req *identityv1.CreateApiKeyRequest) (*identityv1.CreateApiKeyResponse, error) {
	var vs []apierr.FieldViolation
	bad := func(field, problem string) {
		vs = append(vs, apierr.FieldViolation{Field: field, Description: problem})
	}
	org := req.GetOrganizationId()
	if org == "" {
		bad("organization_id", "is required")
	}
	id := req.GetApiKeyId()
	if id != "" && !idPattern.MatchString(id) {
		bad("api_key_id", idRule)
	}
	kind := kindOf(req.GetOwnerKind())
	if kind == "" {
		bad("owner_kind", "must be PRINCIPAL_KIND_USER or PRINCIPAL_KIND_SERVICE_ACCOUNT")
	}
	if !idPattern.MatchString(req.GetOwnerId()) {
		bad("owner_id", idRule)
	}
	if t := req.GetTeamId(); t != "" && !idPattern.MatchString(t) {
		bad("team_id", idRule)
	}
	if len(req.GetDisplayName()) > maxDisplayName {
		bad("display_name", fmt.Sprintf("must be at most %d bytes", maxDisplayName))
	}
	now := NormTime(s.now())
	var expire time.Time
	if req.GetExpireTime() != nil {
		if err := req.GetExpireTime().CheckValid(); err != nil {
			bad("expire_time", "is not a valid time")
		} else if expire = req.GetExpireTime().AsTime(); !expire.After(now) {
			bad("expire_time", "must be in the future")
		}
	}
	scopes := scopesFrom(req.GetScopes())
	for _, err := range scopes.Validate() {
		ve := err.(*ValidationError)
		bad(ve.Field, ve.Problem)
	}
	if len(vs) > 0 {
		return nil, apierr.InvalidArgument(vs...)
	}
	if err := s.checkKeyEscalation(ctx, org, kind, req.GetOwnerId()); err != nil {
		return nil, err
	}
	if id == "" {
		id = newID("key-")
	}
	secret, err := NewKey()
	if err != nil {
		return nil, toStatus(err)
	}
	k := APIKey{
		ID: id, OrganizationID: org, DisplayName: req.GetDisplayName(),
		Subject: subjectPrefix[kind] + req.GetOwnerId(), Kind: kind, TeamID: req.GetTeamId(),
		Scopes: scopes, Prefix: Prefix(secret), Hash: HashKey(secret),
		ExpireTime: NormTime(expire), CreateTime: now,
	}
	// The store checks the owner and sets the key's team to the owner's, atomically.
	if err := s.store.CreateAPIKey(ctx, k, true); err != nil {
		return nil, s.fail(ctx, "create api key", err)
	}
	stored, err := s.store.GetAPIKey(ctx, org, id)
	if err != nil {
		return nil, s.fail(ctx, "create api key", err)
	}
	s.log.InfoContext(ctx, "api key created", "organization_id", org, "api_key_id", id, "subject", k.Subject)
	return &identityv1.CreateApiKeyResponse{ApiKey: apiKeyProto(stored), Secret: secret, After: apiKeyProto(stored)}, nil
}

// GetApiKey implements identityv1.IdentityServiceServer.
func (s *Server) GetApiKey(ctx context.Context, req *identityv1.GetApiKeyRequest) (*identityv1.GetApiKeyResponse, error) {
	k, err := s.teamKey(ctx, "get api key", req.GetOrganizationId(), req.GetApiKeyId(), req.GetTeamId())
	if err != nil {
		return nil, err
	}
	return &identityv1.GetApiKeyResponse{ApiKey: apiKeyProto(k)}, nil
}

// teamKey returns the key id of org, NOT_FOUND when team is set and the key is another
// team's.
func (s *Server) teamKey(ctx context.Context, op, org, id, team string) (APIKey, error) {
	if vs := required("organization_id", org, "api_key_id", id); len(vs) > 0 {
		return APIKey{}, apierr.InvalidArgument(vs...)
	}
	k, err := s.store.GetAPIKey(ctx, org, id)
	if err == nil && team != "" && k.TeamID != team {
		err = &NotFoundError{Resource: ResourceAPIKey, ID: id}
	}
	if err != nil {
		return APIKey{}, s.fail(ctx, op, err)
	}
	return k, nil
}

// ListApiKeys implements identityv1.IdentityServiceServer. The page token is the last id
// of the previous page, encoded.
func (s *Server) ListApiKeys(ctx context.Context, req *identityv1.ListApiKeysRequest) (*identityv1.ListApiKeysResponse, error) {
	if vs := required("organization_id", req.GetOrganizationId()); len(vs) > 0 {
		return nil, apierr.InvalidArgument(vs...)
	}
	p, err := listPage(req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	keys, err := s.store.ListAPIKeys(ctx, req.GetOrganizationId(), req.GetTeamId(), p)
	if err != nil {
		return nil, s.fail(ctx, "list api keys", err)
	}
	keys, next := cut(keys, p, func(k APIKey) string { return k.ID })
	resp := &identityv1.ListApiKeysResponse{NextPageToken: next}
	for _, k := range keys {
		resp.ApiKeys = append(resp.ApiKeys, apiKeyProto(k))
	}
	return resp, nil
}

// RevokeApiKey implements identityv1.IdentityServiceServer.
func (s *Server) RevokeApiKey(ctx context.Context, req *identityv1.RevokeApiKeyRequest) (*identityv1.RevokeApiKeyResponse, error) {
	org, id := req.GetOrganizationId(), req.GetApiKeyId()
	before, err := s.teamKey(ctx, "revoke api key", org, id, req.GetTeamId())
	if err != nil {
		return nil, err
	}
	if err := s.store.RevokeAPIKey(ctx, org, id, s.now()); err != nil {
		return nil, s.fail(ctx, "revoke api key", err)
	}
	after, err := s.store.GetAPIKey(ctx, org, id)
	if err != nil {
		return nil, s.fail(ctx, "revoke api key", err)
	}
	s.log.InfoContext(ctx, "api key revoked", "organization_id", org, "api_key_id", id)
	return &identityv1.RevokeApiKeyResponse{ApiKey: apiKeyProto(after), Before: apiKeyProto(before), After: apiKeyProto(after)}, nil
}

// WatchRevocations implements identityv1.IdentityServiceServer. The stream ends with
// UNAVAILABLE when the store can no longer promise delivery (see Store.SubscribeRevocations).
func (s *Server) WatchRevocations(_ *identityv1.WatchRevocationsRequest, stream identityv1.IdentityService_WatchRevocationsServer) error {
	ctx := stream.Context()
	revs, err := s.store.SubscribeRevocations(ctx)
	if err != nil {
		return s.fail(ctx, "watch revocations", err)
	}
	heartbeat := func() error {
		return stream.Send(&identityv1.WatchRevocationsResponse{Event: &identityv1.WatchRevocationsResponse_Heartbeat{
			Heartbeat: &identityv1.Heartbeat{SendTime: timestamppb.New(s.now()), HeartbeatInterval: durationpb.New(s.heartbeat)},
		}})
	}
	if err := heartbeat(); err != nil {
		return err
	}
	tick := time.NewTicker(s.heartbeat)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return toStatus(ctx.Err())
		case <-tick.C:
			if err := heartbeat(); err != nil {
				return err
			}
		case r, ok := <-revs:
			if !ok {
				if ctx.Err() != nil {
					return toStatus(ctx.Err())
				}
				return status.Error(codes.Unavailable, "revocations may have been missed; watch again")
			}
			err := stream.Send(&identityv1.WatchRevocationsResponse{Event: &identityv1.WatchRevocationsResponse_Revocation{
				Revocation: &identityv1.Revocation{
					OrganizationId: r.OrganizationID, ApiKeyId: r.KeyID, RevokeTime: timestamppb.New(r.RevokeTime),
				},
			}})
			if err != nil {
				return err
			}
		}
	}
}

// fail logs an unexpected error once and returns the status the caller sees.
func (s *Server) fail(ctx context.Context, op string, err error) error {
	st := toStatus(err)
	if status.Code(st) == codes.Internal {
		s.log.ErrorContext(ctx, op, "error", err)
	}
	return st
}

func page(size int32, token string) (int, string, error) {
	switch {
	case size < 0:
		return 0, "", apierr.Field("page_size", "must not be negative")
	case size == 0:
		size = defaultPageSize
	case size > maxPageSize:
		size = maxPageSize
	}
	after, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil {
		return 0, "", apierr.Field("page_token", "is not a token this service issued")
	}
	return int(size), string(after), nil
}

func newID(prefix string) string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+).
	return prefix + hex.EncodeToString(b[:])
}

func kindOf(k identityv1.PrincipalKind) Kind {
	switch k {
	case identityv1.PrincipalKind_PRINCIPAL_KIND_USER:
		return KindUser
	case identityv1.PrincipalKind_PRINCIPAL_KIND_SERVICE_ACCOUNT:
		return KindServiceAccount
	}
	return ""
}

func kindProto(k Kind) identityv1.PrincipalKind {
	switch k {
	case KindUser:
		return identityv1.PrincipalKind_PRINCIPAL_KIND_USER
	case KindServiceAccount:
		return identityv1.PrincipalKind_PRINCIPAL_KIND_SERVICE_ACCOUNT
	}
	return identityv1.PrincipalKind_PRINCIPAL_KIND_UNSPECIFIED
}

var operationProto = map[Operation]identityv1.Operation{
	OperationGenerate:   identityv1.Operation_OPERATION_GENERATE,
	OperationEmbed:      identityv1.Operation_OPERATION_EMBED,
	OperationListModels: identityv1.Operation_OPERATION_LIST_MODELS,
}

func scopesFrom(p *identityv1.ApiKeyScopes) Scopes {
	var sc Scopes
	sc.Models = slices.Clone(p.GetModels())
	for _, op := range p.GetOperations() {
		found := Operation(fmt.Sprintf("operation %d", op))
		for o, po := range operationProto {
			if po == op {
				found = o
			}
		}
		sc.Operations = append(sc.Operations, found)
	}
	return sc
}

func scopesProto(sc Scopes) *identityv1.ApiKeyScopes {
	if len(sc.Models) == 0 && len(sc.Operations) == 0 {
		return nil
	}
	p := &identityv1.ApiKeyScopes{Models: slices.Clone(sc.Models)}
	for _, op := range sc.Operations {
		p.Operations = append(p.Operations, operationProto[op])
	}
	return p
}

func timeProto(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func apiKeyProto(k APIKey) *identityv1.ApiKey {
	return &identityv1.ApiKey{
		OrganizationId: k.OrganizationID,
		ApiKeyId:       k.ID,
		DisplayName:    k.DisplayName,
		OwnerKind:      kindProto(k.Kind),
		OwnerId:        k.OwnerID(),
		TeamId:         k.TeamID,
		Subject:        k.Subject,
		Prefix:         k.Prefix,
		Scopes:         scopesProto(k.Scopes),
		CreateTime:     timeProto(k.CreateTime),
		ExpireTime:     timeProto(k.ExpireTime),
		RevokeTime:     timeProto(k.RevokeTime),
	}
}
