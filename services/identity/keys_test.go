package identity_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	identityv1 "github.com/fmgate/fmgate/gen/fmgate/identity/v1"
	"github.com/fmgate/fmgate/services/identity"
	"github.com/fmgate/fmgate/services/identity/identitymem"
	"github.com/fmgate/fmgate/services/identity/identitytest"
)

func createKey(t *testing.T, c identityv1.IdentityServiceClient, req *identityv1.CreateApiKeyRequest) *identityv1.CreateApiKeyResponse {
	t.Helper()
	resp, err := c.CreateApiKey(t.Context(), req)
	require.NoError(t, err)
	return resp
}

// owners stores the accounts that subjects ("user:alice", "svc:ci") name, in org, with no
// team or roles.
func owners(t *testing.T, s identity.Store, org string, subjects ...string) {
	t.Helper()
	for _, sub := range subjects {
		kind, id := identity.KindUser, strings.TrimPrefix(sub, "user:")
		if strings.HasPrefix(sub, "svc:") {
			kind, id = identity.KindServiceAccount, strings.TrimPrefix(sub, "svc:")
		}
		a := identitytest.NewAccount(org, kind, id, "")
		a.Attributes = nil
		require.NoError(t, s.CreateAccount(t.Context(), a))
	}
}

func TestCreateApiKeyThenAuthenticate(t *testing.T) {
	f := serve(t, identitymem.New())
	owners(t, f.store, "org-a", "user:alice", "svc:ci")
	scopes := &identityv1.ApiKeyScopes{
		Models:     []string{"gpt-*", "claude-3"},
		Operations: []identityv1.Operation{identityv1.Operation_OPERATION_GENERATE, identityv1.Operation_OPERATION_LIST_MODELS},
	}
	resp := createKey(t, f.client, &identityv1.CreateApiKeyRequest{
		OrganizationId: "org-a", ApiKeyId: "ci-bot", DisplayName: "CI",
		OwnerKind: identityv1.PrincipalKind_PRINCIPAL_KIND_SERVICE_ACCOUNT, OwnerId: "ci",
		ExpireTime: timestamppb.New(now.Add(time.Hour)), Scopes: scopes,
	})
	k := resp.GetApiKey()
	assert.Regexp(t, `^fmg_[A-Za-z0-9_-]{43}$`, resp.GetSecret())
	assert.Equal(t, identity.Prefix(resp.GetSecret()), k.GetPrefix())
	assert.Equal(t, "ci-bot", k.GetApiKeyId())
	assert.Equal(t, "svc:ci", k.GetSubject())
	assert.Equal(t, "ci", k.GetOwnerId())
	assert.Equal(t, now, k.GetCreateTime().AsTime())

	stored, err := f.store.GetAPIKey(t.Context(), "org-a", "ci-bot")
	require.NoError(t, err)
	assert.Equal(t, identity.HashKey(resp.GetSecret()), stored.Hash, "only the hash is stored")

	auth, err := f.client.Authenticate(t.Context(), &identityv1.AuthenticateRequest{Credential: "Bearer " + resp.GetSecret()})
	require.NoError(t, err)
	p := auth.GetPrincipal()
	assert.Equal(t, "org-a", p.GetOrganizationId())
	assert.Equal(t, "svc:ci", p.GetSubject())
	assert.Equal(t, identityv1.PrincipalKind_PRINCIPAL_KIND_SERVICE_ACCOUNT, p.GetKind())
	assert.Equal(t, "ci-bot", p.GetApiKeyId())
	assert.Equal(t, scopes.GetModels(), p.GetScopes().GetModels())
	assert.Equal(t, scopes.GetOperations(), p.GetScopes().GetOperations())
	assert.Equal(t, now.Add(time.Hour), p.GetExpireTime().AsTime(), "a cache must not keep the principal past expiry")

	// A generated id when none is given; the secret differs every time.
	other := createKey(t, f.client, &identityv1.CreateApiKeyRequest{
		OrganizationId: "org-a", OwnerKind: identityv1.PrincipalKind_PRINCIPAL_KIND_USER, OwnerId: "alice",
	})
	assert.Regexp(t, `^key-[0-9a-f]{16}$`, other.GetApiKey().GetApiKeyId())
	assert.NotEqual(t, resp.GetSecret(), other.GetSecret())
	assert.Nil(t, other.GetApiKey().GetScopes())

	_, err = f.client.CreateApiKey(t.Context(), &identityv1.CreateApiKeyRequest{
		OrganizationId: "org-a", ApiKeyId: "ci-bot",
		OwnerKind: identityv1.PrincipalKind_PRINCIPAL_KIND_USER, OwnerId: "alice",
	})
	assert.Equal(t, codes.AlreadyExists, status.Code(err))
}

func TestCreateApiKeyInvalid(t *testing.T) {
	f := serve(t, identitymem.New())
	_, err := f.client.CreateApiKey(t.Context(), &identityv1.CreateApiKeyRequest{
		ApiKeyId:   "Bad Id",
		OwnerId:    "",
		ExpireTime: timestamppb.New(now),
		Scopes: &identityv1.ApiKeyScopes{
			Models:     []string{"[oops"},
			Operations: []identityv1.Operation{identityv1.Operation_OPERATION_UNSPECIFIED},
		},
	})
	st := status.Convert(err)
	require.Equal(t, codes.InvalidArgument, st.Code())
	require.Len(t, st.Details(), 1)
	var fields []string
	for _, v := range st.Details()[0].(*errdetails.BadRequest).GetFieldViolations() {
		fields = append(fields, v.GetField())
	}
	assert.ElementsMatch(t, []string{"organization_id", "api_key_id", "owner_kind", "owner_id", "expire_time",
		"scopes.models", "scopes.operations"}, fields)
	keys, err := f.store.ListAPIKeys(t.Context(), "", "", identity.Page{Limit: 10})
	require.NoError(t, err)
	assert.Empty(t, keys)
}

func TestListApiKeysPagesAndHidesSecrets(t *testing.T) {
	f := serve(t, identitymem.New())
	owners(t, f.store, "org-a", "user:alice")
	owners(t, f.store, "org-b", "user:bob")
	var secrets []string
	for _, id := range []string{"k3", "k1", "k5", "k2", "k4"} {
		resp := createKey(t, f.client, &identityv1.CreateApiKeyRequest{
			OrganizationId: "org-a", ApiKeyId: id, OwnerKind: identityv1.PrincipalKind_PRINCIPAL_KIND_USER, OwnerId: "alice",
		})
		secrets = append(secrets, resp.GetSecret())
	}
	createKey(t, f.client, &identityv1.CreateApiKeyRequest{
		OrganizationId: "org-b", ApiKeyId: "b1", OwnerKind: identityv1.PrincipalKind_PRINCIPAL_KIND_USER, OwnerId: "bob",
	})

	var ids []string
	token := ""
	for pages := 0; ; pages++ {
		require.Less(t, pages, 5)
		resp, err := f.client.ListApiKeys(t.Context(), &identityv1.ListApiKeysRequest{OrganizationId: "org-a", PageSize: 2, PageToken: token})
		require.NoError(t, err)
		assert.LessOrEqual(t, len(resp.GetApiKeys()), 2)
		for _, k := range resp.GetApiKeys() {
			ids = append(ids, k.GetApiKeyId())
			js, err := protojson.Marshal(k)
			require.NoError(t, err)
			for _, secret := range secrets {
				assert.NotContains(t, string(js), secret[len(identity.KeyPrefix)+8:], "no secret in a listing")
			}
		}
		if token = resp.GetNextPageToken(); token == "" {
			break
		}
	}
	assert.Equal(t, []string{"k1", "k2", "k3", "k4", "k5"}, ids)

	_, err := f.client.ListApiKeys(t.Context(), &identityv1.ListApiKeysRequest{OrganizationId: "org-a", PageToken: "!!"})
	assert.Equal(t, codes.InvalidArgument, status.Code(err))
	resp, err := f.client.ListApiKeys(t.Context(), &identityv1.ListApiKeysRequest{OrganizationId: "org-c"})
	require.NoError(t, err)
	assert.Empty(t, resp.GetApiKeys())
}

func TestRevokeApiKey(t *testing.T) {
	f := serve(t, identitymem.New())
	owners(t, f.store, "org-a", "user:alice")
	created := createKey(t, f.client, &identityv1.CreateApiKeyRequest{
		OrganizationId: "org-a", ApiKeyId: "k1", OwnerKind: identityv1.PrincipalKind_PRINCIPAL_KIND_USER, OwnerId: "alice",
	})

	_, err := f.client.RevokeApiKey(t.Context(), &identityv1.RevokeApiKeyRequest{OrganizationId: "org-b", ApiKeyId: "k1"})
	assert.Equal(t, codes.NotFound, status.Code(err), "another organisation cannot revoke the key")
	_, err = f.client.Authenticate(t.Context(), &identityv1.AuthenticateRequest{Credential: created.GetSecret()})
	require.NoError(t, err)

	resp, err := f.client.RevokeApiKey(t.Context(), &identityv1.RevokeApiKeyRequest{OrganizationId: "org-a", ApiKeyId: "k1"})
	require.NoError(t, err)
	assert.Equal(t, now, resp.GetApiKey().GetRevokeTime().AsTime())
	_, err = f.client.Authenticate(t.Context(), &identityv1.AuthenticateRequest{Credential: created.GetSecret()})
	assert.Equal(t, codes.Unauthenticated, status.Code(err))

	_, err = f.client.RevokeApiKey(t.Context(), &identityv1.RevokeApiKeyRequest{OrganizationId: "org-a", ApiKeyId: "k1"})
	require.NoError(t, err, "revoking twice succeeds")
	_, err = f.client.RevokeApiKey(t.Context(), &identityv1.RevokeApiKeyRequest{})
	assert.Equal(t, codes.InvalidArgument, status.Code(err))
}

func TestWatchRevocations(t *testing.T) {
	f := serve(t, identitymem.New())
	owners(t, f.store, "org-a", "user:alice")
	created := createKey(t, f.client, &identityv1.CreateApiKeyRequest{
		OrganizationId: "org-a", ApiKeyId: "k1", OwnerKind: identityv1.PrincipalKind_PRINCIPAL_KIND_USER, OwnerId: "alice",
	})
	stream, err := f.client.WatchRevocations(t.Context(), &identityv1.WatchRevocationsRequest{})
	require.NoError(t, err)
	first, err := stream.Recv()
	require.NoError(t, err)
	assert.Equal(t, identity.DefaultHeartbeatInterval, first.GetHeartbeat().GetHeartbeatInterval().AsDuration())

	_, err = f.client.RevokeApiKey(t.Context(), &identityv1.RevokeApiKeyRequest{OrganizationId: "org-a", ApiKeyId: created.GetApiKey().GetApiKeyId()})
	require.NoError(t, err)
	m, err := stream.Recv()
	require.NoError(t, err)
	r := m.GetRevocation()
	require.NotNil(t, r)
	assert.Equal(t, "org-a", r.GetOrganizationId())
	assert.Equal(t, "k1", r.GetApiKeyId())
	assert.Equal(t, now, r.GetRevokeTime().AsTime())
}

func TestWatchRevocationsHeartbeats(t *testing.T) {
	log, _ := testLogger(t)
	srv := identity.NewServer(identitymem.New(), log, identity.Config{HeartbeatInterval: 10 * time.Millisecond})
	c := identityv1.NewIdentityServiceClient(serveConn(t, srv))
	stream, err := c.WatchRevocations(t.Context(), &identityv1.WatchRevocationsRequest{})
	require.NoError(t, err)
	for range 3 {
		m, err := stream.Recv()
		require.NoError(t, err)
		require.NotNil(t, m.GetHeartbeat())
		assert.Equal(t, 10*time.Millisecond, m.GetHeartbeat().GetHeartbeatInterval().AsDuration())
	}
}

// lostStore promises no delivery: its revocation channels are closed from the start.
type lostStore struct{ identity.Store }

func (lostStore) SubscribeRevocations(context.Context) (<-chan identity.Revocation, error) {
	ch := make(chan identity.Revocation)
	close(ch)
	return ch, nil
}

func TestWatchRevocationsEndsWhenDeliveryIsLost(t *testing.T) {
	f := serve(t, lostStore{identitymem.New()})
	stream, err := f.client.WatchRevocations(t.Context(), &identityv1.WatchRevocationsRequest{})
	require.NoError(t, err)
	for {
		m, err := stream.Recv()
		if err != nil {
			assert.Equal(t, codes.Unavailable, status.Code(err), "the watcher must distrust its cache and watch again")
			return
		}
		require.NotNil(t, m.GetHeartbeat(), "nothing but the first heartbeat")
	}
}
