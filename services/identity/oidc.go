package identity

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	identityv1 "github.com/fmgate/fmgate/gen/fmgate/identity/v1"
)

// DefaultSigningAlgorithms are the JWT algorithms an OIDCIssuer accepts unless it names
// others. "none" and the HMAC algorithms are never accepted: a shared secret would let any
// holder mint tokens.
var DefaultSigningAlgorithms = []string{oidc.RS256, oidc.ES256}

// OIDCIssuer trusts the bearer tokens (JWTs) of one OpenID Connect issuer for one
// organisation. Issuers are configuration, not resources: they decide who can reach every
// API, so they change through the same review as the rest of the deployment.
type OIDCIssuer struct {
	OrganizationID string
	// IssuerURL must equal the tokens' "iss" claim. Unless JWKS is set, the signing keys come
	// from IssuerURL + "/.well-known/openid-configuration" and the jwks_uri it names,
	// fetched on first use and when an unknown key id appears.
	IssuerURL string
	// Audience must be among the tokens' "aud" claim.
	Audience string
	// JWKS, when set, holds the signing keys and no discovery happens.
	JWKS *jose.JSONWebKeySet
	// ClockSkew is how far exp, nbf and iat may be off; zero allows none.
	ClockSkew time.Duration
	// SigningAlgorithms accepted; DefaultSigningAlgorithms if empty.
	SigningAlgorithms []string
	// GroupsClaim names the claim (a string or a list of strings) whose values GroupRoles
	// and GroupTeams map; "groups" if empty.
	GroupsClaim string
	// GroupRoles maps a group to the roles its members get. Roles are the union over the
	// token's groups; groups not mapped give nothing.
	GroupRoles map[string][]string
	// TeamClaim, if set, names a string claim holding the team id.
	TeamClaim string
	// GroupTeams maps a group to a team, used when TeamClaim is unset or absent from the
	// token: the team of the first mapped group in sorted order.
	GroupTeams map[string]string
	// HTTPClient fetches discovery documents and keys; http.DefaultClient if nil.
	HTTPClient *http.Client
}

// Validate reports every problem with the issuer at once.
func (o OIDCIssuer) Validate() error {
	var errs []error
	bad := func(field, problem string) { errs = append(errs, &ValidationError{Field: field, Problem: problem}) }
	if o.OrganizationID == "" {
		bad("organization_id", "is required")
	}
	if !strings.HasPrefix(o.IssuerURL, "https://") && !strings.HasPrefix(o.IssuerURL, "http://") {
		bad("issuer_url", "must be an http(s) URL")
	}
	if o.Audience == "" {
		bad("audience", "is required")
	}
	if o.ClockSkew < 0 || o.ClockSkew > 10*time.Minute {
		bad("clock_skew", "must be between 0 and 10 minutes")
	}
	for _, alg := range o.SigningAlgorithms {
		if alg == "none" || strings.HasPrefix(alg, "HS") || !slices.Contains(supportedAlgs, alg) {
			bad("signing_algorithms", fmt.Sprintf("%q is not an accepted algorithm", alg))
		}
	}
	return errors.Join(errs...)
}

var supportedAlgs = []string{oidc.RS256, oidc.RS384, oidc.RS512, oidc.ES256, oidc.ES384, oidc.ES512,
	oidc.PS256, oidc.PS384, oidc.PS512, oidc.EdDSA}

// issuer is a configured OIDCIssuer with its verifier, built on first use.
type issuer struct {
	cfg  OIDCIssuer
	algs []string

	mu       sync.Mutex
	verifier *oidc.IDTokenVerifier
}

func newIssuer(cfg OIDCIssuer) *issuer {
	algs := cfg.SigningAlgorithms
	if len(algs) == 0 {
		algs = DefaultSigningAlgorithms
	}
	if cfg.GroupsClaim == "" {
		cfg.GroupsClaim = "groups"
	}
	return &issuer{cfg: cfg, algs: algs}
}

// verifierFor returns the issuer's verifier, discovering its keys the first time. A failed
// discovery is retried by the next token.
func (is *issuer) verifierFor(ctx context.Context) (*oidc.IDTokenVerifier, error) {
	is.mu.Lock()
	defer is.mu.Unlock()
	if is.verifier != nil {
		return is.verifier, nil
	}
	// Expiry is checked by verifyJWT with the configured skew; go-oidc allows none.
	vc := &oidc.Config{ClientID: is.cfg.Audience, SupportedSigningAlgs: is.algs, SkipExpiryCheck: true}
	if is.cfg.JWKS != nil {
		var keys []crypto.PublicKey
		for _, k := range is.cfg.JWKS.Keys {
			keys = append(keys, k.Key)
		}
		is.verifier = oidc.NewVerifier(is.cfg.IssuerURL, &oidc.StaticKeySet{PublicKeys: keys}, vc)
		return is.verifier, nil
	}
	client := is.cfg.HTTPClient
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	// The provider keeps this context for later key fetches: it must outlive the request,
	// so the client's timeout bounds discovery instead.
	pctx := oidc.ClientContext(context.WithoutCancel(ctx), client)
	p, err := oidc.NewProvider(pctx, is.cfg.IssuerURL)
	if err != nil {
		return nil, fmt.Errorf("oidc discovery of %s: %w", is.cfg.IssuerURL, err)
	}
	is.verifier = p.VerifierContext(pctx, vc)
	return is.verifier, nil
}

// looksLikeJWT reports whether a credential has the shape of a compact JWS: three
// base64url segments, the header a JSON object ("eyJ" is base64 for `{"`). API keys have
// no dots.
func looksLikeJWT(c string) bool {
	return strings.Count(c, ".") == 2 && strings.HasPrefix(c, "eyJ")
}

const (
	refusedTokenMalformed refusal = "token_malformed"
	refusedTokenIssuer    refusal = "token_unknown_issuer"
	refusedTokenSignature refusal = "token_invalid"
	refusedTokenExpired   refusal = "token_expired"
	refusedTokenEarly     refusal = "token_not_yet_valid"
	refusedTokenSubject   refusal = "token_no_subject"
)

// tokenClaims are the claims fmgate reads; the rest go to claimsFor.
type tokenClaims struct {
	Issuer    string           `json:"iss"`
	Subject   string           `json:"sub"`
	Audience  jwt.Audience     `json:"aud"`
	Expiry    *jwt.NumericDate `json:"exp"`
	NotBefore *jwt.NumericDate `json:"nbf"`
	IssuedAt  *jwt.NumericDate `json:"iat"`
}

// authenticateJWT verifies a bearer token against the configured issuers and returns its
// principal, or why it was refused, or an error when verification could not be attempted
// (the issuer's discovery failed).
func (s *Server) authenticateJWT(ctx context.Context, raw string) (*identityv1.Principal, refusal, error) {
	tok, err := jwt.ParseSigned(raw, s.jwtAlgs)
	if err != nil {
		return nil, refusedTokenMalformed, nil
	}
	var unverified tokenClaims
	if err := tok.UnsafeClaimsWithoutVerification(&unverified); err != nil {
		return nil, refusedTokenMalformed, nil
	}
	var is *issuer
	for _, cand := range s.issuers {
		if cand.cfg.IssuerURL == unverified.Issuer && unverified.Audience.Contains(cand.cfg.Audience) {
			is = cand
			break
		}
	}
	if is == nil {
		return nil, refusedTokenIssuer, nil
	}
	v, err := is.verifierFor(ctx)
	if err != nil {
		return nil, "", err
	}
	idt, err := v.Verify(ctx, raw)
	if err != nil {
		if ctx.Err() != nil {
			return nil, "", ctx.Err()
		}
		return nil, refusedTokenSignature, nil
	}
	var c tokenClaims
	var all map[string]any
	if idt.Claims(&c) != nil || idt.Claims(&all) != nil {
		return nil, refusedTokenMalformed, nil
	}
	now, skew := s.now(), is.cfg.ClockSkew
	switch {
	case c.Expiry == nil || !now.Before(c.Expiry.Time().Add(skew)):
		return nil, refusedTokenExpired, nil
	case c.NotBefore != nil && now.Add(skew).Before(c.NotBefore.Time()):
		return nil, refusedTokenEarly, nil
	case c.IssuedAt != nil && now.Add(skew).Before(c.IssuedAt.Time()):
		return nil, refusedTokenEarly, nil
	case c.Subject == "":
		return nil, refusedTokenSubject, nil
	}
	team, roles := is.mapGroups(all)
	return &identityv1.Principal{
		OrganizationId: is.cfg.OrganizationID,
		Subject:        "oidc:" + c.Subject,
		Kind:           identityv1.PrincipalKind_PRINCIPAL_KIND_USER,
		TeamId:         team,
		Roles:          roles,
		ExpireTime:     timeProto(c.Expiry.Time()),
		Issuer:         is.cfg.IssuerURL,
	}, "", nil
}

// mapGroups turns the token's team claim and groups into a team and sorted roles.
func (is *issuer) mapGroups(claims map[string]any) (string, []string) {
	var groups []string
	switch g := claims[is.cfg.GroupsClaim].(type) {
	case string:
		groups = []string{g}
	case []any:
		for _, v := range g {
			if s, ok := v.(string); ok {
				groups = append(groups, s)
			}
		}
	}
	slices.Sort(groups)
	var roles []string
	team := ""
	if is.cfg.TeamClaim != "" {
		team, _ = claims[is.cfg.TeamClaim].(string)
	}
	for _, g := range groups {
		roles = append(roles, is.cfg.GroupRoles[g]...)
		if t, ok := is.cfg.GroupTeams[g]; ok && team == "" {
			team = t
		}
	}
	slices.Sort(roles)
	return team, slices.Compact(roles)
}

// jwtAlgorithms is every algorithm some issuer accepts, for the first, unverified parse.
func jwtAlgorithms(issuers []*issuer) []jose.SignatureAlgorithm {
	var out []jose.SignatureAlgorithm
	for _, is := range issuers {
		for _, a := range is.algs {
			if !slices.Contains(out, jose.SignatureAlgorithm(a)) {
				out = append(out, jose.SignatureAlgorithm(a))
			}
		}
	}
	return out
}
