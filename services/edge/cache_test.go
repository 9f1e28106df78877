package edge

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestTTLCacheServesUntilExpiry(t *testing.T) {
	c := newTTLCache[int](50 * time.Millisecond)
	var fetches atomic.Int32
	fetch := func(context.Context) (int, error) { return int(fetches.Add(1)), nil }

	v, err := c.get(t.Context(), "k", fetch)
	require.NoError(t, err)
	assert.Equal(t, 1, v)
	v, _ = c.get(t.Context(), "k", fetch)
	assert.Equal(t, 1, v, "served from the cache")
	v, _ = c.get(t.Context(), "other", fetch)
	assert.Equal(t, 2, v, "keys are separate")

	require.Eventually(t, func() bool {
		v, _ := c.get(t.Context(), "k", fetch)
		return v > 2
	}, time.Second, 5*time.Millisecond, "fetched again after the TTL")
}

func TestTTLCacheDoesNotCacheErrors(t *testing.T) {
	c := newTTLCache[int](time.Minute)
	var fetches atomic.Int32
	boom := errors.New("refused")
	for range 3 {
		_, err := c.get(t.Context(), "k", func(context.Context) (int, error) { fetches.Add(1); return 0, boom })
		assert.ErrorIs(t, err, boom)
	}
	assert.Equal(t, int32(3), fetches.Load())
}

func TestTTLCacheSharesConcurrentMisses(t *testing.T) {
	c := newTTLCache[int](time.Minute)
	var fetches atomic.Int32
	release := make(chan struct{})
	fetch := func(context.Context) (int, error) { fetches.Add(1); <-release; return 7, nil }
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := c.get(context.Background(), "k", fetch)
			assert.NoError(t, err)
			assert.Equal(t, 7, v)
		}()
	}
	require.Eventually(t, func() bool { return fetches.Load() == 1 }, time.Second, time.Millisecond)
	close(release)
	wg.Wait()
	assert.Equal(t, int32(1), fetches.Load())
}

func TestTTLCacheDisabled(t *testing.T) {
	c := newTTLCache[int](-1)
	var fetches atomic.Int32
	for range 3 {
		_, _ = c.get(t.Context(), "k", func(context.Context) (int, error) { return int(fetches.Add(1)), nil })
	}
	assert.Equal(t, int32(3), fetches.Load())
}

func TestTTLCacheCallerCancelStopsWaitingOnly(t *testing.T) {
	c := newTTLCache[int](time.Minute)
	release := make(chan struct{})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		_, err := c.get(ctx, "k", func(context.Context) (int, error) { <-release; return 1, nil })
		done <- err
	}()
	cancel()
	assert.ErrorIs(t, <-done, context.Canceled)
	close(release)
	require.Eventually(t, func() bool {
		v, err := c.get(t.Context(), "k", func(context.Context) (int, error) { return 2, nil })
		return err == nil && v == 1
	}, time.Second, time.Millisecond, "the shared fetch finished and was cached")
}
