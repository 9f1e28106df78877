package identity

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"regexp"
	"slices"
	"strings"
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

// idPattern is what resource ids that callers choose may look like.
var idPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,127}$`)

// subjectPrefix is how a key's Subject names its owner's kind: "user:alice", "svc:billing".
var subjectPrefix = map[Kind]string{KindUser: "user:", KindServiceAccount: "svc:"}

// CreateApiKey implements identityv1.IdentityServiceServer.
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
		bad("api_key_id", "must be 1 to 128 characters of a-z, 0-9, '.', '_' and '-', starting with a letter or digit")
	}
	kind := kindOf(req.GetOwnerKind())
	if kind == "" {
		bad("owner_kind", "must be PRINCIPAL_KIND_USER or PRINCIPAL_KIND_SERVICE_ACCOUNT")
	}
	if !idPattern.MatchString(req.GetOwnerId()) {
		bad("owner_id", "must be 1 to 128 characters of a-z, 0-9, '.', '_' and '-', starting with a letter or digit")
	}
	now := s.now()
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
	if id == "" {
		id = newID("key-")
	}
	secret, err := NewKey()
	if err != nil {
		return nil, toStatus(err)
	}
	k := APIKey{
		ID: id, OrganizationID: org, DisplayName: req.GetDisplayName(),
		Subject: subjectPrefix[kind] + req.GetOwnerId(), Kind: kind,
		Scopes: scopes, Prefix: Prefix(secret), Hash: HashKey(secret),
		ExpireTime: expire, CreateTime: now,
	}
	if err := s.store.CreateAPIKey(ctx, k); err != nil {
		return nil, s.fail(ctx, "create api key", err)
	}
	s.log.InfoContext(ctx, "api key created", "organization_id", org, "api_key_id", id, "subject", k.Subject)
	return &identityv1.CreateApiKeyResponse{ApiKey: apiKeyProto(k), Secret: secret}, nil
}

// ListApiKeys implements identityv1.IdentityServiceServer. The page token is the last id
// of the previous page, encoded.
func (s *Server) ListApiKeys(ctx context.Context, req *identityv1.ListApiKeysRequest) (*identityv1.ListApiKeysResponse, error) {
	size, after, err := page(req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	if req.GetOrganizationId() == "" {
		return nil, apierr.Field("organization_id", "is required")
	}
	keys, err := s.store.ListAPIKeys(ctx, req.GetOrganizationId())
	if err != nil {
		return nil, s.fail(ctx, "list api keys", err)
	}
	start, _ := slices.BinarySearchFunc(keys, after, func(k APIKey, id string) int { return strings.Compare(k.ID, id) })
	if start < len(keys) && keys[start].ID == after {
		start++
	}
	resp := &identityv1.ListApiKeysResponse{}
	end := min(start+size, len(keys))
	for _, k := range keys[start:end] {
		resp.ApiKeys = append(resp.ApiKeys, apiKeyProto(k))
	}
	if end < len(keys) {
		resp.NextPageToken = base64.RawURLEncoding.EncodeToString([]byte(keys[end-1].ID))
	}
	return resp, nil
}

// RevokeApiKey implements identityv1.IdentityServiceServer.
func (s *Server) RevokeApiKey(ctx context.Context, req *identityv1.RevokeApiKeyRequest) (*identityv1.RevokeApiKeyResponse, error) {
	var vs []apierr.FieldViolation
	if req.GetOrganizationId() == "" {
		vs = append(vs, apierr.FieldViolation{Field: "organization_id", Description: "is required"})
	}
	if req.GetApiKeyId() == "" {
		vs = append(vs, apierr.FieldViolation{Field: "api_key_id", Description: "is required"})
	}
	if len(vs) > 0 {
		return nil, apierr.InvalidArgument(vs...)
	}
	if err := s.store.RevokeAPIKey(ctx, req.GetOrganizationId(), req.GetApiKeyId(), s.now()); err != nil {
		return nil, s.fail(ctx, "revoke api key", err)
	}
	k, err := s.store.GetAPIKey(ctx, req.GetOrganizationId(), req.GetApiKeyId())
	if err != nil {
		return nil, s.fail(ctx, "revoke api key", err)
	}
	s.log.InfoContext(ctx, "api key revoked", "organization_id", k.OrganizationID, "api_key_id", k.ID)
	return &identityv1.RevokeApiKeyResponse{ApiKey: apiKeyProto(k)}, nil
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

// ownerID is the owner's id within its kind: the key's subject without "user:" or "svc:".
func ownerID(k APIKey) string {
	return strings.TrimPrefix(k.Subject, subjectPrefix[k.Kind])
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
		OwnerId:        ownerID(k),
		Subject:        k.Subject,
		Prefix:         k.Prefix,
		Scopes:         scopesProto(k.Scopes),
		CreateTime:     timeProto(k.CreateTime),
		ExpireTime:     timeProto(k.ExpireTime),
		RevokeTime:     timeProto(k.RevokeTime),
	}
}
