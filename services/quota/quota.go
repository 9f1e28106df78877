// Package quota enforces rate limits on requests and tokens per window, per organisation,
// team, subject or API key, and optionally per model.
//
// Limits are opt-in: a request that no limit matches is admitted (deciding who may use a
// model at all is the policy service's job). Counters live behind the Limiter interface:
// quotamem keeps them in process, quotaredis shares them between replicas through Redis.
//
// # Algorithm
//
// Every implementation uses the generic cell rate algorithm (GCRA), stored in its
// equivalent leaky-bucket form: per counter a level (units in use) and the time it was last
// updated. The level drains continuously at Amount/Window units per unit of time, a request
// is admitted while the level leaves room for one more unit, and a full bucket needs one
// Window to drain. Compared with fixed windows there is no edge at which the counter resets,
// so a client cannot spend the whole amount just before a window boundary and again just
// after it; compared with a sliding log it needs two numbers per counter whatever the
// amount; compared with a sliding-window counter (current plus weighted previous window) the
// retry-after it reports is exact rather than an estimate, and it is one key per counter,
// which keeps the Redis script and its TTLs simple. The cost of that choice: capacity comes
// back gradually (one unit every Window/Amount) instead of all at once.
package quota

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// MaxAmount is the largest Amount a limit or counter may have. Levels are float64 in both
// implementations (and Lua numbers in Redis), exact for integers up to 2^53.
const MaxAmount = 1 << 53

// ErrInvalidCounter is returned (wrapped) by a Limiter given a counter it cannot apply; it
// means a bug in the caller, not a refusal.
var ErrInvalidCounter = errors.New("invalid counter")

// Clock returns the current time. Limiters take one in their Config so that tests can move
// time forward; nil means the implementation's default (see each package).
type Clock func() time.Time

// Kind says what a limit counts.
type Kind int

const (
	// KindUnspecified is the zero Kind; no valid limit has it.
	KindUnspecified Kind = iota
	// KindRequests counts admitted requests: Reserve charges one unit.
	KindRequests
	// KindTokens counts tokens: Reserve only checks, Commit charges the tokens used, since
	// they are known only after the response.
	KindTokens
)

func (k Kind) String() string {
	switch k {
	case KindRequests:
		return "requests"
	case KindTokens:
		return "tokens"
	default:
		return fmt.Sprintf("Kind(%d)", int(k))
	}
}

// Partition says which attribute of the subject separates one limit's counters: with
// ByTeam every team of the organisation has its own counter.
type Partition int

const (
	// PartitionUnspecified is the zero Partition; no valid limit has it.
	PartitionUnspecified Partition = iota
	// ByOrganization shares one counter among every request of the organisation.
	ByOrganization
	// ByTeam gives each team its own counter. Requests without a team are not limited by it.
	ByTeam
	// BySubject gives each user or service account its own counter.
	BySubject
	// ByAPIKey gives each API key its own counter. Requests not made with an API key (for
	// example OIDC sessions) are not limited by it.
	ByAPIKey
)

func (p Partition) String() string {
	switch p {
	case ByOrganization:
		return "organization"
	case ByTeam:
		return "team"
	case BySubject:
		return "subject"
	case ByAPIKey:
		return "api_key"
	default:
		return fmt.Sprintf("Partition(%d)", int(p))
	}
}

// Scope says which requests share a counter.
type Scope struct {
	By Partition
	// PerModel gives each model its own counter within the partition.
	PerModel bool
}

// Match selects the requests a limit applies to. OrganizationID is required, so a limit
// never applies across organisations; an empty optional field matches any value.
type Match struct {
	OrganizationID string
	TeamID         string
	Subject        string
	APIKeyID       string
	Model          string
}

// Limit allows Amount units of Kind per Window to each counter its Scope defines, for the
// requests its Match selects.
type Limit struct {
	// Name identifies the limit in errors (QuotaFailure) and responses; unique.
	Name   string
	Match  Match
	Scope  Scope
	Kind   Kind
	Amount int64
	Window time.Duration
}

// Validate reports every problem with l at once.
func (l Limit) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("limit %q: "+format, append([]any{l.Name}, args...)...))
	}
	if l.Name == "" {
		bad("name is required")
	}
	if l.Match.OrganizationID == "" {
		bad("match.organization_id is required")
	}
	switch l.Scope.By {
	case ByOrganization, ByTeam, BySubject, ByAPIKey:
	default:
		bad("scope.by must be organization, team, subject or api_key, got %v", l.Scope.By)
	}
	switch l.Kind {
	case KindRequests, KindTokens:
	default:
		bad("kind must be requests or tokens, got %v", l.Kind)
	}
	if l.Amount <= 0 || l.Amount > MaxAmount {
		bad("amount must be between 1 and 2^53, got %d", l.Amount)
	}
	if l.Window < time.Millisecond {
		bad("window must be at least 1ms, got %v", l.Window)
	}
	return errors.Join(errs...)
}

// Counter is one shared count a Limiter maintains. Within one tenant, counters with the same
// Key are the same counter.
type Counter struct {
	Key    string
	Kind   Kind
	Amount int64
	Window time.Duration
}

// CounterState is one counter as a Reserve left it.
type CounterState struct {
	// Fits is whether the counter had room for this request (whether or not the request
	// was admitted: another counter may have refused it).
	Fits bool
	// Remaining is how many whole units are free after the call.
	Remaining int64
	// ResetAfter is the time until the counter is back to zero use if nothing more is charged.
	ResetAfter time.Duration
	// RetryAfter is, when Fits is false, the time until the counter has room for one unit;
	// always positive then. Zero when Fits is true.
	RetryAfter time.Duration
}

// Decision is the outcome of a Reserve.
type Decision struct {
	// Admitted is true iff every counter fits.
	Admitted bool
	// Counters holds the state of each counter, in the order they were given.
	Counters []CounterState
}

// Limiter keeps counters. Implementations pass quotatest.TestLimiter and are safe for
// concurrent use, including by several processes sharing one store.
//
// The tenant (the organisation) namespaces keys: counters of different tenants never
// interact. All counters of one call belong to one tenant, which lets a distributed
// implementation keep them together (one Redis Cluster slot) and update them atomically.
// Keys within a call must be distinct.
//
// Errors: a wrapped ErrInvalidCounter for a bad tenant or counter; context errors; any
// other error means the store could not be reached or answered wrongly, and the caller must
// not treat it as an admission.
type Limiter interface {
	// Reserve atomically admits a request iff every counter has room for one more unit
	// (request counters) or is not yet spent (token counters), and then charges one unit to
	// every request counter. It charges nothing when any counter refuses.
	Reserve(ctx context.Context, tenant string, counters []Counter) (Decision, error)
	// Commit adds tokens to every token counter given; request counters are ignored. Token
	// counters may go past their amount: the excess delays later requests.
	Commit(ctx context.Context, tenant string, counters []Counter, tokens int64) error
}

// ValidateCounters checks the arguments of a Limiter call; implementations call it first.
func ValidateCounters(tenant string, counters []Counter) error {
	if tenant == "" {
		return fmt.Errorf("%w: empty tenant", ErrInvalidCounter)
	}
	for i, c := range counters {
		switch {
		case c.Key == "":
			return fmt.Errorf("%w: counter %d: empty key", ErrInvalidCounter, i)
		case c.Kind != KindRequests && c.Kind != KindTokens:
			return fmt.Errorf("%w: counter %q: kind %v", ErrInvalidCounter, c.Key, c.Kind)
		case c.Amount <= 0 || c.Amount > MaxAmount:
			return fmt.Errorf("%w: counter %q: amount %d", ErrInvalidCounter, c.Key, c.Amount)
		case c.Window < time.Microsecond:
			return fmt.Errorf("%w: counter %q: window %v", ErrInvalidCounter, c.Key, c.Window)
		}
		for _, d := range counters[:i] {
			if d.Key == c.Key {
				return fmt.Errorf("%w: counter %q given twice", ErrInvalidCounter, c.Key)
			}
		}
	}
	return nil
}
