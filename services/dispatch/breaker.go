package dispatch

// Circuit breaking: an endpoint that keeps failing is skipped for a cool-down, so that requests
// go straight to the next endpoint instead of each paying for a failure (or a timeout) first.

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/sony/gobreaker/v2"
)

type breakerOutcome int

const (
	outcomeIgnored breakerOutcome = iota // nothing reached the vendor, or the caller left
	outcomeSuccess                       // the vendor answered
	outcomeFailure                       // the endpoint looks unhealthy
)

// errBreakerFailure and errBreakerIgnored are what an attempt reports to its breaker; success
// is nil.
var (
	errBreakerFailure = errors.New("endpoint failure")
	errBreakerIgnored = errors.New("not counted")
)

// breakers holds one circuit breaker per (organisation, endpoint id), apart from the endpoint
// cache so that an endpoint's state survives the refresh of its cache entry (and a registry
// change of its URL or credential, which an SRE may make to repair it: the half-open probe
// tells). Breakers are gobreaker's two-step kind, because a stream's outcome is known only when
// it ends. It is safe for concurrent use.
//
// States: closed (calls pass; `failures` consecutive failing attempts open it), open (attempts
// are skipped without calling the vendor, for `cooldown`), half-open (one probe passes; its
// success closes the breaker, its failure opens it again; other attempts meanwhile are skipped).
type breakers struct {
	failures uint32 // 0: breaking disabled
	cooldown time.Duration
	max      int
	log      *slog.Logger

	mu sync.Mutex
	m  map[endpointKey]*gobreaker.TwoStepCircuitBreaker[struct{}]
}

func newBreakers(failures int, cooldown time.Duration, max int, log *slog.Logger) *breakers {
	if failures < 0 {
		failures = 0
	}
	return &breakers{
		failures: uint32(failures), cooldown: cooldown, max: max, log: log,
		m: make(map[endpointKey]*gobreaker.TwoStepCircuitBreaker[struct{}]),
	}
}

// allow asks the endpoint's breaker for an attempt. It returns the function reporting the
// attempt's outcome, or ok false when the breaker is open (or half-open with its probe taken).
func (b *breakers) allow(org, id string) (done func(breakerOutcome), ok bool) {
	if b.failures == 0 {
		return func(breakerOutcome) {}, true
	}
	report, err := b.get(endpointKey{org, id}).Allow()
	if err != nil {
		return nil, false
	}
	return func(o breakerOutcome) {
		switch o {
		case outcomeSuccess:
			report(nil)
		case outcomeFailure:
			report(errBreakerFailure)
		default:
			report(errBreakerIgnored)
		}
	}, true
}

func (b *breakers) get(key endpointKey) *gobreaker.TwoStepCircuitBreaker[struct{}] {
	b.mu.Lock()
	defer b.mu.Unlock()
	if cb, ok := b.m[key]; ok {
		return cb
	}
	if len(b.m) >= b.max {
		// Forget closed breakers first: they hold at most a few recent failures. An open one
		// goes only when nothing else is left, which a gateway with this many endpoints
		// does not reach.
		for k, cb := range b.m {
			if cb.State() == gobreaker.StateClosed {
				delete(b.m, k)
			}
		}
		for k := range b.m {
			if len(b.m) < b.max {
				break
			}
			delete(b.m, k)
		}
	}
	cb := gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        key.id,
		MaxRequests: 1,
		Timeout:     b.cooldown,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= b.failures },
		IsExcluded:  func(err error) bool { return errors.Is(err, errBreakerIgnored) },
		OnStateChange: func(_ string, from, to gobreaker.State) {
			level := slog.LevelInfo
			if to == gobreaker.StateOpen {
				level = slog.LevelWarn
			}
			// No request context: the state belongs to the endpoint, not to the request
			// whose outcome happened to change it.
			b.log.Log(context.Background(), level, "endpoint circuit "+to.String(),
				slog.String("organization_id", key.org),
				slog.String("endpoint_id", key.id),
				slog.String("from", from.String()),
			)
		},
	})
	b.m[key] = cb
	return cb
}
