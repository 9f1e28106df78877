// Package dispatchpg is the Postgres dispatch credential store.
package dispatchpg

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fmgate/fmgate/internal/pg"
	"github.com/fmgate/fmgate/services/dispatch"
)

// DefaultSchema is the schema the dispatch tables live in unless configured otherwise.
const DefaultSchema = "dispatch"

//go:embed migrations/*.sql
var migrations embed.FS

// Migrate applies the dispatch store's migrations to schema.
func Migrate(ctx context.Context, pool *pgxpool.Pool, schema string) error {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return fmt.Errorf("migrate %s: %w", schema, err)
	}
	return pg.Migrate(ctx, pool, schema, sub)
}

// Store is a dispatch.CredentialStore on Postgres. Its schema must have been migrated
// (Migrate).
type Store struct {
	pool                *pgxpool.Pool
	put, get, list, del string
}

var _ dispatch.CredentialStore = (*Store)(nil)

// New returns a store on the tables of schema.
func New(pool *pgxpool.Pool, schema string) *Store {
	q := func(s string) string { return pg.Qualify(schema, s) }
	return &Store{
		pool: pool,
		// Putting the bytes already stored updates no row, so it reports no change and keeps
		// the update time.
		put: q(`INSERT INTO {schema}.credentials (organization_id, name, sealed, update_time)
			VALUES ($1, $2, $3, $4)
			ON CONFLICT (organization_id, name) DO UPDATE SET
				sealed = EXCLUDED.sealed, update_time = EXCLUDED.update_time
			WHERE credentials.sealed IS DISTINCT FROM EXCLUDED.sealed`),
		get:  q(`SELECT sealed FROM {schema}.credentials WHERE organization_id = $1 AND name = $2`),
		list: q(`SELECT name, update_time FROM {schema}.credentials WHERE organization_id = $1 ORDER BY name`),
		del:  q(`DELETE FROM {schema}.credentials WHERE organization_id = $1 AND name = $2`),
	}
}

// PutSealed implements dispatch.CredentialStore.
func (s *Store) PutSealed(ctx context.Context, org, name string, sealed []byte, now time.Time) (bool, error) {
	if err := dispatch.ValidateStoredCredential(org, name, sealed); err != nil {
		return false, fmt.Errorf("put credential %s: %w", name, err)
	}
	tag, err := s.pool.Exec(ctx, s.put, org, name, sealed, now.UTC())
	if err != nil {
		return false, fmt.Errorf("put credential %s: %w", name, err)
	}
	return tag.RowsAffected() > 0, nil
}

// GetSealed implements dispatch.CredentialStore.
func (s *Store) GetSealed(ctx context.Context, org, name string) ([]byte, error) {
	var sealed []byte
	err := s.pool.QueryRow(ctx, s.get, org, name).Scan(&sealed)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("get credential %s: %w", name, dispatch.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get credential %s: %w", name, err)
	}
	return sealed, nil
}

// ListCredentials implements dispatch.CredentialStore.
func (s *Store) ListCredentials(ctx context.Context, org string) ([]dispatch.CredentialInfo, error) {
	rows, _ := s.pool.Query(ctx, s.list, org)
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (dispatch.CredentialInfo, error) {
		var c dispatch.CredentialInfo
		err := row.Scan(&c.Name, &c.UpdateTime)
		c.UpdateTime = c.UpdateTime.UTC()
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("list credentials: %w", err)
	}
	if out == nil {
		out = []dispatch.CredentialInfo{}
	}
	return out, nil
}

// DeleteCredential implements dispatch.CredentialStore.
func (s *Store) DeleteCredential(ctx context.Context, org, name string) error {
	tag, err := s.pool.Exec(ctx, s.del, org, name)
	if err != nil {
		return fmt.Errorf("delete credential %s: %w", name, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("delete credential %s: %w", name, dispatch.ErrNotFound)
	}
	return nil
}
