package identity

import (
	"context"
	"crypto/subtle"
	"errors"
	"log/slog"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	identityv1 "github.com/fmgate/fmgate/gen/fmgate/identity/v1"
	"github.com/fmgate/fmgate/internal/apierr"
)

// Config holds the Server's optional knobs; its zero value works.
type Config struct {
	// Clock tells the time against which expiry and revocation are checked; time.Now if nil.
	Clock func() time.Time
	// HeartbeatInterval is how often WatchRevocations sends a heartbeat;
	// DefaultHeartbeatInterval if zero.
	HeartbeatInterval time.Duration
	// OIDCIssuers are the issuers whose bearer tokens Authenticate accepts. An issuer that
	// fails Validate is logged and ignored: its tokens are refused.
	OIDCIssuers []OIDCIssuer
}

// Server implements identityv1.IdentityServiceServer.
type Server struct {
	identityv1.UnimplementedIdentityServiceServer
	store     Store
	log       *slog.Logger
	now       func() time.Time
	heartbeat time.Duration
	issuers   []*issuer
	jwtAlgs   []jose.SignatureAlgorithm
}

// NewServer returns a Server that authenticates against store.
func NewServer(store Store, log *slog.Logger, cfg Config) *Server {
	now := cfg.Clock
	if now == nil {
		now = time.Now
	}
	heartbeat := cfg.HeartbeatInterval
	if heartbeat <= 0 {
		heartbeat = DefaultHeartbeatInterval
	}
	s := &Server{store: store, log: log, now: now, heartbeat: heartbeat}
	for _, is := range cfg.OIDCIssuers {
		if err := is.Validate(); err != nil {
			log.Error("oidc issuer ignored", "issuer_url", is.IssuerURL, "organization_id", is.OrganizationID, "error", err)
			continue
		}
		s.issuers = append(s.issuers, newIssuer(is))
	}
	s.jwtAlgs = jwtAlgorithms(s.issuers)
	return s
}

// Register adds the service to r. All-in-one and mesh make the same call.
func (s *Server) Register(r grpc.ServiceRegistrar) { identityv1.RegisterIdentityServiceServer(r, s) }

// refusal is why a credential was refused. Only the log sees it: the caller always gets
// errInvalidKey, so that it cannot tell an unknown key from an expired or revoked one.
type refusal string

const (
	refusedEmpty     refusal = "empty"
	refusedMalformed refusal = "malformed"
	refusedUnknown   refusal = "unknown"
	refusedExpired   refusal = "expired"
	refusedRevoked   refusal = "revoked"
)

// ReasonInvalidAPIKey is the ErrorInfo reason of every refused credential.
const ReasonInvalidAPIKey = "INVALID_API_KEY"

func errInvalidKey() error {
	return apierr.WithReason(codes.Unauthenticated, ReasonInvalidAPIKey, "invalid credential")
}

// Authenticate resolves an API key, presented with or without a "Bearer " prefix, to its
// principal. Every refusal is UNAUTHENTICATED with the same message. Neither logs nor errors
// ever contain the credential.
func (s *Server) Authenticate(ctx context.Context, req *identityv1.AuthenticateRequest) (*identityv1.AuthenticateResponse, error) {
	if c := bearer(req.GetCredential()); looksLikeJWT(c) {
		return s.authenticateToken(ctx, c)
	}
	k, why, err := s.authenticate(ctx, req.GetCredential())
	if err != nil {
		s.log.ErrorContext(ctx, "authenticate", "error", err)
		return nil, toStatus(err)
	}
	if why != "" {
		attrs := []any{"refused", string(why)}
		if k.ID != "" {
			attrs = append(attrs, "organization_id", k.OrganizationID, "api_key_id", k.ID)
		}
		s.log.InfoContext(ctx, "authenticate", attrs...)
		return nil, errInvalidKey()
	}
	return &identityv1.AuthenticateResponse{Principal: principal(k)}, nil
}

// authenticateToken is Authenticate for a credential of JWT shape. Its refusals are those
// of API keys: the same code, message and reason.
func (s *Server) authenticateToken(ctx context.Context, raw string) (*identityv1.AuthenticateResponse, error) {
	if len(s.issuers) == 0 {
		s.log.InfoContext(ctx, "authenticate", "refused", string(refusedTokenIssuer))
		return nil, errInvalidKey()
	}
	p, why, err := s.authenticateJWT(ctx, raw)
	if err != nil {
		s.log.ErrorContext(ctx, "authenticate", "error", err)
		return nil, toStatus(err)
	}
	if why != "" {
		s.log.InfoContext(ctx, "authenticate", "refused", string(why))
		return nil, errInvalidKey()
	}
	return &identityv1.AuthenticateResponse{Principal: p}, nil
}

// authenticate returns the key the credential belongs to, or why it was refused, or an
// error when the store failed.
func (s *Server) authenticate(ctx context.Context, credential string) (APIKey, refusal, error) {
	secret := bearer(credential)
	if secret == "" {
		return APIKey{}, refusedEmpty, nil
	}
	// No stored key can match a secret that ValidateSecret refuses, so do not look it up.
	if ValidateSecret(secret) != nil {
		return APIKey{}, refusedMalformed, nil
	}
	hash := HashKey(secret)
	k, err := s.store.GetAPIKeyByHash(ctx, hash)
	if errors.Is(err, ErrNotFound) {
		return APIKey{}, refusedUnknown, nil
	}
	if err != nil {
		return APIKey{}, "", err
	}
	// The store found the key by its hash, yet compare again, in constant time: a store that
	// matched loosely (a collation, a prefix index) must not let a wrong key through.
	if subtle.ConstantTimeCompare(k.Hash[:], hash[:]) != 1 {
		return APIKey{}, refusedUnknown, nil
	}
	now := s.now()
	if !k.RevokeTime.IsZero() && !now.Before(k.RevokeTime) {
		return k, refusedRevoked, nil
	}
	if !k.ExpireTime.IsZero() && !now.Before(k.ExpireTime) {
		return k, refusedExpired, nil
	}
	return k, "", nil
}

// bearer strips an optional "Bearer " scheme (case-insensitive, as in RFC 9110) and the
// surrounding spaces.
func bearer(credential string) string {
	c := strings.TrimSpace(credential)
	const scheme = "bearer "
	if len(c) >= len(scheme) && strings.EqualFold(c[:len(scheme)], scheme) {
		c = strings.TrimSpace(c[len(scheme):])
	}
	return c
}

func principal(k APIKey) *identityv1.Principal {
	kind := identityv1.PrincipalKind_PRINCIPAL_KIND_UNSPECIFIED
	switch k.Kind {
	case KindUser:
		kind = identityv1.PrincipalKind_PRINCIPAL_KIND_USER
	case KindServiceAccount:
		kind = identityv1.PrincipalKind_PRINCIPAL_KIND_SERVICE_ACCOUNT
	}
	return &identityv1.Principal{
		OrganizationId: k.OrganizationID,
		Subject:        k.Subject,
		Kind:           kind,
		TeamId:         k.TeamID,
		Roles:          append([]string(nil), k.Roles...),
		Attributes:     cloneMap(k.Attributes),
		ApiKeyId:       k.ID,
		Scopes:         scopesProto(k.Scopes),
		ExpireTime:     timeProto(earliestSet(k.ExpireTime, k.RevokeTime)),
	}
}

// earliestSet returns the earlier of two times, a zero time counting as absent.
func earliestSet(a, b time.Time) time.Time {
	switch {
	case a.IsZero():
		return b
	case b.IsZero() || a.Before(b):
		return a
	}
	return b
}

func cloneMap(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// toStatus turns a domain or store error into the gRPC status the caller sees. It is the one
// place where identity errors become codes.
func toStatus(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, "request canceled")
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, "deadline exceeded")
	case errors.Is(err, ErrNotFound):
		return status.Error(codes.NotFound, "api key not found")
	case errors.Is(err, ErrAlreadyExists):
		return status.Error(codes.AlreadyExists, "api key already exists")
	}
	if vs := violations(err); len(vs) > 0 {
		return apierr.InvalidArgument(vs...)
	}
	// The caller learns nothing of an unexpected error; Authenticate has logged it.
	return status.Error(codes.Internal, "internal error")
}

// violations collects every *ValidationError in err's tree (Validate joins them).
func violations(err error) []apierr.FieldViolation {
	if ve, ok := err.(*ValidationError); ok {
		return []apierr.FieldViolation{{Field: ve.Field, Description: ve.Problem}}
	}
	var out []apierr.FieldViolation
	switch u := err.(type) {
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			out = append(out, violations(e)...)
		}
	case interface{ Unwrap() error }:
		out = violations(u.Unwrap())
	}
	return out
}
