package identitypg_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	identityv1 "github.com/fmgate/fmgate/gen/fmgate/identity/v1"
	"github.com/fmgate/fmgate/internal/grpctest"
	"github.com/fmgate/fmgate/internal/pg"

	"github.com/fmgate/fmgate/internal/pg/pgtest"
	"github.com/fmgate/fmgate/services/identity"
	"github.com/fmgate/fmgate/services/identity/identitypg"
	"github.com/fmgate/fmgate/services/identity/identitytest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestStore(t *testing.T) {
	identitytest.TestStore(t, func(t *testing.T) identity.Store {
		pool, schema := pgtest.Schema(t, "identity")
		require.NoError(t, identitypg.Migrate(t.Context(), pool, schema))
		return identitypg.New(pool, schema)
	})
}

func TestMigrateTwice(t *testing.T) {
	pool, schema := pgtest.Schema(t, "identity")
	require.NoError(t, identitypg.Migrate(t.Context(), pool, schema))
	require.NoError(t, identitypg.Migrate(t.Context(), pool, schema))
	var n int
	require.NoError(t, pool.QueryRow(t.Context(),
		`SELECT count(*) FROM pg_indexes WHERE schemaname = $1 AND indexname = 'api_keys_hash_key'`, schema).Scan(&n))
	require.Equal(t, 1, n, "the hash is unique-indexed")
}

// replica is one identity server on its own pool and Store, over bufconn.
func replica(t *testing.T, url, schema string) identityv1.IdentityServiceClient {
	t.Helper()
	pool, err := pg.Connect(t.Context(), url)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	log, _ := grpctest.Logger(t)
	srv := identity.NewServer(identitypg.New(pool, schema), log, identity.Config{HeartbeatInterval: time.Hour})
	return identityv1.NewIdentityServiceClient(grpctest.Serve(t, srv.Register))
}

// watch starts a revocation stream and waits for its first heartbeat, which says the
// subscription is in place.
func watch(t *testing.T, c identityv1.IdentityServiceClient) identityv1.IdentityService_WatchRevocationsClient {
	t.Helper()
	stream, err := c.WatchRevocations(t.Context(), &identityv1.WatchRevocationsRequest{})
	require.NoError(t, err)
	first, err := stream.Recv()
	require.NoError(t, err)
	require.NotNil(t, first.GetHeartbeat(), "the first message is a heartbeat")
	return stream
}

// revocations receives from stream in the background until it ends.
func revocations(t *testing.T, stream identityv1.IdentityService_WatchRevocationsClient) <-chan *identityv1.Revocation {
	ch := make(chan *identityv1.Revocation, 16)
	go func() {
		defer close(ch)
		for {
			m, err := stream.Recv()
			if err != nil {
				return
			}
			if r := m.GetRevocation(); r != nil {
				ch <- r
			}
		}
	}()
	return ch
}

func TestRevocationReachesOtherReplicaWithinASecond(t *testing.T) {
	pool, schema := pgtest.Schema(t, "identity")
	require.NoError(t, identitypg.Migrate(t.Context(), pool, schema))
	url := pgtest.URL(t)
	a, b := replica(t, url, schema), replica(t, url, schema)

	_, err := a.CreateUser(t.Context(), &identityv1.CreateUserRequest{User: &identityv1.User{OrganizationId: "org-a", Id: "alice"}})
	require.NoError(t, err)
	created, err := a.CreateApiKey(t.Context(), &identityv1.CreateApiKeyRequest{
		OrganizationId: "org-a", OwnerKind: identityv1.PrincipalKind_PRINCIPAL_KIND_USER, OwnerId: "alice",
	})
	require.NoError(t, err)
	secret := created.GetSecret()
	_, err = b.Authenticate(t.Context(), &identityv1.AuthenticateRequest{Credential: secret})
	require.NoError(t, err, "replica b knows the key replica a created")

	got := revocations(t, watch(t, b))
	_, err = a.RevokeApiKey(t.Context(), &identityv1.RevokeApiKeyRequest{OrganizationId: "org-a", ApiKeyId: created.GetApiKey().GetApiKeyId()})
	require.NoError(t, err)
	revoked := time.Now()

	var r *identityv1.Revocation
	require.Eventually(t, func() bool {
		select {
		case r = <-got:
			return true
		default:
			return false
		}
	}, time.Second, time.Millisecond, "replica b streams the revocation within a second")
	assert.Less(t, time.Since(revoked), time.Second)
	assert.Equal(t, "org-a", r.GetOrganizationId())
	assert.Equal(t, created.GetApiKey().GetApiKeyId(), r.GetApiKeyId())
	require.Eventually(t, func() bool {
		_, err := b.Authenticate(t.Context(), &identityv1.AuthenticateRequest{Credential: secret})
		return status.Code(err) == codes.Unauthenticated
	}, time.Second, 5*time.Millisecond, "replica b refuses the key within a second")
}

func TestRevocationSurvivesLostListener(t *testing.T) {
	pool, schema := pgtest.Schema(t, "identity")
	require.NoError(t, identitypg.Migrate(t.Context(), pool, schema))
	a := replica(t, pgtest.URL(t), schema)
	got := revocations(t, watch(t, a))

	// Kill the LISTEN connection, then revoke while it is (or may still be) gone: either
	// the reconnected LISTEN or the poll that covers the gap must deliver the revocation.
	var killed int
	require.NoError(t, pool.QueryRow(t.Context(), `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE application_name = $1`, identitypg.ListenerApplicationName(schema)).Scan(&killed))
	require.Equal(t, 1, killed, "one listener connection per store")

	store := identitypg.New(pool, schema)
	k, _ := identitytest.NewKey(t, "org-a", "key-1", time.Now())
	require.NoError(t, store.PutAPIKey(t.Context(), k))
	require.NoError(t, store.RevokeAPIKey(t.Context(), "org-a", "key-1", time.Now()))

	var r *identityv1.Revocation
	require.Eventually(t, func() bool {
		select {
		case r = <-got:
			return true
		default:
			return false
		}
	}, time.Second, time.Millisecond)
	assert.Equal(t, "key-1", r.GetApiKeyId())
}

func TestListenerStopsWithLastSubscriber(t *testing.T) {
	pool, schema := pgtest.Schema(t, "identity")
	require.NoError(t, identitypg.Migrate(t.Context(), pool, schema))
	store := identitypg.New(pool, schema)
	listeners := func() int {
		var n int
		require.NoError(t, pool.QueryRow(t.Context(), `SELECT count(*) FROM pg_stat_activity WHERE application_name = $1`,
			identitypg.ListenerApplicationName(schema)).Scan(&n))
		return n
	}
	assert.Equal(t, 0, listeners(), "no subscriber, no connection")
	ctx1, cancel1 := context.WithCancel(t.Context())
	ctx2, cancel2 := context.WithCancel(t.Context())
	_, err := store.SubscribeRevocations(ctx1)
	require.NoError(t, err)
	_, err = store.SubscribeRevocations(ctx2)
	require.NoError(t, err)
	assert.Equal(t, 1, listeners(), "subscribers share one connection")
	cancel1()
	cancel2()
	require.Eventually(t, func() bool { return listeners() == 0 }, 5*time.Second, 10*time.Millisecond)
}
