package edge

import (
	"context"
	"crypto/sha256"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// Default freshness of what the edge caches on the hot path. A revoked key is refused
// everywhere within PrincipalTTL; a route change (a model retired, an endpoint added) is seen
// within RouteTTL.
const (
	DefaultPrincipalTTL = 500 * time.Millisecond
	DefaultRouteTTL     = time.Second
	cacheMaxEntries     = 10_000
	cacheFetchTimeout   = 10 * time.Second
)

// ttlCache holds values for a short, fixed time after they were fetched, so that a burst of
// requests from one caller for one model costs one identity and one registry call instead of
// one each. It is bounded, safe for concurrent use, and concurrent misses for one key share
// one fetch. Errors are never cached: a refused credential is asked again next time.
// Values are shared between requests and must be treated as read-only.
type ttlCache[V any] struct {
	ttl   time.Duration
	mu    sync.Mutex
	m     map[string]ttlEntry[V]
	group singleflight.Group
	// epoch counts invalidations: a fetch that started before one does not store its value,
	// which may predate the invalidation.
	epoch uint64
}

type ttlEntry[V any] struct {
	v       V
	expires time.Time
}

func newTTLCache[V any](ttl time.Duration) *ttlCache[V] {
	return &ttlCache[V]{ttl: ttl, m: make(map[string]ttlEntry[V])}
}

// get returns the cached value of key, or fetches it. A cache with a zero or negative TTL
// always fetches.
func (c *ttlCache[V]) get(ctx context.Context, key string, fetch func(context.Context) (V, error)) (V, error) {
	if c.ttl <= 0 {
		return fetch(ctx)
	}
	now := time.Now()
	c.mu.Lock()
	e, ok := c.m[key]
	c.mu.Unlock()
	if ok && now.Before(e.expires) {
		return e.v, nil
	}
	// One fetch serves every concurrent caller, so it must not die with the first caller's
	// context; each caller still stops waiting when its own context ends.
	ch := c.group.DoChan(key, func() (any, error) {
		c.mu.Lock()
		epoch := c.epoch
		c.mu.Unlock()
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cacheFetchTimeout)
		defer cancel()
		v, err := fetch(fctx)
		if err != nil {
			return nil, err
		}
		c.put(key, v, epoch)
		return v, nil
	})
	select {
	case <-ctx.Done():
		var zero V
		return zero, ctx.Err()
	case r := <-ch:
		if r.Err != nil {
			var zero V
			return zero, r.Err
		}
		return r.Val.(V), nil
	}
}

func (c *ttlCache[V]) put(key string, v V, epoch uint64) {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if epoch != c.epoch {
		return
	}
	if len(c.m) >= cacheMaxEntries {
		for k, e := range c.m {
			if !now.Before(e.expires) {
				delete(c.m, k)
			}
		}
		for k := range c.m { // still full: drop arbitrary entries
			if len(c.m) < cacheMaxEntries {
				break
			}
			delete(c.m, k)
		}
	}
	c.m[key] = ttlEntry[V]{v: v, expires: now.Add(c.ttl)}
}

// invalidate drops every entry whose value matches, and keeps fetches in flight from storing
// what they fetched. A nil match drops everything.
func (c *ttlCache[V]) invalidate(match func(V) bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch++
	for k, e := range c.m {
		if match == nil || match(e.v) {
			delete(c.m, k)
		}
	}
}

// credentialKey is the cache key of a credential: its SHA-256, so that no secret is kept as
// a map key in memory longer than the request that carried it.
func credentialKey(credential string) string {
	sum := sha256.Sum256([]byte(credential))
	return string(sum[:])
}
