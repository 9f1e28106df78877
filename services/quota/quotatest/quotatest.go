// Package quotatest holds the conformance suite every quota.Limiter passes, and a clock
// tests can move.
package quotatest

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fmgate/fmgate/services/quota"
)

// Clock is a manual clock, safe for concurrent use.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a Clock reading start.
func NewClock(start time.Time) *Clock { return &Clock{now: start} }

// Now returns the clock's time. Pass c.Now as a quota.Clock.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// Start is where the suite's clocks start: one millisecond before a minute boundary, so
// that a limiter that reset counters at fixed window edges would be caught.
var Start = time.Date(2030, 1, 1, 0, 0, 59, 999_000_000, time.UTC)

// NewLimiterFunc returns a fresh limiter, with no counters, reading time from clock.
type NewLimiterFunc func(t *testing.T, clock quota.Clock) quota.Limiter

// TestLimiter runs the conformance suite against limiters made by newLimiter, one per
// subtest. Windows are at least a minute so that a store's real-time key expiry cannot
// interfere with the suite's manual clock.
func TestLimiter(t *testing.T, newLimiter NewLimiterFunc) {
	t.Run("AdmitsUpToAmountThenRefuses", func(t *testing.T) { testAdmitsUpToAmount(t, newLimiter) })
	t.Run("AllOrNothing", func(t *testing.T) { testAllOrNothing(t, newLimiter) })
	t.Run("WindowSlides", func(t *testing.T) { testWindowSlides(t, newLimiter) })
	t.Run("NoDoubleBurstAtWindowEdge", func(t *testing.T) { testWindowEdge(t, newLimiter) })
	t.Run("Tokens", func(t *testing.T) { testTokens(t, newLimiter) })
	t.Run("Isolation", func(t *testing.T) { testIsolation(t, newLimiter) })
	t.Run("Concurrency", func(t *testing.T) { testConcurrency(t, newLimiter) })
	t.Run("InvalidCounters", func(t *testing.T) { testInvalid(t, newLimiter) })
	t.Run("ClockBackwards", func(t *testing.T) { testClockBackwards(t, newLimiter) })
}

func requests(key string, amount int64, window time.Duration) quota.Counter {
	return quota.Counter{Key: key, Kind: quota.KindRequests, Amount: amount, Window: window}
}

func tokens(key string, amount int64, window time.Duration) quota.Counter {
	return quota.Counter{Key: key, Kind: quota.KindTokens, Amount: amount, Window: window}
}

// admitN reserves until refused (at most limit+1 times) and returns how many were admitted.
func admitN(t *testing.T, l quota.Limiter, tenant string, limit int, cs ...quota.Counter) int {
	t.Helper()
	for i := 0; i <= limit; i++ {
		d, err := l.Reserve(t.Context(), tenant, cs)
		require.NoError(t, err)
		if !d.Admitted {
			return i
		}
	}
	return limit + 1
}

func testAdmitsUpToAmount(t *testing.T, newLimiter NewLimiterFunc) {
	clock := NewClock(Start)
	l := newLimiter(t, clock.Now)
	c := requests("rpm", 5, time.Minute)
	for i := range 5 {
		d, err := l.Reserve(t.Context(), "org-a", []quota.Counter{c})
		require.NoError(t, err)
		require.True(t, d.Admitted, "request %d", i+1)
		require.Len(t, d.Counters, 1)
		assert.True(t, d.Counters[0].Fits)
		assert.Equal(t, int64(4-i), d.Counters[0].Remaining)
		assert.Zero(t, d.Counters[0].RetryAfter)
		// One unit drains in Window/Amount = 12s; i+1 units are in use.
		assert.Equal(t, time.Duration(i+1)*12*time.Second, d.Counters[0].ResetAfter)
	}
	d, err := l.Reserve(t.Context(), "org-a", []quota.Counter{c})
	require.NoError(t, err)
	assert.False(t, d.Admitted)
	require.Len(t, d.Counters, 1)
	assert.False(t, d.Counters[0].Fits)
	assert.Zero(t, d.Counters[0].Remaining)
	assert.Equal(t, 12*time.Second, d.Counters[0].RetryAfter, "time until one unit frees")

	// Waiting just short of the retry-after is not enough; waiting it out frees exactly one.
	clock.Advance(d.Counters[0].RetryAfter - time.Second)
	assert.Equal(t, 0, admitN(t, l, "org-a", 5, c))
	clock.Advance(time.Second)
	assert.Equal(t, 1, admitN(t, l, "org-a", 5, c))
}

func testAllOrNothing(t *testing.T, newLimiter NewLimiterFunc) {
	clock := NewClock(Start)
	l := newLimiter(t, clock.Now)
	a := requests("a", 1, time.Minute)
	b := requests("b", 3, time.Minute)
	require.Equal(t, 1, admitN(t, l, "org", 1, a))

	for range 3 {
		d, err := l.Reserve(t.Context(), "org", []quota.Counter{b, a})
		require.NoError(t, err)
		assert.False(t, d.Admitted)
		require.Len(t, d.Counters, 2)
		assert.True(t, d.Counters[0].Fits, "b has room")
		assert.Equal(t, int64(3), d.Counters[0].Remaining, "b not charged")
		assert.False(t, d.Counters[1].Fits, "a is spent")
		assert.Positive(t, d.Counters[1].RetryAfter)
	}
	// The refused reservations charged nothing to b.
	assert.Equal(t, 3, admitN(t, l, "org", 3, b))
}

func testWindowSlides(t *testing.T, newLimiter NewLimiterFunc) {
	clock := NewClock(Start)
	l := newLimiter(t, clock.Now)
	c := requests("rpm", 10, time.Minute)
	require.Equal(t, 10, admitN(t, l, "org", 10, c))

	clock.Advance(30 * time.Second)
	assert.Equal(t, 5, admitN(t, l, "org", 10, c), "half a window frees half the amount")

	clock.Advance(time.Minute)
	assert.Equal(t, 10, admitN(t, l, "org", 10, c), "a full window frees the amount, not more")

	clock.Advance(10 * time.Minute)
	assert.Equal(t, 10, admitN(t, l, "org", 10, c), "idle time does not accumulate beyond the amount")
}

func testWindowEdge(t *testing.T, newLimiter NewLimiterFunc) {
	// Start is 1ms before a minute boundary: a fixed-window limiter would admit the amount
	// again 2ms later.
	clock := NewClock(Start)
	l := newLimiter(t, clock.Now)
	c := requests("rpm", 100, time.Minute)
	require.Equal(t, 100, admitN(t, l, "org", 100, c))
	clock.Advance(2 * time.Millisecond)
	assert.Equal(t, 0, admitN(t, l, "org", 100, c))
	clock.Advance(time.Second)
	assert.Equal(t, 1, admitN(t, l, "org", 100, c), "600ms per unit")
}

func testTokens(t *testing.T, newLimiter NewLimiterFunc) {
	clock := NewClock(Start)
	l := newLimiter(t, clock.Now)
	tok := tokens("tpm", 100, time.Minute)
	req := requests("rpm", 10, time.Minute)
	ctx := t.Context()

	reserve := func() quota.Decision {
		t.Helper()
		d, err := l.Reserve(ctx, "org", []quota.Counter{req, tok})
		require.NoError(t, err)
		require.Len(t, d.Counters, 2)
		return d
	}
	d := reserve()
	require.True(t, d.Admitted)
	assert.Equal(t, int64(100), d.Counters[1].Remaining, "reserve does not charge tokens")
	assert.Equal(t, int64(9), d.Counters[0].Remaining)

	require.NoError(t, l.Commit(ctx, "org", []quota.Counter{req, tok}, 60))
	d = reserve()
	require.True(t, d.Admitted)
	assert.Equal(t, int64(40), d.Counters[1].Remaining)
	assert.Equal(t, int64(8), d.Counters[0].Remaining, "commit does not charge request counters")

	// Tokens may overshoot: 110 used of 100.
	require.NoError(t, l.Commit(ctx, "org", []quota.Counter{tok}, 50))
	d = reserve()
	require.False(t, d.Admitted)
	assert.True(t, d.Counters[0].Fits)
	assert.False(t, d.Counters[1].Fits)
	// 11 tokens must drain, at 100 per minute, before one is free.
	assert.Equal(t, 6600*time.Millisecond, d.Counters[1].RetryAfter)
	assert.Equal(t, 66*time.Second, d.Counters[1].ResetAfter)

	d = reserve()
	require.False(t, d.Admitted)
	assert.Equal(t, int64(8), d.Counters[0].Remaining, "refused reservations charge no request counter")

	clock.Advance(d.Counters[1].RetryAfter)
	d = reserve()
	assert.True(t, d.Admitted)

	require.NoError(t, l.Commit(ctx, "org", nil, 5), "no counters")
	require.NoError(t, l.Commit(ctx, "org", []quota.Counter{tok}, 0), "no tokens")
}

func testIsolation(t *testing.T, newLimiter NewLimiterFunc) {
	clock := NewClock(Start)
	l := newLimiter(t, clock.Now)
	c := requests("k", 2, time.Minute)
	require.Equal(t, 2, admitN(t, l, "org-a", 2, c))

	assert.Equal(t, 2, admitN(t, l, "org-b", 2, c), "same key, other tenant")
	assert.Equal(t, 2, admitN(t, l, "org-a", 2, requests("k2", 2, time.Minute)), "other key, same tenant")
	// Separators in tenants and keys cannot alias another counter.
	assert.Equal(t, 2, admitN(t, l, "org-a}:k", 2, requests("x", 2, time.Minute)))
	assert.Equal(t, 2, admitN(t, l, "org", 2, requests("-a}:k", 2, time.Minute)))
	assert.Equal(t, 2, admitN(t, l, "org-a", 2, requests("k}", 2, time.Minute)))
	assert.Equal(t, 0, admitN(t, l, "org-a", 2, c), "the original counter is still spent")

	tok := tokens("t", 10, time.Minute)
	require.NoError(t, l.Commit(t.Context(), "org-a", []quota.Counter{tok}, 10))
	d, err := l.Reserve(t.Context(), "org-b", []quota.Counter{tok})
	require.NoError(t, err)
	assert.True(t, d.Admitted, "commit to one tenant does not charge another")
}

func testConcurrency(t *testing.T, newLimiter NewLimiterFunc) {
	clock := NewClock(Start)
	l := newLimiter(t, clock.Now)
	c := requests("rpm", 20, time.Minute)
	other := requests("wide", 1000, time.Minute)
	var admitted atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for range 50 {
		wg.Go(func() {
			d, err := l.Reserve(t.Context(), "org", []quota.Counter{other, c})
			if err != nil {
				errs <- err
				return
			}
			if d.Admitted {
				admitted.Add(1)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	assert.Equal(t, int64(20), admitted.Load())
	// Only the 20 admitted requests were charged to the shared counter.
	d, err := l.Reserve(t.Context(), "org", []quota.Counter{other})
	require.NoError(t, err)
	assert.Equal(t, int64(1000-21), d.Counters[0].Remaining)
}

func testInvalid(t *testing.T, newLimiter NewLimiterFunc) {
	clock := NewClock(Start)
	l := newLimiter(t, clock.Now)
	ok := requests("k", 1, time.Minute)
	for name, tc := range map[string]struct {
		tenant   string
		counters []quota.Counter
	}{
		"empty tenant":  {"", []quota.Counter{ok}},
		"empty key":     {"org", []quota.Counter{requests("", 1, time.Minute)}},
		"zero amount":   {"org", []quota.Counter{requests("k", 0, time.Minute)}},
		"zero window":   {"org", []quota.Counter{requests("k", 1, 0)}},
		"no kind":       {"org", []quota.Counter{{Key: "k", Amount: 1, Window: time.Minute}}},
		"duplicate key": {"org", []quota.Counter{ok, ok}},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := l.Reserve(t.Context(), tc.tenant, tc.counters)
			require.ErrorIs(t, err, quota.ErrInvalidCounter)
			require.ErrorIs(t, l.Commit(t.Context(), tc.tenant, tc.counters, 1), quota.ErrInvalidCounter)
		})
	}
	d, err := l.Reserve(t.Context(), "org", nil)
	require.NoError(t, err)
	assert.True(t, d.Admitted, "no counters, nothing to refuse")
	assert.Empty(t, d.Counters)
}

func testClockBackwards(t *testing.T, newLimiter NewLimiterFunc) {
	// Replicas with skewed clocks (Clock injected, or quotamem behind a restart) must not
	// make a counter drain more than real time allows.
	clock := NewClock(Start)
	l := newLimiter(t, clock.Now)
	c := requests("rpm", 2, time.Minute)
	require.Equal(t, 2, admitN(t, l, "org", 2, c))
	clock.Advance(-10 * time.Second)
	assert.Equal(t, 0, admitN(t, l, "org", 2, c))
	clock.Advance(10 * time.Second)
	assert.Equal(t, 0, admitN(t, l, "org", 2, c), "time spent going backwards does not count")
	clock.Advance(30 * time.Second)
	assert.Equal(t, 1, admitN(t, l, "org", 2, c))
}
