package identity_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	identityv1 "github.com/fmgate/fmgate/gen/fmgate/identity/v1"
	"github.com/fmgate/fmgate/internal/grpctest"
	"github.com/fmgate/fmgate/services/identity"
	"github.com/fmgate/fmgate/services/identity/identitymem"
	"github.com/fmgate/fmgate/services/identity/identitytest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

type fixture struct {
	client identityv1.IdentityServiceClient
	store  identity.Store
	logs   *grpctest.LogBuffer
}

// serve runs an identity server over bufconn, its clock fixed at now, logging JSON into
// fixture.logs at debug level so that every line the server could write is captured.
func serve(t *testing.T, store identity.Store) fixture {
	t.Helper()
	log, logs := grpctest.Logger(t)
	srv := identity.NewServer(store, log, identity.Config{Clock: func() time.Time { return now }})
	conn := grpctest.Serve(t, srv.Register)
	return fixture{client: identityv1.NewIdentityServiceClient(conn), store: store, logs: logs}
}

func TestAuthenticateValidKey(t *testing.T) {
	f := serve(t, identitymem.New())
	k, secret := identitytest.NewKey(t, "org-a", "key-1", now.Add(-time.Hour))
	k.ExpireTime = now.Add(time.Hour)
	require.NoError(t, f.store.PutAPIKey(t.Context(), k))

	for _, credential := range []string{secret, "Bearer " + secret, "bearer " + secret, "  Bearer   " + secret + " "} {
		resp, err := f.client.Authenticate(t.Context(), &identityv1.AuthenticateRequest{Credential: credential})
		require.NoError(t, err)
		p := resp.GetPrincipal()
		assert.Equal(t, "org-a", p.GetOrganizationId())
		assert.Equal(t, "svc:key-1", p.GetSubject())
		assert.Equal(t, identityv1.PrincipalKind_PRINCIPAL_KIND_SERVICE_ACCOUNT, p.GetKind())
		assert.Equal(t, "team-a", p.GetTeamId())
		assert.Equal(t, []string{"generate", "read"}, p.GetRoles())
		assert.Equal(t, map[string]string{"jurisdiction": "eu", "cost_centre": "cc-42"}, p.GetAttributes())
		assert.Equal(t, "key-1", p.GetApiKeyId())
	}
}

func TestAuthenticateOperatorKey(t *testing.T) {
	f := serve(t, identitymem.New())
	const demo = "demo-key-please-change-me-0123456789"
	k, _ := identitytest.NewKey(t, "demo", "demo", now)
	k.Kind, k.Prefix, k.Hash = identity.KindUser, identity.Prefix(demo), identity.HashKey(demo)
	require.NoError(t, f.store.PutAPIKey(t.Context(), k))

	resp, err := f.client.Authenticate(t.Context(), &identityv1.AuthenticateRequest{Credential: "Bearer " + demo})
	require.NoError(t, err)
	assert.Equal(t, identityv1.PrincipalKind_PRINCIPAL_KIND_USER, resp.GetPrincipal().GetKind())
}

func TestAuthenticateRefusalsLookAlike(t *testing.T) {
	f := serve(t, identitymem.New())
	put := func(id string, edit func(*identity.APIKey)) string {
		k, secret := identitytest.NewKey(t, "org-a", id, now.Add(-time.Hour))
		edit(&k)
		require.NoError(t, f.store.PutAPIKey(t.Context(), k))
		return secret
	}
	valid := put("valid", func(*identity.APIKey) {})
	expired := put("expired", func(k *identity.APIKey) { k.ExpireTime = now })
	revoked := put("revoked", func(*identity.APIKey) {})
	require.NoError(t, f.store.RevokeAPIKey(t.Context(), "org-a", "revoked", now.Add(-time.Minute)))
	revokedNow := put("revoked-now", func(*identity.APIKey) {})
	require.NoError(t, f.store.RevokeAPIKey(t.Context(), "org-a", "revoked-now", now))
	unknown, err := identity.NewKey()
	require.NoError(t, err)

	credentials := map[string]string{
		"unknown":         unknown,
		"wrong":           valid[:len(valid)-1] + "x",
		"expired":         expired,
		"revoked":         revoked,
		"revoked at now":  revokedNow,
		"empty":           "",
		"only bearer":     "Bearer ",
		"blank":           "   ",
		"too short":       "fmg_short",
		"inner space":     valid[:20] + " " + valid[20:],
		"other scheme":    "Basic " + valid,
		"valid plus more": valid + valid,
	}
	for name, credential := range credentials {
		t.Run(name, func(t *testing.T) {
			_, err := f.client.Authenticate(t.Context(), &identityv1.AuthenticateRequest{Credential: credential})
			st := status.Convert(err)
			assert.Equal(t, codes.Unauthenticated, st.Code())
			assert.Equal(t, "invalid credential", st.Message())
			require.Len(t, st.Details(), 1)
			info, ok := st.Details()[0].(*errdetails.ErrorInfo)
			require.True(t, ok)
			assert.Equal(t, identity.ReasonInvalidAPIKey, info.GetReason())
			assert.Empty(t, info.GetMetadata())
		})
	}

	// The same key still works: the refusals above did not hurt it.
	_, err = f.client.Authenticate(t.Context(), &identityv1.AuthenticateRequest{Credential: valid})
	require.NoError(t, err)
}

func TestAuthenticateFutureRevocation(t *testing.T) {
	f := serve(t, identitymem.New())
	k, secret := identitytest.NewKey(t, "org-a", "key-1", now)
	require.NoError(t, f.store.PutAPIKey(t.Context(), k))
	require.NoError(t, f.store.RevokeAPIKey(t.Context(), "org-a", "key-1", now.Add(time.Minute)))
	_, err := f.client.Authenticate(t.Context(), &identityv1.AuthenticateRequest{Credential: secret})
	require.NoError(t, err, "a revocation scheduled for later does not apply yet")
}

func TestAuthenticateNeverLogsTheSecret(t *testing.T) {
	f := serve(t, identitymem.New())
	valid := func(id string, edit func(*identity.APIKey)) string {
		k, secret := identitytest.NewKey(t, "org-a", id, now.Add(-time.Hour))
		edit(&k)
		require.NoError(t, f.store.PutAPIKey(t.Context(), k))
		return secret
	}
	ok := valid("ok", func(*identity.APIKey) {})
	expired := valid("expired", func(k *identity.APIKey) { k.ExpireTime = now.Add(-time.Second) })
	revoked := valid("revoked", func(*identity.APIKey) {})
	require.NoError(t, f.store.RevokeAPIKey(t.Context(), "org-a", "revoked", now.Add(-time.Second)))
	unknown, err := identity.NewKey()
	require.NoError(t, err)
	malformed := "sk-this is not a key but it is a secret"

	secrets := []string{ok, expired, revoked, unknown, malformed}
	var errs []string
	for _, secret := range secrets {
		_, err := f.client.Authenticate(t.Context(), &identityv1.AuthenticateRequest{Credential: "Bearer " + secret})
		if err != nil {
			errs = append(errs, status.Convert(err).String())
		}
	}
	require.Len(t, errs, 4)

	logs := f.logs.String()
	require.Contains(t, logs, `"refused":"revoked"`, "the log says why, for operators")
	require.Contains(t, logs, `"refused":"unknown"`)
	for _, secret := range secrets {
		// Neither the secret nor any long piece of it past the "fmg_" marker.
		for _, piece := range []string{secret, secret[4:16], secret[len(secret)-12:]} {
			assert.NotContains(t, logs, piece)
			for _, e := range errs {
				assert.NotContains(t, e, piece)
			}
		}
	}
}

// failingStore fails every lookup, with an error that names the hash it was given.
type failingStore struct{ identity.Store }

func (failingStore) GetCredential(context.Context, [32]byte) (identity.Credential, error) {
	return identity.Credential{}, errors.New("connection refused by 10.0.0.7")
}

func TestAuthenticateStoreFailureIsInternal(t *testing.T) {
	f := serve(t, failingStore{identitymem.New()})
	secret, err := identity.NewKey()
	require.NoError(t, err)
	_, err = f.client.Authenticate(t.Context(), &identityv1.AuthenticateRequest{Credential: secret})
	st := status.Convert(err)
	assert.Equal(t, codes.Internal, st.Code())
	assert.Equal(t, "internal error", st.Message(), "the store's error stays in the log")
	assert.Contains(t, f.logs.String(), "connection refused")
	assert.False(t, strings.Contains(f.logs.String(), secret))
}

func TestAuthenticateCanceled(t *testing.T) {
	f := serve(t, identitymem.New())
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := f.client.Authenticate(ctx, &identityv1.AuthenticateRequest{Credential: "x"})
	assert.Equal(t, codes.Canceled, status.Code(err))
}

func testLogger(t *testing.T) (*slog.Logger, *grpctest.LogBuffer) { return grpctest.Logger(t) }

func serveConn(t *testing.T, srv *identity.Server) *grpc.ClientConn {
	return grpctest.Serve(t, srv.Register)
}
