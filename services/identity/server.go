package identity

import (
	"context"
	"crypto/subtle"
	"errors"
	"log/slog"
	"maps"
	"slices"
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
	refusedDisabled  refusal = "owner_disabled"
)

// ReasonInvalidAPIKey is the ErrorInfo reason of every refused credential.
const ReasonInvalidAPIKey = "INVALID_API_KEY"

func errInvalidKey() error {
	return apierr.WithReason(codes.Unauthenticated, ReasonInvalidAPIKey, "invalid credential")
}

// Authenticate resolves an API key, presented with or without a "Bearer " prefix, or an
// OIDC bearer token, to its principal. Every refusal is UNAUTHENTICATED with the same
// message. Neither logs nor errors ever contain the credential. An API key costs one store
// read (Store.GetCredential), a bearer token one (Store.Grants).
func (s *Server) Authenticate(ctx context.Context, req *identityv1.AuthenticateRequest) (*identityv1.AuthenticateResponse, error) {
	if c := bearer(req.GetCredential()); looksLikeJWT(c) {
		return s.authenticateToken(ctx, c)
	}
	c, why, err := s.authenticate(ctx, req.GetCredential())
	if err != nil {
		s.log.ErrorContext(ctx, "authenticate", "error", err)
		return nil, toStatus(err)
	}
	if why != "" {
		attrs := []any{"refused", string(why)}
		if c.Key.ID != "" {
			attrs = append(attrs, "organization_id", c.Key.OrganizationID, "api_key_id", c.Key.ID)
		}
		s.log.InfoContext(ctx, "authenticate", attrs...)
		return nil, errInvalidKey()
	}
	return &identityv1.AuthenticateResponse{Principal: principal(c)}, nil
}

// authenticateToken is Authenticate for a credential of JWT shape. Its refusals are those
// of API keys: the same code, message and reason.
func (s *Server) authenticateToken(ctx context.Context, raw string) (*identityv1.AuthenticateResponse, error) {
	if len(s.issuers) == 0 {
		s.log.InfoContext(ctx, "authenticate", "refused", string(refusedTokenIssuer))
		return nil, errInvalidKey()
	}
	p, why, err := s.authenticateJWT(ctx, raw)
	if err == nil && why == "" {
		var g Grants
		if g, err = s.store.Grants(ctx, p.GetOrganizationId(), p.GetTeamId(), p.GetRoles()); err == nil {
			grant(p, g, nil)
		}
	}
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

// authenticate returns the credential the secret belongs to, or why it was refused, or an
// error when the store failed.
func (s *Server) authenticate(ctx context.Context, credential string) (Credential, refusal, error) {
	secret := bearer(credential)
	if secret == "" {
		return Credential{}, refusedEmpty, nil
	}
	// No stored key can match a secret that ValidateSecret refuses, so do not look it up.
	if ValidateSecret(secret) != nil {
		return Credential{}, refusedMalformed, nil
	}
	hash := HashKey(secret)
	c, err := s.store.GetCredential(ctx, hash)
	if errors.Is(err, ErrNotFound) {
		return Credential{}, refusedUnknown, nil
	}
	if err != nil {
		return Credential{}, "", err
	}
	k := c.Key
	// The store found the key by its hash, yet compare again, in constant time: a store that
	// matched loosely (a collation, a prefix index) must not let a wrong key through.
	if subtle.ConstantTimeCompare(k.Hash[:], hash[:]) != 1 {
		return Credential{}, refusedUnknown, nil
	}
	now := s.now()
	switch {
	case !k.RevokeTime.IsZero() && !now.Before(k.RevokeTime):
		return c, refusedRevoked, nil
	case !k.ExpireTime.IsZero() && !now.Before(k.ExpireTime):
		return c, refusedExpired, nil
	case c.Owner != nil && c.Owner.Disabled:
		return c, refusedDisabled, nil
	}
	return c, "", nil
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

// principal is the principal of an API key: with its owner's team, roles and attributes
// when the owner is stored, else the key's own.
func principal(c Credential) *identityv1.Principal {
	k := c.Key
	team, roles, attrs := k.TeamID, k.Roles, k.Attributes
	if o := c.Owner; o != nil {
		team, roles, attrs = o.TeamID, o.Roles, o.Attributes
	}
	p := &identityv1.Principal{
		OrganizationId: k.OrganizationID,
		Subject:        k.Subject,
		Kind:           kindProto(k.Kind),
		TeamId:         team,
		Roles:          slices.Clone(roles),
		ApiKeyId:       k.ID,
		Scopes:         scopesProto(k.Scopes),
		ExpireTime:     timeProto(earliestSet(k.ExpireTime, k.RevokeTime)),
	}
	grant(p, c.Grants, attrs)
	return p
}

// grant sets p's attributes (the team's, overridden by own), permissions and accepted
// licences. p.TeamId and p.Roles are set.
func grant(p *identityv1.Principal, g Grants, own map[string]string) {
	if len(own) > 0 || len(g.TeamAttributes) > 0 {
		p.Attributes = cloneMap(g.TeamAttributes)
		if p.Attributes == nil {
			p.Attributes = make(map[string]string, len(own))
		}
		maps.Copy(p.Attributes, own)
	}
	org, team := PrincipalPermissions(p.GetRoles(), g.CustomRoles, p.GetTeamId() != "")
	p.Permissions, p.TeamPermissions = permissionStrings(org), permissionStrings(team)
	for _, a := range g.Licenses {
		p.AcceptedLicenses = append(p.AcceptedLicenses, licenseProto(a))
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
	}
	if e, ok := errors.AsType[*NotFoundError](err); ok {
		return status.Error(codes.NotFound, e.Error())
	}
	if e, ok := errors.AsType[*AlreadyExistsError](err); ok {
		return status.Error(codes.AlreadyExists, e.Error())
	}
	if e, ok := errors.AsType[*InUseError](err); ok {
		return apierr.WithReason(codes.FailedPrecondition, ReasonInUse, e.Error())
	}
	if e, ok := errors.AsType[*OwnerError](err); ok {
		if e.Disabled {
			return apierr.WithReason(codes.FailedPrecondition, ReasonOwnerDisabled, "owner_id: "+e.Error())
		}
		return apierr.WithReason(codes.NotFound, ReasonOwnerNotFound, "owner_id: "+e.Error())
	}
	switch {
	case errors.Is(err, ErrEtagMismatch):
		return status.Error(codes.Aborted, err.Error())
	case errors.Is(err, ErrBuiltinRole):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, ErrNotFound):
		return status.Error(codes.NotFound, "not found")
	case errors.Is(err, ErrAlreadyExists):
		// Only two keys with one hash: say no more.
		return status.Error(codes.AlreadyExists, "api key already exists")
	}
	if vs := violations(err); len(vs) > 0 {
		return apierr.InvalidArgument(vs...)
	}
	// The caller learns nothing of an unexpected error; Authenticate has logged it.
	return status.Error(codes.Internal, "internal error")
}

// Reasons (ErrorInfo) of FAILED_PRECONDITION and NOT_FOUND errors that callers may act on.
const (
	ReasonInUse         = "RESOURCE_IN_USE"
	ReasonOwnerNotFound = "OWNER_NOT_FOUND"
	ReasonOwnerDisabled = "OWNER_DISABLED"
)

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
