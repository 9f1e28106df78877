package dispatch

// Load balancing: the order in which one request tries its endpoints.

import (
	"cmp"
	"context"
	"math/rand/v2"
	"slices"
	"sync"
)

// candidate is one endpoint of a request: resolved, or the reason it could not be.
type candidate struct {
	id   string
	tier int32 // the caller's tier, when it gave tiers
	ep   *endpoint
	err  error
}

// plan yields a request's endpoints in the order to try them. The caller's list (the registry's
// route: the model's endpoints by priority, then each fallback model's) is cut into groups of
// consecutive endpoints of one tier when the caller gives the route's tiers (the edge does:
// tiers keep a fallback model out of the primary's group), else of equal registry priority; a group is tried only after every endpoint of the
// groups before it has failed, and within a group the order is drawn by weight (see
// weightedOrder). Priorities and weights come from the registry through the endpoint cache,
// never from the request.
//
// Endpoints are resolved lazily, a group at a time: finding where a group ends takes resolving
// the first endpoint of the next one, and nothing further. An endpoint that cannot be resolved
// has no known priority and forms a group of its own at its place in the list, so that it
// fails (and is logged) where the caller put it.
type plan struct {
	s     *Server
	org   string
	ids   []string
	tiers []int32    // nil, or one per id
	next  int        // index in ids of the next endpoint to resolve
	ahead *candidate // resolved, and the first of the next group
	group []candidate
}

func (s *Server) newPlan(org string, ids []string, tiers []int32) *plan {
	if len(tiers) != len(ids) {
		tiers = nil // validate rejects this; a nil plan groups by priority
	}
	return &plan{s: s, org: org, ids: ids, tiers: tiers}
}

// nextCandidate returns the next endpoint to try, or false when none is left.
func (p *plan) nextCandidate(ctx context.Context) (candidate, bool) {
	if len(p.group) == 0 && !p.fill(ctx) {
		return candidate{}, false
	}
	c := p.group[0]
	p.group = p.group[1:]
	return c, true
}

// fill makes the next group the current one.
func (p *plan) fill(ctx context.Context) bool {
	first, ok := p.take(ctx)
	if !ok {
		return false
	}
	p.group = append(p.group[:0], first)
	if first.err != nil && p.tiers == nil {
		return true
	}
	for {
		c, ok := p.take(ctx)
		if !ok {
			break
		}
		if p.tiers != nil && c.tier != first.tier || p.tiers == nil && (c.err != nil || c.ep.priority != first.ep.priority) {
			p.ahead = &c
			break
		}
		p.group = append(p.group, c)
	}
	p.s.weightedOrder(p.group)
	return true
}

func (p *plan) take(ctx context.Context) (candidate, bool) {
	if c := p.ahead; c != nil {
		p.ahead = nil
		return *c, true
	}
	if p.next >= len(p.ids) {
		return candidate{}, false
	}
	c := candidate{id: p.ids[p.next]}
	if p.tiers != nil {
		c.tier = p.tiers[p.next]
	}
	p.next++
	c.ep, c.err = p.s.endpoints.get(ctx, p.org, c.id)
	return c, true
}

// weightedOrder orders a group of resolved endpoints by successive weighted random draws
// without replacement: the first is endpoint i with probability weight(i)/Σweights, the second
// is drawn the same way from the rest, and so on. So each endpoint receives its share of first
// attempts, which is the traffic split the registry's weights describe, and a failure falls
// back to the others in a weighted order too. Random rather than smooth weighted round robin
// (nginx's), because dispatch runs on many replicas: a per-replica rotation would synchronise
// replicas' choices under bursts, and random choice needs no shared state. Groups are small
// (at most maxEndpoints), so the quadratic draw costs less than a sort.
func (s *Server) weightedOrder(g []candidate) {
	// Endpoints that could not be resolved go last, in their order: they fail without a call.
	slices.SortStableFunc(g, func(a, b candidate) int {
		return cmp.Compare(boolInt(a.ep == nil), boolInt(b.ep == nil))
	})
	for len(g) > 0 && g[len(g)-1].ep == nil {
		g = g[:len(g)-1]
	}
	if len(g) < 2 {
		return
	}
	var total int64
	for _, c := range g {
		total += c.ep.weight
	}
	for i := 0; i < len(g)-1; i++ {
		r := s.rand.int64N(total)
		j := i
		for ; j < len(g)-1; j++ {
			if r < g[j].ep.weight {
				break
			}
			r -= g[j].ep.weight
		}
		g[i], g[j] = g[j], g[i]
		total -= g[i].ep.weight
	}
}

// randSource draws the random numbers of load balancing and backoff jitter: from a Config.Rand
// when one is given (tests seed one for determinism; a *rand.Rand is not safe for concurrent
// use, so draws are serialised), otherwise from math/rand/v2's global source, which is safe
// for concurrent use and does not contend.
type randSource struct {
	mu sync.Mutex
	r  *rand.Rand
}

// int64N returns a number in [0, n); n must be positive.
func (s *randSource) int64N(n int64) int64 {
	if s.r == nil {
		return rand.Int64N(n)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.r.Int64N(n)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
