// Package quotaredis keeps quota counters in Redis, shared by every replica of the quota
// service.
//
// Each call is one Lua script (EVALSHA, falling back to EVAL once per server when the
// script is not cached), so a reservation across several counters is atomic: Redis runs a
// script without interleaving other commands.
//
// # Keys
//
// A counter is the hash <prefix>{<tenant>}:<counter key> with fields l (level) and t (last
// update, µs). The tenant (the organisation) is query-escaped, so it contains no brace and
// its hash tag is exactly the tenant: every counter of one call lives in one Redis Cluster
// slot, which a multi-key script requires. The price is that one organisation's counters
// all live on one shard; that is what makes its reservations atomic. Keys expire one second
// after they have fully drained, when they are equivalent to a missing key; for request
// counters that is at most one window.
//
// # Clock
//
// By default the scripts read the Redis server's clock (TIME), so every replica of the
// quota service sees the same time and host clock skew cannot let a counter drain early.
// Config.Clock replaces it with a time passed by the caller; tests use it to move time, and
// it is otherwise only safe when the replicas' clocks are tightly synchronised (a replica
// ahead drains counters early; one behind drains nothing until it catches up).
package quotaredis

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/extra/redisotel/v9"
	"github.com/redis/go-redis/v9"

	"github.com/fmgate/fmgate/services/quota"
)

// DefaultPrefix starts every key when Config.Prefix is empty.
const DefaultPrefix = "fmgate:quota:"

var (
	//go:embed reserve.lua
	reserveSource string
	//go:embed commit.lua
	commitSource string

	reserveScript = redis.NewScript(reserveSource)
	commitScript  = redis.NewScript(commitSource)
)

// Config tunes a Limiter. The zero value works.
type Config struct {
	// Prefix starts every key; DefaultPrefix when empty. It must not contain braces, which
	// would change the keys' hash tag.
	Prefix string
	// Clock, when set, replaces the Redis server clock (see the package documentation).
	Clock quota.Clock
}

// Limiter is a quota.Limiter on Redis. It does not own the client.
type Limiter struct {
	client redis.UniversalClient
	prefix string
	clock  quota.Clock
}

var _ quota.Limiter = (*Limiter)(nil)

// New returns a Limiter using client, which may be a single node, a Cluster or a failover
// client.
func New(client redis.UniversalClient, cfg Config) (*Limiter, error) {
	if client == nil {
		return nil, errors.New("quotaredis: nil client")
	}
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if strings.ContainsAny(cfg.Prefix, "{}") {
		return nil, fmt.Errorf("quotaredis: prefix %q must not contain braces", cfg.Prefix)
	}
	return &Limiter{client: client, prefix: cfg.Prefix, clock: cfg.Clock}, nil
}

// Reserve implements quota.Limiter.
func (l *Limiter) Reserve(ctx context.Context, tenant string, counters []quota.Counter) (quota.Decision, error) {
	if err := quota.ValidateCounters(tenant, counters); err != nil {
		return quota.Decision{}, err
	}
	if len(counters) == 0 {
		return quota.Decision{Admitted: true, Counters: []quota.CounterState{}}, nil
	}
	keys := l.keys(tenant, counters)
	args := make([]any, 0, 1+3*len(counters))
	args = append(args, l.now())
	for _, c := range counters {
		kind := "r"
		if c.Kind == quota.KindTokens {
			kind = "t"
		}
		args = append(args, kind, c.Amount, c.Window.Microseconds())
	}
	res, err := reserveScript.Run(ctx, l.client, keys, args...).Int64Slice()
	if err != nil {
		return quota.Decision{}, fmt.Errorf("reserve: %w", err)
	}
	if len(res) != 1+4*len(counters) {
		return quota.Decision{}, fmt.Errorf("reserve: script returned %d values for %d counters", len(res), len(counters))
	}
	dec := quota.Decision{Admitted: res[0] == 1, Counters: make([]quota.CounterState, len(counters))}
	for i := range counters {
		r := res[1+4*i:]
		dec.Counters[i] = quota.CounterState{
			Fits:       r[0] == 1,
			Remaining:  r[1],
			ResetAfter: ceilMillisecond(r[2]),
			RetryAfter: ceilMillisecond(r[3]),
		}
	}
	return dec, nil
}

// Commit implements quota.Limiter.
func (l *Limiter) Commit(ctx context.Context, tenant string, counters []quota.Counter, tokens int64) error {
	if err := quota.ValidateCounters(tenant, counters); err != nil {
		return err
	}
	if tokens <= 0 {
		return nil
	}
	var keys []string
	args := []any{l.now(), tokens}
	for _, c := range counters {
		if c.Kind != quota.KindTokens {
			continue
		}
		keys = append(keys, l.key(tenant, c.Key))
		args = append(args, c.Amount, c.Window.Microseconds())
	}
	if len(keys) == 0 {
		return nil
	}
	if err := commitScript.Run(ctx, l.client, keys, args...).Err(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// now returns the script's time argument: empty to use the Redis server clock.
func (l *Limiter) now() string {
	if l.clock == nil {
		return ""
	}
	return strconv.FormatInt(l.clock().UnixMicro(), 10)
}

func (l *Limiter) keys(tenant string, counters []quota.Counter) []string {
	keys := make([]string, len(counters))
	for i, c := range counters {
		keys[i] = l.key(tenant, c.Key)
	}
	return keys
}

// key is <prefix>{<escaped tenant>}:<counter key>. The escaped tenant holds no brace, so the
// first '}' closes it: distinct (tenant, key) pairs give distinct keys, and the hash tag is
// the tenant's.
func (l *Limiter) key(tenant, key string) string {
	return l.prefix + "{" + url.QueryEscape(tenant) + "}:" + key
}

func ceilMillisecond(us int64) time.Duration {
	d := time.Duration(us) * time.Microsecond
	if r := d % time.Millisecond; r != 0 {
		d += time.Millisecond - r
	}
	return d
}

// Connect returns a client for url (redis://[user:password@]host:port/db, rediss:// or
// unix://) with OpenTelemetry tracing, after checking that the server answers. Errors
// never contain the URL's password.
func Connect(ctx context.Context, rawURL string) (*redis.Client, error) {
	opts, err := redis.ParseURL(rawURL)
	if err != nil {
		// url.Error quotes the whole URL; keep only the reason.
		if ue := (*url.Error)(nil); errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("parse redis url: %s", redact(err.Error(), rawURL))
	}
	client := redis.NewClient(opts)
	if err := redisotel.InstrumentTracing(client); err != nil {
		_ = client.Close()
		return nil, fmt.Errorf("instrument redis client: %w", err)
	}
	if err := client.Ping(ctx).Err(); err != nil {
		_ = client.Close()
		return nil, fmt.Errorf("ping redis at %s: %s", opts.Addr, redact(err.Error(), rawURL))
	}
	return client, nil
}

// redact removes from msg the URL and its user information (user name and password),
// which a URL that does not parse may still hold.
func redact(msg, rawURL string) string {
	msg = strings.ReplaceAll(msg, rawURL, "<redis url>")
	rest := rawURL
	if i := strings.Index(rest, "://"); i >= 0 {
		rest = rest[i+3:]
	}
	if at := strings.LastIndex(rest, "@"); at > 0 {
		userinfo := rest[:at]
		msg = strings.ReplaceAll(msg, userinfo, "xxxxx")
		if _, pw, ok := strings.Cut(userinfo, ":"); ok && pw != "" {
			msg = strings.ReplaceAll(msg, pw, "xxxxx")
			if unescaped, err := url.PathUnescape(pw); err == nil && unescaped != "" {
				msg = strings.ReplaceAll(msg, unescaped, "xxxxx")
			}
		}
	}
	return msg
}
