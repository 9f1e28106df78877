// Package policypg is the Postgres policy store.
package policypg

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"strconv"

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
type Store struct {
	pool                         *pgxpool.Pool
	put, get, list, del, version string
}

var _ policy.Store = (*Store)(nil)

const columns = `organization_id, id, description, effect, subjects, models, moderation_profile,
	max_output_tokens, update_time`

// bumpVersion increments the organization's version once if the CTE "changed" has a row.
const bumpVersion = `INSERT INTO {schema}.policy_versions (organization_id, version)
	SELECT $1, 1 FROM changed
	ON CONFLICT (organization_id) DO UPDATE SET version = policy_versions.version + 1`

// New returns a store on the tables of schema.
func New(pool *pgxpool.Pool, schema string) *Store {
	q := func(s string) string { return pg.Qualify(schema, s) }
	return &Store{
		pool: pool,
		// The write and the version bump are one statement, hence atomic; an upsert with
		// unchanged content updates no row, so it bumps nothing.
		put: q(`WITH changed AS (
			INSERT INTO {schema}.policies (` + columns + `)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now())
			ON CONFLICT (organization_id, id) DO UPDATE SET
				description = EXCLUDED.description, effect = EXCLUDED.effect,
				subjects = EXCLUDED.subjects, models = EXCLUDED.models,
				moderation_profile = EXCLUDED.moderation_profile,
				max_output_tokens = EXCLUDED.max_output_tokens, update_time = EXCLUDED.update_time
			WHERE (policies.description, policies.effect, policies.subjects, policies.models,
				policies.moderation_profile, policies.max_output_tokens)
				IS DISTINCT FROM (EXCLUDED.description, EXCLUDED.effect, EXCLUDED.subjects,
				EXCLUDED.models, EXCLUDED.moderation_profile, EXCLUDED.max_output_tokens)
			RETURNING 1)
			` + bumpVersion),
		get:  q(`SELECT ` + columns + ` FROM {schema}.policies WHERE organization_id = $1 AND id = $2`),
		list: q(`SELECT ` + columns + ` FROM {schema}.policies WHERE organization_id = $1 ORDER BY id`),
		del: q(`WITH changed AS (
			DELETE FROM {schema}.policies WHERE organization_id = $1 AND id = $2 RETURNING 1)
			` + bumpVersion),
		version: q(`SELECT coalesce(
			(SELECT version FROM {schema}.policy_versions WHERE organization_id = $1), 0)`),
	}
}

func scan(row pgx.CollectableRow) (policy.Policy, error) {
	var p policy.Policy
	err := row.Scan(&p.OrganizationID, &p.ID, &p.Description, &p.Effect, &p.Subjects, &p.Models,
		&p.ModerationProfile, &p.MaxOutputTokens, &p.UpdateTime)
	p.UpdateTime = p.UpdateTime.UTC()
	return p, err
}

// PutPolicy implements policy.Store.
func (s *Store) PutPolicy(ctx context.Context, p policy.Policy) (bool, error) {
	if err := p.Validate(); err != nil {
		return false, err
	}
	tag, err := s.pool.Exec(ctx, s.put, p.OrganizationID, p.ID, p.Description, string(p.Effect),
		p.Subjects, p.Models, p.ModerationProfile, p.MaxOutputTokens)
	if err != nil {
		return false, fmt.Errorf("put policy %s: %w", p.ID, err)
	}
	return tag.RowsAffected() > 0, nil
}

// GetPolicy implements policy.Store.
func (s *Store) GetPolicy(ctx context.Context, org, id string) (policy.Policy, error) {
	rows, _ := s.pool.Query(ctx, s.get, org, id)
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
			if err := tx.QueryRow(ctx, s.version, org).Scan(&version); err != nil {
				return err
			}
			rows, _ := tx.Query(ctx, s.list, org)
			var err error
			policies, err = pgx.CollectRows(rows, scan)
			return err
		})
	if err != nil {
		return nil, "", fmt.Errorf("list policies: %w", err)
	}
	return policies, strconv.FormatInt(version, 10), nil
}

// DeletePolicy implements policy.Store.
func (s *Store) DeletePolicy(ctx context.Context, org, id string) error {
	tag, err := s.pool.Exec(ctx, s.del, org, id)
	if err != nil {
		return fmt.Errorf("delete policy %s: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("delete policy %s: %w", id, policy.ErrNotFound)
	}
	return nil
}

// Version implements policy.Store.
func (s *Store) Version(ctx context.Context, org string) (string, error) {
	var v int64
	if err := s.pool.QueryRow(ctx, s.version, org).Scan(&v); err != nil {
		return "", fmt.Errorf("policy version: %w", err)
	}
	return strconv.FormatInt(v, 10), nil
}
