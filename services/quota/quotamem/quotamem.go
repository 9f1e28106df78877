// Package quotamem keeps quota counters in process: the embedded default, and the limiter
// of a single replica. Counters are not shared between processes.
package quotamem

import (
	"context"
	"math"
	"sync"
	"time"

	"github.com/fmgate/fmgate/services/quota"
)

// epsilon absorbs float64 rounding when comparing levels (units), far below one unit.
const epsilon = 1e-6

// Config tunes a Limiter. The zero value works.
type Config struct {
	// Clock defaults to time.Now.
	Clock quota.Clock
}

type key struct{ tenant, key string }

// bucket is one counter in leaky-bucket form (see package quota): level units in use at
// updated (Unix ns); emptyAt is when the level drains to zero, after which the bucket is
// indistinguishable from a missing one and may be dropped.
type bucket struct {
	level   float64
	updated int64
	emptyAt int64
}

// Limiter is an in-process quota.Limiter. One mutex serialises every call, which makes
// multi-counter reservations atomic; a call holds it for well under a microsecond.
//
// Memory stays bounded by the counters in use: once a counter has drained it is dropped by
// an amortised sweep (one full scan per len(counters) operations), with no goroutine.
type Limiter struct {
	clock quota.Clock

	mu        sync.Mutex
	buckets   map[key]*bucket
	sinceScan int
}

var _ quota.Limiter = (*Limiter)(nil)

// New returns an empty Limiter.
func New(cfg Config) *Limiter {
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	return &Limiter{clock: cfg.Clock, buckets: make(map[key]*bucket)}
}

// Len returns the number of counters held, drained ones not yet swept included.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}

// Reserve implements quota.Limiter.
func (l *Limiter) Reserve(ctx context.Context, tenant string, counters []quota.Counter) (quota.Decision, error) {
	if err := ctx.Err(); err != nil {
		return quota.Decision{}, err
	}
	if err := quota.ValidateCounters(tenant, counters); err != nil {
		return quota.Decision{}, err
	}
	now := l.clock().UnixNano()
	dec := quota.Decision{Admitted: true, Counters: make([]quota.CounterState, len(counters))}

	l.mu.Lock()
	defer l.mu.Unlock()
	l.sweep(now)
	levels := make([]float64, len(counters))
	for i, c := range counters {
		levels[i] = l.level(key{tenant, c.Key}, c, now)
		if levels[i] > float64(c.Amount)-1+epsilon {
			dec.Admitted = false
		}
	}
	for i, c := range counters {
		lv := levels[i]
		st := &dec.Counters[i]
		st.Fits = lv <= float64(c.Amount)-1+epsilon
		if !st.Fits {
			st.RetryAfter = drainTime(lv-float64(c.Amount)+1, c)
		}
		if dec.Admitted && c.Kind == quota.KindRequests {
			lv++
			l.store(key{tenant, c.Key}, c, lv, now)
		}
		st.Remaining = max(0, int64(math.Floor(float64(c.Amount)-lv+epsilon)))
		st.ResetAfter = drainTime(lv, c)
	}
	return dec, nil
}

// Commit implements quota.Limiter.
func (l *Limiter) Commit(ctx context.Context, tenant string, counters []quota.Counter, tokens int64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := quota.ValidateCounters(tenant, counters); err != nil {
		return err
	}
	if tokens <= 0 {
		return nil
	}
	now := l.clock().UnixNano()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sweep(now)
	for _, c := range counters {
		if c.Kind != quota.KindTokens {
			continue
		}
		k := key{tenant, c.Key}
		l.store(k, c, l.level(k, c, now)+float64(tokens), now)
	}
	return nil
}

// level returns the counter's level at now. A clock that went backwards drains nothing.
func (l *Limiter) level(k key, c quota.Counter, now int64) float64 {
	b, ok := l.buckets[k]
	if !ok {
		return 0
	}
	lv := b.level
	if now > b.updated {
		lv -= float64(now-b.updated) * float64(c.Amount) / float64(c.Window)
	}
	return max(lv, 0)
}

func (l *Limiter) store(k key, c quota.Counter, level float64, now int64) {
	b, ok := l.buckets[k]
	if !ok {
		b = &bucket{}
		l.buckets[k] = b
	}
	b.level = level
	b.updated = max(b.updated, now)
	b.emptyAt = b.updated + int64(math.Ceil(level*float64(c.Window)/float64(c.Amount)))
}

// sweep drops drained buckets once every len(buckets) operations, so that its cost is
// constant per operation on average.
func (l *Limiter) sweep(now int64) {
	l.sinceScan++
	if l.sinceScan < len(l.buckets) || l.sinceScan < 64 {
		return
	}
	l.sinceScan = 0
	for k, b := range l.buckets {
		if b.emptyAt <= now {
			delete(l.buckets, k)
		}
	}
}

// drainTime is how long the counter takes to drain units, rounded up to the millisecond so
// that waiting for it is always enough.
func drainTime(units float64, c quota.Counter) time.Duration {
	if units <= 0 {
		return 0
	}
	d := time.Duration(math.Ceil(units * float64(c.Window) / float64(c.Amount)))
	if r := d % time.Millisecond; r != 0 {
		d += time.Millisecond - r
	}
	return d
}
