package identity_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	identityv1 "github.com/fmgate/fmgate/gen/fmgate/identity/v1"
	"github.com/fmgate/fmgate/services/identity"
	"github.com/fmgate/fmgate/services/identity/identitymem"
)

// oidcIssuer is a local OpenID Connect issuer: a discovery document, a JWKS, and a key
// that signs tokens.
type oidcIssuer struct {
	url       string
	key       *rsa.PrivateKey
	jwks      jose.JSONWebKeySet
	jwksFetch atomic.Int32
}

func startIssuer(t *testing.T) *oidcIssuer {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	is := &oidcIssuer{key: key, jwks: jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
		{Key: key.Public(), KeyID: "k1", Algorithm: "RS256", Use: "sig"},
	}}}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer": is.url, "jwks_uri": is.url + "/keys",
			"authorization_endpoint": is.url + "/auth", "token_endpoint": is.url + "/token",
			"id_token_signing_alg_values_supported": []string{"RS256"},
		})
	})
	mux.HandleFunc("/keys", func(w http.ResponseWriter, _ *http.Request) {
		is.jwksFetch.Add(1)
		_ = json.NewEncoder(w).Encode(is.jwks)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	is.url = srv.URL
	return is
}

// sign returns a token with claims, signed by key with alg and key id "k1".
func sign(t *testing.T, key any, alg jose.SignatureAlgorithm, claims map[string]any) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "k1"))
	require.NoError(t, err)
	tok, err := jwt.Signed(signer).Claims(claims).Serialize()
	require.NoError(t, err)
	return tok
}

func (is *oidcIssuer) claims(edit func(map[string]any)) map[string]any {
	c := map[string]any{
		"iss": is.url, "aud": []string{"fmgate"}, "sub": "alice",
		"iat": now.Add(-time.Minute).Unix(), "nbf": now.Add(-time.Minute).Unix(), "exp": now.Add(time.Hour).Unix(),
		"groups": []string{"ml-admins", "everyone", "unmapped"},
	}
	if edit != nil {
		edit(c)
	}
	return c
}

func oidcServer(t *testing.T, issuers ...identity.OIDCIssuer) identityv1.IdentityServiceClient {
	t.Helper()
	log, _ := testLogger(t)
	srv := identity.NewServer(identitymem.New(), log, identity.Config{
		Clock: func() time.Time { return now }, OIDCIssuers: issuers,
	})
	return identityv1.NewIdentityServiceClient(serveConn(t, srv))
}

func issuerConfig(is *oidcIssuer) identity.OIDCIssuer {
	return identity.OIDCIssuer{
		OrganizationID: "org-a", IssuerURL: is.url, Audience: "fmgate", ClockSkew: 30 * time.Second,
		GroupRoles: map[string][]string{"ml-admins": {"model_admin", "developer"}, "everyone": {"viewer", "developer"}},
		GroupTeams: map[string]string{"ml-admins": "team-ml"},
	}
}

func TestAuthenticateJWT(t *testing.T) {
	is := startIssuer(t)
	c := oidcServer(t, issuerConfig(is))
	tok := sign(t, is.key, jose.RS256, is.claims(nil))
	for range 3 {
		resp, err := c.Authenticate(t.Context(), &identityv1.AuthenticateRequest{Credential: "Bearer " + tok})
		require.NoError(t, err)
		p := resp.GetPrincipal()
		assert.Equal(t, "org-a", p.GetOrganizationId())
		assert.Equal(t, "oidc:alice", p.GetSubject())
		assert.Equal(t, identityv1.PrincipalKind_PRINCIPAL_KIND_USER, p.GetKind())
		assert.Equal(t, "team-ml", p.GetTeamId())
		assert.Equal(t, []string{"developer", "model_admin", "viewer"}, p.GetRoles())
		assert.Equal(t, is.url, p.GetIssuer())
		assert.Empty(t, p.GetApiKeyId())
		assert.Equal(t, now.Add(time.Hour), p.GetExpireTime().AsTime())
	}
	assert.Equal(t, int32(1), is.jwksFetch.Load(), "keys are fetched once and cached")

	// A team claim wins over group mapping.
	cfg := issuerConfig(is)
	cfg.TeamClaim = "team"
	c = oidcServer(t, cfg)
	resp, err := c.Authenticate(t.Context(), &identityv1.AuthenticateRequest{
		Credential: sign(t, is.key, jose.RS256, is.claims(func(m map[string]any) { m["team"] = "team-risk"; m["groups"] = "everyone" })),
	})
	require.NoError(t, err)
	assert.Equal(t, "team-risk", resp.GetPrincipal().GetTeamId())
	assert.Equal(t, []string{"developer", "viewer"}, resp.GetPrincipal().GetRoles())
}

func TestAuthenticateJWTStaticJWKS(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	cfg := identity.OIDCIssuer{
		OrganizationID: "org-b", IssuerURL: "https://login.example.invalid", Audience: "fmgate",
		JWKS: &jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.Public(), KeyID: "k1", Algorithm: "ES256"}}},
	}
	c := oidcServer(t, cfg)
	tok := sign(t, key, jose.ES256, map[string]any{
		"iss": cfg.IssuerURL, "aud": "fmgate", "sub": "bob", "exp": now.Add(time.Minute).Unix(),
	})
	resp, err := c.Authenticate(t.Context(), &identityv1.AuthenticateRequest{Credential: tok})
	require.NoError(t, err, "no discovery: the issuer URL does not resolve")
	assert.Equal(t, "org-b", resp.GetPrincipal().GetOrganizationId())
	assert.Empty(t, resp.GetPrincipal().GetRoles())
}

func TestAuthenticateJWTRefusalsLookAlike(t *testing.T) {
	is := startIssuer(t)
	other := startIssuer(t) // an issuer fmgate does not trust
	c := oidcServer(t, issuerConfig(is))
	forged, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	edit := func(f func(map[string]any)) string { return sign(t, is.key, jose.RS256, is.claims(f)) }
	valid := edit(nil)
	parts := strings.Split(valid, ".")

	algNone := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT","kid":"k1"}`)) + "." + parts[1] + "."
	hs256, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: []byte("a shared secret of 32 bytes!!!!!")}, nil)
	require.NoError(t, err)
	hsTok, err := jwt.Signed(hs256).Claims(is.claims(nil)).Serialize()
	require.NoError(t, err)

	tokens := map[string]string{
		"wrong audience":          edit(func(m map[string]any) { m["aud"] = "someone-else" }),
		"expired":                 edit(func(m map[string]any) { m["exp"] = now.Add(-31 * time.Second).Unix() }),
		"no expiry":               edit(func(m map[string]any) { delete(m, "exp") }),
		"not yet valid":           edit(func(m map[string]any) { m["nbf"] = now.Add(31 * time.Second).Unix() }),
		"issued in the future":    edit(func(m map[string]any) { m["iat"] = now.Add(time.Minute).Unix() }),
		"no subject":              edit(func(m map[string]any) { delete(m, "sub") }),
		"unknown issuer":          sign(t, other.key, jose.RS256, other.claims(nil)),
		"issuer claims another":   sign(t, other.key, jose.RS256, is.claims(nil)),
		"bad signature":           sign(t, forged, jose.RS256, is.claims(nil)),
		"tampered payload":        parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"iss":"`+is.url+`","aud":"fmgate","sub":"root","exp":9999999999}`)) + "." + parts[2],
		"alg none":                algNone,
		"alg HS256":               hsTok,
		"garbage with a JWT look": "eyJhbGciOiJSUzI1NiJ9.bm90IGpzb24.c2ln",
	}
	for name, tok := range tokens {
		t.Run(name, func(t *testing.T) {
			_, err := c.Authenticate(t.Context(), &identityv1.AuthenticateRequest{Credential: "Bearer " + tok})
			st := status.Convert(err)
			assert.Equal(t, codes.Unauthenticated, st.Code())
			assert.Equal(t, "invalid credential", st.Message())
			require.Len(t, st.Details(), 1)
			assert.Equal(t, identity.ReasonInvalidAPIKey, st.Details()[0].(*errdetails.ErrorInfo).GetReason())
		})
	}

	// Within the skew, the same token shapes pass.
	for name, tok := range map[string]string{
		"expired within skew":       edit(func(m map[string]any) { m["exp"] = now.Add(-29 * time.Second).Unix() }),
		"not yet valid within skew": edit(func(m map[string]any) { m["nbf"] = now.Add(29 * time.Second).Unix() }),
	} {
		_, err := c.Authenticate(t.Context(), &identityv1.AuthenticateRequest{Credential: tok})
		assert.NoError(t, err, name)
	}
}

func TestAuthenticateJWTWithoutIssuers(t *testing.T) {
	is := startIssuer(t)
	c := oidcServer(t)
	_, err := c.Authenticate(t.Context(), &identityv1.AuthenticateRequest{Credential: sign(t, is.key, jose.RS256, is.claims(nil))})
	assert.Equal(t, codes.Unauthenticated, status.Code(err))
}

func TestAuthenticateJWTDiscoveryFailureIsNotARefusal(t *testing.T) {
	is := startIssuer(t)
	cfg := issuerConfig(is)
	cfg.IssuerURL = is.url + "/missing" // discovery answers 404
	c := oidcServer(t, cfg)
	tok := sign(t, is.key, jose.RS256, is.claims(func(m map[string]any) { m["iss"] = cfg.IssuerURL }))
	_, err := c.Authenticate(t.Context(), &identityv1.AuthenticateRequest{Credential: tok})
	assert.Equal(t, codes.Internal, status.Code(err), "an unreachable issuer is an outage, not a bad credential")
}

func TestOIDCIssuerValidate(t *testing.T) {
	err := identity.OIDCIssuer{IssuerURL: "ftp://x", ClockSkew: -time.Second, SigningAlgorithms: []string{"none", "HS256"}}.Validate()
	for _, field := range []string{"organization_id", "issuer_url", "audience", "clock_skew", `"none"`, `"HS256"`} {
		assert.ErrorContains(t, err, field)
	}
	assert.NoError(t, identity.OIDCIssuer{OrganizationID: "o", IssuerURL: "https://x", Audience: "a"}.Validate())
}
