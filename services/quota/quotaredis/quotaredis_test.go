package quotaredis_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/fmgate/fmgate/internal/testenv"
	"github.com/fmgate/fmgate/services/quota"
	"github.com/fmgate/fmgate/services/quota/quotaredis"
	"github.com/fmgate/fmgate/services/quota/quotatest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const urlEnv = "FMGATE_TEST_REDIS_URL"

// testClient connects to the Redis named by FMGATE_TEST_REDIS_URL, or skips (fails in CI).
func testClient(tb testing.TB) *redis.Client {
	tb.Helper()
	u := testenv.Get(tb, urlEnv, "redis://127.0.0.1:6379/0")
	client, err := quotaredis.Connect(tb.Context(), u)
	require.NoError(tb, err)
	tb.Cleanup(func() { _ = client.Close() })
	return client
}

// testPrefix returns a key prefix no other test uses, and deletes its keys after the test.
func testPrefix(tb testing.TB, client *redis.Client) string {
	tb.Helper()
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	prefix := "fmgate-test:quota:" + hex.EncodeToString(b) + ":"
	tb.Cleanup(func() {
		ctx := context.Background() // tb.Context is already canceled during cleanup
		iter := client.Scan(ctx, 0, prefix+"*", 100).Iterator()
		for iter.Next(ctx) {
			client.Del(ctx, iter.Val())
		}
	})
	return prefix
}

func TestLimiter(t *testing.T) {
	client := testClient(t)
	quotatest.TestLimiter(t, func(t *testing.T, clock quota.Clock) quota.Limiter {
		l, err := quotaredis.New(client, quotaredis.Config{Prefix: testPrefix(t, client), Clock: clock})
		require.NoError(t, err)
		return l
	})
}

func TestServerClock(t *testing.T) {
	client := testClient(t)
	l, err := quotaredis.New(client, quotaredis.Config{Prefix: testPrefix(t, client)})
	require.NoError(t, err)
	c := []quota.Counter{{Key: "rph", Kind: quota.KindRequests, Amount: 2, Window: time.Hour}}
	for range 2 {
		d, err := l.Reserve(t.Context(), "org", c)
		require.NoError(t, err)
		require.True(t, d.Admitted)
	}
	d, err := l.Reserve(t.Context(), "org", c)
	require.NoError(t, err)
	assert.False(t, d.Admitted)
	// One unit frees every 30 minutes; a few seconds may have passed on the server clock.
	assert.InDelta(t, 30*time.Minute, d.Counters[0].RetryAfter, float64(10*time.Second))
}

func TestKeysShareTheTenantHashTag(t *testing.T) {
	client := testClient(t)
	prefix := testPrefix(t, client)
	l, err := quotaredis.New(client, quotaredis.Config{Prefix: prefix})
	require.NoError(t, err)
	tenant := "a}b{c d"
	_, err = l.Reserve(t.Context(), tenant, []quota.Counter{
		{Key: "l:rpm", Kind: quota.KindRequests, Amount: 5, Window: time.Minute},
		{Key: "l:rpm:s:{x}", Kind: quota.KindRequests, Amount: 5, Window: time.Minute},
	})
	require.NoError(t, err)
	keys, err := client.Keys(t.Context(), prefix+"*").Result()
	require.NoError(t, err)
	require.Len(t, keys, 2)
	for _, k := range keys {
		// Redis Cluster hashes the text between the first '{' and the next '}'.
		open := strings.IndexByte(k, '{')
		end := strings.IndexByte(k[open:], '}')
		assert.Equal(t, "a%7Db%7Bc+d", k[open+1:open+end], k)
		ttl, err := client.PTTL(t.Context(), k).Result()
		require.NoError(t, err)
		assert.Positive(t, ttl, "every key expires")
		assert.LessOrEqual(t, ttl, 13*time.Second, "one unit drains in 12s, plus 1s slack")
	}
}

func TestUnreachableRedisIsAnError(t *testing.T) {
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", DialTimeout: time.Second, MaxRetries: -1})
	t.Cleanup(func() { _ = client.Close() })
	l, err := quotaredis.New(client, quotaredis.Config{})
	require.NoError(t, err)
	c := []quota.Counter{{Key: "k", Kind: quota.KindRequests, Amount: 5, Window: time.Minute}}
	d, err := l.Reserve(t.Context(), "org", c)
	require.Error(t, err)
	assert.False(t, d.Admitted)
	c[0].Kind = quota.KindTokens
	require.Error(t, l.Commit(t.Context(), "org", c, 10))
}

func TestNewRejectsBracesInPrefix(t *testing.T) {
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	t.Cleanup(func() { _ = client.Close() })
	_, err := quotaredis.New(client, quotaredis.Config{Prefix: "{x}:"})
	require.Error(t, err)
}

func TestConnectErrorsHideThePassword(t *testing.T) {
	for name, u := range map[string]string{
		"unreachable":     "redis://user:s3cr3t-pw@127.0.0.1:1/0?max_retries=-1",
		"bad database":    "redis://user:s3cr3t-pw@127.0.0.1:1/notadb",
		"bad port":        "redis://user:s3cr3t-pw@127.0.0.1:port/0",
		"bad scheme":      "http://user:s3cr3t-pw@127.0.0.1:1/0",
		"control char":    "redis://user:s3cr3t-pw@127.0.0.1:1/\x7f",
		"escaped in user": "redis://user:s3cr3t%2Dpw@127.0.0.1:1/0?max_retries=-1",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := quotaredis.Connect(t.Context(), u)
			require.Error(t, err)
			assert.NotContains(t, err.Error(), "s3cr3t")
			t.Log(err)
		})
	}
}

func TestConnect(t *testing.T) {
	client := testClient(t)
	require.NoError(t, client.Ping(t.Context()).Err())
}

func BenchmarkReserve(b *testing.B) {
	client := testClient(b)
	l, err := quotaredis.New(client, quotaredis.Config{Prefix: testPrefix(b, client)})
	require.NoError(b, err)
	counters := []quota.Counter{
		{Key: "l:rpm:s:alice", Kind: quota.KindRequests, Amount: 1 << 40, Window: time.Minute},
		{Key: "l:tpm", Kind: quota.KindTokens, Amount: 1 << 40, Window: time.Minute},
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := l.Reserve(b.Context(), "org", counters); err != nil {
				b.Fatal(err)
			}
		}
	})
}
