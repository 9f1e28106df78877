package quotamem_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/fmgate/fmgate/services/quota"
	"github.com/fmgate/fmgate/services/quota/quotamem"
	"github.com/fmgate/fmgate/services/quota/quotatest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestLimiter(t *testing.T) {
	quotatest.TestLimiter(t, func(t *testing.T, clock quota.Clock) quota.Limiter {
		return quotamem.New(quotamem.Config{Clock: clock})
	})
}

func TestDrainedCountersAreDropped(t *testing.T) {
	clock := quotatest.NewClock(quotatest.Start)
	l := quotamem.New(quotamem.Config{Clock: clock.Now})
	ctx := t.Context()
	for i := range 1000 {
		c := quota.Counter{Key: fmt.Sprint("k", i), Kind: quota.KindRequests, Amount: 10, Window: time.Minute}
		_, err := l.Reserve(ctx, "org", []quota.Counter{c})
		require.NoError(t, err)
	}
	require.Equal(t, 1000, l.Len())

	// A full window later every counter has drained; further traffic sweeps them out.
	clock.Advance(time.Minute)
	live := quota.Counter{Key: "live", Kind: quota.KindRequests, Amount: 1000, Window: time.Hour}
	for range 1000 {
		_, err := l.Reserve(ctx, "org", []quota.Counter{live})
		require.NoError(t, err)
	}
	assert.Equal(t, 1, l.Len(), "only the counter still in use remains")
}

func BenchmarkReserve(b *testing.B) {
	l := quotamem.New(quotamem.Config{})
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
