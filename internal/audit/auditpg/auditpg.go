// Package auditpg is the Postgres audit store: table events, append-only by trigger, and
// table chain_heads, whose row per chain is the lock that serialises appends to that chain.
package auditpg

import (
	"cmp"
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fmgate/fmgate/internal/audit"
	"github.com/fmgate/fmgate/internal/pg"
)

// DefaultSchema is the schema the audit tables live in unless configured otherwise.
const DefaultSchema = "audit"

//go:embed migrations/*.sql
var migrations embed.FS

// Migrate applies the audit store's migrations to schema.
func Migrate(ctx context.Context, pool *pgxpool.Pool, schema string) error {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return fmt.Errorf("migrate %s: %w", schema, err)
	}
	return pg.Migrate(ctx, pool, schema, sub)
}

// Store is an audit.Store on Postgres. Its schema must have been migrated (Migrate).
type Store struct {
	pool   *pgxpool.Pool
	events pgx.Identifier

	ensureHead, lockHead, existing, moveHead, list, records, head string
}

var _ audit.Store = (*Store)(nil)

const columns = `organization_id, service, sequence, id, event_time, actor_subject, actor_kind,
	action, resource_type, resource_id, before, after, details, trace_id, prev_hash, hash`

var columnNames = []string{"organization_id", "service", "sequence", "id", "event_time",
	"actor_subject", "actor_kind", "action", "resource_type", "resource_id", "before", "after",
	"details", "trace_id", "prev_hash", "hash"}

// New returns a store on the tables of schema.
func New(pool *pgxpool.Pool, schema string) *Store {
	q := func(s string) string { return pg.Qualify(schema, s) }
	return &Store{
		pool:   pool,
		events: pgx.Identifier{schema, "events"},
		ensureHead: q(`INSERT INTO {schema}.chain_heads (organization_id, service, sequence, hash)
			VALUES ($1, $2, 0, '') ON CONFLICT DO NOTHING`),
		// The row lock is held until the transaction ends: the next appender to this chain
		// waits here and then reads the head this one wrote.
		lockHead: q(`SELECT sequence, hash FROM {schema}.chain_heads
			WHERE organization_id = $1 AND service = $2 FOR UPDATE`),
		existing: q(`SELECT id FROM {schema}.events
			WHERE organization_id = $1 AND service = $2 AND id = ANY($3)`),
		moveHead: q(`UPDATE {schema}.chain_heads SET sequence = $3, hash = $4
			WHERE organization_id = $1 AND service = $2`),
		list: q(`SELECT ` + columns + ` FROM {schema}.events
			WHERE organization_id = $1
				AND ($2 = '' OR service = $2)
				AND ($3 = '' OR action = $3)
				AND ($4 = '' OR actor_subject = $4)
				AND ($5::timestamptz IS NULL OR event_time >= $5)
				AND ($6::timestamptz IS NULL OR event_time < $6)
				AND (NOT $7::boolean OR (event_time, service, sequence) > ($8, $9, $10))
			ORDER BY event_time, service, sequence
			LIMIT $11`),
		records: q(`SELECT ` + columns + ` FROM {schema}.events
			WHERE organization_id = $1 AND service = $2 ORDER BY sequence`),
		head: q(`SELECT sequence, hash FROM {schema}.chain_heads
			WHERE organization_id = $1 AND service = $2`),
	}
}

func scan(row pgx.CollectableRow) (audit.Event, error) {
	var e audit.Event
	var before, after, details []byte
	err := row.Scan(&e.OrganizationID, &e.Service, &e.Sequence, &e.ID, &e.Time, &e.Actor.Subject,
		&e.Actor.Kind, &e.Action, &e.Resource.Type, &e.Resource.ID, &before, &after, &details,
		&e.TraceID, &e.PrevHash, &e.Hash)
	e.Time = e.Time.UTC()
	e.Before, e.After, e.Details = before, after, details
	if len(e.PrevHash) == 0 {
		e.PrevHash = nil
	}
	return e, err
}

// Append implements audit.Store, in one transaction.
func (s *Store) Append(ctx context.Context, events ...audit.Event) error {
	if len(events) == 0 {
		return nil
	}
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error { return s.AppendTx(ctx, tx, events...) })
}

// AppendTx appends events within the caller's transaction tx, with Append's semantics. A
// service that keeps its own data in the same database records an admin change in the
// transaction that makes it, so that the change and its audit record commit together (a
// transactional outbox that survives a crash). The chain's row lock is held until tx ends:
// keep such transactions short.
func (s *Store) AppendTx(ctx context.Context, tx pgx.Tx, events ...audit.Event) error {
	type key struct{ org, service string }
	byChain := map[key][]audit.Event{}
	for _, e := range events {
		n, err := audit.Normalize(e)
		if err != nil {
			return err
		}
		k := key{n.OrganizationID, n.Service}
		byChain[k] = append(byChain[k], n)
	}
	keys := make([]key, 0, len(byChain))
	for k := range byChain {
		keys = append(keys, k)
	}
	// Locking chains in one global order keeps two multi-chain appends from deadlocking.
	slices.SortFunc(keys, func(a, b key) int { return cmp.Or(cmp.Compare(a.org, b.org), cmp.Compare(a.service, b.service)) })
	for _, k := range keys {
		if err := s.appendChain(ctx, tx, k.org, k.service, byChain[k]); err != nil {
			return fmt.Errorf("append audit events to %s/%s: %w", k.org, k.service, err)
		}
	}
	return nil
}

func (s *Store) appendChain(ctx context.Context, tx pgx.Tx, org, service string, events []audit.Event) error {
	if _, err := tx.Exec(ctx, s.ensureHead, org, service); err != nil {
		return err
	}
	var seq int64
	var hash []byte
	if err := tx.QueryRow(ctx, s.lockHead, org, service).Scan(&seq, &hash); err != nil {
		return err
	}
	ids := make([]string, len(events))
	for i, e := range events {
		ids[i] = e.ID
	}
	rows, _ := tx.Query(ctx, s.existing, org, service, ids)
	have, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, id := range have {
		seen[id] = true
	}
	var copyRows [][]any
	for _, e := range events {
		if seen[e.ID] {
			continue
		}
		seen[e.ID] = true
		l := audit.Link(e, seq, hash)
		seq, hash = l.Sequence, l.Hash
		copyRows = append(copyRows, []any{l.OrganizationID, l.Service, l.Sequence, l.ID, l.Time,
			l.Actor.Subject, l.Actor.Kind, l.Action, l.Resource.Type, l.Resource.ID,
			jsonArg(l.Before), jsonArg(l.After), jsonArg(l.Details), l.TraceID,
			[]byte(nonNil(l.PrevHash)), []byte(l.Hash)})
	}
	if len(copyRows) == 0 {
		return nil
	}
	if _, err := tx.CopyFrom(ctx, s.events, columnNames, pgx.CopyFromRows(copyRows)); err != nil {
		return err
	}
	_, err = tx.Exec(ctx, s.moveHead, org, service, seq, hash)
	return err
}

// jsonArg passes absent JSON as SQL NULL and present JSON as its exact text.
func jsonArg(b []byte) any {
	if b == nil {
		return nil
	}
	return string(b)
}

func nonNil(h audit.Hash) audit.Hash {
	if h == nil {
		return audit.Hash{}
	}
	return h
}

// List implements audit.Store.
func (s *Store) List(ctx context.Context, f audit.Filter, p audit.Page) ([]audit.Event, string, error) {
	after, hasAfter, err := audit.DecodePageToken(p.Token)
	if err != nil {
		return nil, "", err
	}
	limit := p.Limit()
	rows, _ := s.pool.Query(ctx, s.list, f.OrganizationID, f.Service, f.Action, f.ActorSubject,
		timeArg(f.From), timeArg(f.To), hasAfter, after.Time, after.Service, after.Sequence, limit+1)
	events, err := pgx.CollectRows(rows, scan)
	if err != nil {
		return nil, "", fmt.Errorf("list audit events: %w", err)
	}
	if len(events) <= limit {
		return events, "", nil
	}
	events = events[:limit]
	return events, audit.EncodePageToken(audit.CursorOf(events[limit-1])), nil
}

func timeArg(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// Verify implements audit.Store. The records and the chain head are read in one
// repeatable-read snapshot, so appends running meanwhile cannot look like a break.
func (s *Store) Verify(ctx context.Context, org, service string) (audit.Verification, error) {
	var v audit.Verification
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly},
		func(tx pgx.Tx) error {
			var headSeq int64
			var headHash []byte
			err := tx.QueryRow(ctx, s.head, org, service).Scan(&headSeq, &headHash)
			if err != nil && !errors.Is(err, pgx.ErrNoRows) {
				return err
			}
			rows, err := tx.Query(ctx, s.records, org, service)
			if err != nil {
				return err
			}
			defer rows.Close()
			var w audit.Verifier
			for rows.Next() {
				e, err := scan(rows)
				if err != nil {
					return err
				}
				if !w.Next(e) {
					break
				}
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
			v = w.End(headSeq, headHash)
			return nil
		})
	if err != nil {
		return audit.Verification{}, fmt.Errorf("verify audit chain %s/%s: %w", org, service, err)
	}
	return v, nil
}
