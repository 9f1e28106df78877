package identitypg

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fmgate/fmgate/services/identity"
)

// Channel is the Postgres notification channel of revocations. The migration's trigger
// notifies it in the transaction that revokes a key; every schema shares it and names itself
// in the payload.
const Channel = "fmgate_identity_revocations"

const (
	// pollInterval is how often a listener that lost its connection polls for revocations
	// while it reconnects: below a second, so revocations still reach every replica in one.
	pollInterval = 250 * time.Millisecond
	// catchUpSlack widens each poll backwards, so that a revocation recorded before a poll
	// but committed after it is still seen by the next one. Repeats are allowed.
	catchUpSlack = 5 * time.Second
)

// ListenerApplicationName is the application_name of the connection that LISTENs for the
// revocations of schema, so that operators (and tests) can find it in pg_stat_activity.
func ListenerApplicationName(schema string) string { return "fmgate_listen_" + schema }

// listener runs one LISTEN connection per Store while anyone subscribes, and fans its
// notifications out in process. It starts with the first subscriber and stops with the
// last, so a Store nobody watches holds no extra connection and no goroutine.
type listener struct {
	store *Store
	hub   identity.Broadcaster

	mu     sync.Mutex
	n      int
	cancel context.CancelFunc
	done   chan struct{}
	ready  chan struct{}
}

func newListener(s *Store) *listener { return &listener{store: s} }

// SubscribeRevocations implements identity.Store. It returns once revocations committed
// from then on are sure to be delivered: the LISTEN is in place, or, when Postgres cannot
// be reached for it, the poll that stands in for it has a starting point.
func (s *Store) SubscribeRevocations(ctx context.Context) (<-chan identity.Revocation, error) {
	return s.listener.subscribe(ctx)
}

func (l *listener) subscribe(ctx context.Context) (<-chan identity.Revocation, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	l.mu.Lock()
	if l.n == 0 {
		runCtx, cancel := context.WithCancel(context.Background())
		l.cancel, l.done, l.ready = cancel, make(chan struct{}), make(chan struct{})
		go l.run(runCtx, l.done, l.ready)
	}
	l.n++
	ready := l.ready
	l.mu.Unlock()

	// Subscribe before waiting, so nothing published between ready and now is lost.
	ch := l.hub.Subscribe(ctx)
	context.AfterFunc(ctx, l.release)
	select {
	case <-ready:
		return ch, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// release forgets one subscriber and stops the listener after the last.
func (l *listener) release() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.n--
	if l.n > 0 {
		return
	}
	l.cancel()
	<-l.done
}

// run listens until ctx ends. When the connection drops it polls every pollInterval while it
// reconnects, and once reconnected it polls once more for what happened in between.
func (l *listener) run(ctx context.Context, done, ready chan struct{}) {
	defer close(done)
	var once sync.Once
	markReady := func() { once.Do(func() { close(ready) }) }
	var since time.Time // zero until the first poll sets it to the database's clock
	for ctx.Err() == nil {
		if conn, err := l.connect(ctx); err == nil {
			// A poll after LISTEN, not before, leaves no gap.
			if l.poll(ctx, &since) {
				markReady()
			}
			l.receive(ctx, conn)
			closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			_ = conn.Close(closeCtx)
			cancel()
		}
		if l.poll(ctx, &since) {
			markReady()
		} else if ctx.Err() == nil {
			// Neither LISTEN nor poll: delivery can no longer be promised. Closing every
			// subscription tells each subscriber to distrust what it cached.
			l.hub.Close()
		}
		select {
		case <-ctx.Done():
		case <-time.After(pollInterval):
		}
	}
}

func (l *listener) connect(ctx context.Context) (*pgx.Conn, error) {
	cfg := l.store.pool.Config().ConnConfig.Copy()
	cfg.RuntimeParams["application_name"] = ListenerApplicationName(l.store.schema)
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{Channel}.Sanitize()); err != nil {
		_ = conn.Close(context.WithoutCancel(ctx))
		return nil, err
	}
	return conn, nil
}

// receive publishes the notifications of this store's schema until the connection fails or
// ctx ends.
func (l *listener) receive(ctx context.Context, conn *pgx.Conn) {
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return
		}
		var p struct {
			Schema         string    `json:"schema"`
			OrganizationID string    `json:"organization_id"`
			ID             string    `json:"id"`
			RevokeTime     time.Time `json:"revoke_time"`
		}
		if json.Unmarshal([]byte(n.Payload), &p) != nil || p.Schema != l.store.schema {
			continue
		}
		l.hub.Publish(identity.Revocation{OrganizationID: p.OrganizationID, KeyID: p.ID, RevokeTime: p.RevokeTime.UTC()})
	}
}

// poll publishes the revocations recorded since *since (less catchUpSlack) and moves *since
// to the database's clock. The first poll only sets *since: a subscription promises what
// happens after it starts. It reports whether the poll succeeded.
func (l *listener) poll(ctx context.Context, since *time.Time) bool {
	err := func() error {
		var now time.Time
		if err := l.store.pool.QueryRow(ctx, `SELECT clock_timestamp()`).Scan(&now); err != nil {
			return err
		}
		if since.IsZero() {
			*since = now
			return nil
		}
		rows, err := l.store.pool.Query(ctx, l.store.q.revokedSince, since.Add(-catchUpSlack))
		if err != nil {
			return err
		}
		revs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (identity.Revocation, error) {
			var rev identity.Revocation
			err := r.Scan(&rev.OrganizationID, &rev.KeyID, &rev.RevokeTime)
			rev.RevokeTime = rev.RevokeTime.UTC()
			return rev, err
		})
		if err != nil {
			return fmt.Errorf("poll revocations: %w", err)
		}
		for _, r := range revs {
			l.hub.Publish(r)
		}
		*since = now
		return nil
	}()
	return err == nil
}
