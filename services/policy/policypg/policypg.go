// Package policypg is the Postgres policy store.
package policypg

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fmgate/fmgate/internal/pg"
	"github.com/fmgate/fmgate/services/policy"
)

// DefaultSchema is the schema the policy tables live in unless configured otherwise.
const DefaultSchema = "policy"

//go:embed migrations/*.sql
var migrations embed.FS

// Migrate applies the policy store's migrations to schema.
func Migrate(ctx context.Context, pool *pgxpool.Pool, schema string) error {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return fmt.Errorf("migrate %s: %w", schema, err)
	}
	return pg.Migrate(ctx, pool, schema, sub)
}

// Store is a policy.Store on Postgres. Its schema must have been migrated (Migrate).
//
// Every write is one transaction that locks the policy's row (SELECT ... FOR UPDATE), so
// the etag check, the new revision, its history row and the version bump happen together;
// of concurrent writes with the same etag the second sees the first's revision and gets
// ErrConflict.
type Store struct {
	pool *pgxpool.Pool
	q    queries
}

type queries struct {
	lock, get, list, page, nextRevision, insert, update, history, del, revisions, bump, version string
}

var _ policy.Store = (*Store)(nil)

// content are the columns of a policy's content after its organization and id, in the
// order of contentArgs.
const content = `description, effect, subjects, models, condition, moderation_profile, max_output_tokens,
	allowed_endpoint_regions, allowed_modalities, log_retention_us, log_group, mask_personal_data,
	require_baa_coverage`

const columns = `organization_id, id, ` + content + `, revision, create_time, update_time, updated_by`

// New returns a store on the tables of schema.
func New(pool *pgxpool.Pool, schema string) *Store {
	q := func(s string) string { return pg.Qualify(schema, s) }
	return &Store{pool: pool, q: queries{
		lock:         q(`SELECT ` + columns + ` FROM {schema}.policies WHERE organization_id = $1 AND id = $2 FOR UPDATE`),
		get:          q(`SELECT ` + columns + ` FROM {schema}.policies WHERE organization_id = $1 AND id = $2`),
		list:         q(`SELECT ` + columns + ` FROM {schema}.policies WHERE organization_id = $1 ORDER BY id`),
		page:         q(`SELECT ` + columns + ` FROM {schema}.policies WHERE organization_id = $1 AND id > $2 ORDER BY id LIMIT $3`),
		nextRevision: q(`SELECT coalesce(max(revision), 0) + 1 FROM {schema}.policy_revisions WHERE organization_id = $1 AND id = $2`),
		insert: q(`INSERT INTO {schema}.policies (` + columns + `)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, now(), now(), $17)
			RETURNING create_time, update_time`),
		update: q(`UPDATE {schema}.policies SET (` + content + `, revision, update_time, updated_by) =
			($3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, now(), $17)
			WHERE organization_id = $1 AND id = $2
			RETURNING create_time, update_time`),
		history: q(`INSERT INTO {schema}.policy_revisions (` + columns + `, deleted)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)`),
		del: q(`DELETE FROM {schema}.policies WHERE organization_id = $1 AND id = $2`),
		revisions: q(`SELECT ` + columns + `, deleted FROM {schema}.policy_revisions
			WHERE organization_id = $1 AND id = $2 AND ($3::bigint = 0 OR revision < $3::bigint) ORDER BY revision DESC LIMIT $4`),
		bump: q(`INSERT INTO {schema}.policy_versions (organization_id, version) VALUES ($1, 1)
			ON CONFLICT (organization_id) DO UPDATE SET version = policy_versions.version + 1`),
		version: q(`SELECT coalesce(
			(SELECT version FROM {schema}.policy_versions WHERE organization_id = $1), 0)`),
	}}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func nilIfEmpty(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
}

func contentArgs(p policy.Policy) []any {
	var retention *int64
	if d, ok := p.LogRetention.Limit(); ok {
		us := d.Microseconds()
		retention = &us
	}
	return []any{p.Description, string(p.Effect), nonNil(p.Subjects), nonNil(p.Models), p.Condition,
		p.ModerationProfile, p.MaxOutputTokens, nonNil(p.AllowedEndpointRegions), nonNil(p.AllowedModalities),
		retention, p.LogGroup, p.MaskPersonalData, p.RequireBAACoverage}
}

func scanInto(row pgx.CollectableRow, p *policy.Policy, extra ...any) error {
	var retention *int64
	dest := append([]any{&p.OrganizationID, &p.ID, &p.Description, &p.Effect, &p.Subjects, &p.Models,
		&p.Condition, &p.ModerationProfile, &p.MaxOutputTokens, &p.AllowedEndpointRegions,
		&p.AllowedModalities, &retention, &p.LogGroup, &p.MaskPersonalData, &p.RequireBAACoverage,
		&p.Revision, &p.CreateTime, &p.UpdateTime, &p.UpdatedBy}, extra...)
	if err := row.Scan(dest...); err != nil {
		return err
	}
	if retention != nil {
		p.LogRetention = policy.RetainFor(time.Duration(*retention) * time.Microsecond)
	}
	p.AllowedEndpointRegions, p.AllowedModalities = nilIfEmpty(p.AllowedEndpointRegions), nilIfEmpty(p.AllowedModalities)
	p.CreateTime, p.UpdateTime = p.CreateTime.UTC(), p.UpdateTime.UTC()
	p.Etag = policy.Etag(*p, p.Revision)
	return nil
}

func scan(row pgx.CollectableRow) (policy.Policy, error) {
	var p policy.Policy
	err := scanInto(row, &p)
	return p, err
}

func scanRevision(row pgx.CollectableRow) (policy.Revision, error) {
	var r policy.Revision
	err := scanInto(row, &r.Policy, &r.Deleted)
	return r, err
}

// inTx runs fn in a transaction; a unique violation (two writers creating the same id at
// once) is retried, and the retry sees the winner's row.
func (s *Store) inTx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	for attempt := 0; ; attempt++ {
		err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{}, fn)
		if !pg.IsUniqueViolation(err) || attempt == 3 {
			return err
		}
	}
}

// current locks and returns the policy's row, if any.
func (s *Store) current(ctx context.Context, tx pgx.Tx, org, id string) (*policy.Policy, error) {
	rows, _ := tx.Query(ctx, s.q.lock, org, id)
	p, err := pgx.CollectExactlyOneRow(rows, scan)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &p, nil
}

// record appends p's revision to the history and bumps the organization's version.
func (s *Store) record(ctx context.Context, tx pgx.Tx, p policy.Policy, deleted bool) error {
	args := append([]any{p.OrganizationID, p.ID}, contentArgs(p)...)
	args = append(args, p.Revision, p.CreateTime, p.UpdateTime, p.UpdatedBy, deleted)
	if _, err := tx.Exec(ctx, s.q.history, args...); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, s.q.bump, p.OrganizationID)
	return err
}

// write stores p as the next revision of its id; cur is the locked current row, or nil.
func (s *Store) write(ctx context.Context, tx pgx.Tx, p policy.Policy, cur *policy.Policy) (policy.Policy, error) {
	p = p.Clone()
	if err := tx.QueryRow(ctx, s.q.nextRevision, p.OrganizationID, p.ID).Scan(&p.Revision); err != nil {
		return p, err
	}
	args := append([]any{p.OrganizationID, p.ID}, contentArgs(p)...)
	args = append(args, p.Revision, p.UpdatedBy)
	q := s.q.insert
	if cur != nil {
		q = s.q.update
	}
	if err := tx.QueryRow(ctx, q, args...).Scan(&p.CreateTime, &p.UpdateTime); err != nil {
		return p, err
	}
	p.CreateTime, p.UpdateTime = p.CreateTime.UTC(), p.UpdateTime.UTC()
	p.AllowedEndpointRegions, p.AllowedModalities = nilIfEmpty(p.AllowedEndpointRegions), nilIfEmpty(p.AllowedModalities)
	p.Etag = policy.Etag(p, p.Revision)
	return p, s.record(ctx, tx, p, false)
}

// PutPolicy implements policy.Store.
func (s *Store) PutPolicy(ctx context.Context, p policy.Policy) (policy.Change, error) {
	if err := p.Validate(); err != nil {
		return policy.Change{}, err
	}
	var ch policy.Change
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		cur, err := s.current(ctx, tx, p.OrganizationID, p.ID)
		if err != nil {
			return err
		}
		if cur != nil && cur.SameContent(p) {
			ch = policy.Change{Before: cur, After: ptr(cur.Clone())}
			return nil
		}
		after, err := s.write(ctx, tx, p, cur)
		ch = policy.Change{Before: cur, After: &after, Changed: true}
		return err
	})
	if err != nil {
		return policy.Change{}, fmt.Errorf("put policy %s: %w", p.ID, err)
	}
	return ch, nil
}

func ptr(p policy.Policy) *policy.Policy { return &p }

// CreatePolicy implements policy.Store.
func (s *Store) CreatePolicy(ctx context.Context, p policy.Policy) (policy.Policy, error) {
	if err := p.Validate(); err != nil {
		return policy.Policy{}, err
	}
	var created policy.Policy
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{}, func(tx pgx.Tx) error {
		var err error
		created, err = s.write(ctx, tx, p, nil)
		return err
	})
	if pg.IsUniqueViolation(err) {
		return policy.Policy{}, fmt.Errorf("create policy %s: %w", p.ID, policy.ErrAlreadyExists)
	}
	if err != nil {
		return policy.Policy{}, fmt.Errorf("create policy %s: %w", p.ID, err)
	}
	return created, nil
}

// UpdatePolicy implements policy.Store.
func (s *Store) UpdatePolicy(ctx context.Context, p policy.Policy, etag string) (policy.Change, error) {
	if err := p.Validate(); err != nil {
		return policy.Change{}, err
	}
	var ch policy.Change
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{}, func(tx pgx.Tx) error {
		cur, err := s.current(ctx, tx, p.OrganizationID, p.ID)
		switch {
		case err != nil:
			return err
		case cur == nil:
			return policy.ErrNotFound
		case etag != "" && etag != cur.Etag:
			return policy.ErrConflict
		case cur.SameContent(p):
			ch = policy.Change{Before: cur, After: ptr(cur.Clone())}
			return nil
		}
		after, err := s.write(ctx, tx, p, cur)
		ch = policy.Change{Before: cur, After: &after, Changed: true}
		return err
	})
	if err != nil {
		return policy.Change{}, fmt.Errorf("update policy %s: %w", p.ID, err)
	}
	return ch, nil
}

// DeletePolicy implements policy.Store.
func (s *Store) DeletePolicy(ctx context.Context, org, id, etag, updatedBy string) (policy.Policy, error) {
	var before policy.Policy
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{}, func(tx pgx.Tx) error {
		cur, err := s.current(ctx, tx, org, id)
		switch {
		case err != nil:
			return err
		case cur == nil:
			return policy.ErrNotFound
		case etag != "" && etag != cur.Etag:
			return policy.ErrConflict
		}
		before = cur.Clone()
		if _, err := tx.Exec(ctx, s.q.del, org, id); err != nil {
			return err
		}
		tomb := cur.Clone()
		tomb.Revision++
		tomb.UpdatedBy = updatedBy
		if err := tx.QueryRow(ctx, `SELECT now()`).Scan(&tomb.UpdateTime); err != nil {
			return err
		}
		return s.record(ctx, tx, tomb, true)
	})
	if err != nil {
		return policy.Policy{}, fmt.Errorf("delete policy %s: %w", id, err)
	}
	return before, nil
}

// GetPolicy implements policy.Store.
func (s *Store) GetPolicy(ctx context.Context, org, id string) (policy.Policy, error) {
	rows, _ := s.pool.Query(ctx, s.q.get, org, id)
	p, err := pgx.CollectExactlyOneRow(rows, scan)
	if errors.Is(err, pgx.ErrNoRows) {
		return policy.Policy{}, fmt.Errorf("get policy %s: %w", id, policy.ErrNotFound)
	}
	if err != nil {
		return policy.Policy{}, fmt.Errorf("get policy %s: %w", id, err)
	}
	return p, nil
}

// ListPolicies implements policy.Store. The version and the rows are read in one
// repeatable-read transaction, so they belong together.
func (s *Store) ListPolicies(ctx context.Context, org string) ([]policy.Policy, string, error) {
	var (
		policies []policy.Policy
		version  int64
	)
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly},
		func(tx pgx.Tx) error {
			if err := tx.QueryRow(ctx, s.q.version, org).Scan(&version); err != nil {
				return err
			}
			rows, _ := tx.Query(ctx, s.q.list, org)
			var err error
			policies, err = pgx.CollectRows(rows, scan)
			return err
		})
	if err != nil {
		return nil, "", fmt.Errorf("list policies: %w", err)
	}
	return policies, strconv.FormatInt(version, 10), nil
}

// PagePolicies implements policy.Store.
func (s *Store) PagePolicies(ctx context.Context, org, after string, limit int) ([]policy.Policy, error) {
	rows, _ := s.pool.Query(ctx, s.q.page, org, after, limit)
	ps, err := pgx.CollectRows(rows, scan)
	if err != nil {
		return nil, fmt.Errorf("page policies: %w", err)
	}
	return ps, nil
}

// ListRevisions implements policy.Store.
func (s *Store) ListRevisions(ctx context.Context, org, id string, before int64, limit int) ([]policy.Revision, error) {
	rows, _ := s.pool.Query(ctx, s.q.revisions, org, id, before, limit)
	revs, err := pgx.CollectRows(rows, scanRevision)
	if err != nil {
		return nil, fmt.Errorf("list revisions of policy %s: %w", id, err)
	}
	if len(revs) == 0 && before == 0 {
		return nil, fmt.Errorf("list revisions of policy %s: %w", id, policy.ErrNotFound)
	}
	return revs, nil
}

// Version implements policy.Store.
func (s *Store) Version(ctx context.Context, org string) (string, error) {
	var v int64
	if err := s.pool.QueryRow(ctx, s.q.version, org).Scan(&v); err != nil {
		return "", fmt.Errorf("policy version: %w", err)
	}
	return strconv.FormatInt(v, 10), nil
}
