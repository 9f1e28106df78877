// Package identitypg is the Postgres identity.Store, with its embedded migrations.
package identitypg

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
	"github.com/fmgate/fmgate/services/identity"
)

// DefaultSchema is the schema identity keeps its tables in.
const DefaultSchema = "identity"

//go:embed migrations/*.sql
var migrations embed.FS

// Migrate applies the store's migrations to schema.
func Migrate(ctx context.Context, pool *pgxpool.Pool, schema string) error {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return err
	}
	return pg.Migrate(ctx, pool, schema, sub)
}

const columns = `organization_id, id, display_name, subject, kind, team_id, roles, attributes,
	prefix, hash, expire_time, revoke_time, create_time, scope_models, scope_operations`

// Store is an identity.Store on Postgres.
type Store struct {
	pool     *pgxpool.Pool
	schema   string
	q        queries
	listener *listener
}

type queries struct {
	put, create, getByHash, get, list, revoke, revokedSince string
}

var _ identity.Store = (*Store)(nil)

// New returns a Store on the tables of schema, which Migrate must have prepared.
func New(pool *pgxpool.Pool, schema string) *Store {
	q := func(s string) string { return pg.Qualify(schema, s) }
	st := &Store{pool: pool, schema: schema, q: queries{
		// The key with the same (organization_id, id) is replaced, keeping its create_time
		// and its earliest revocation (LEAST ignores NULL); another key with the same hash
		// violates api_keys_hash_key.
		put: q(`INSERT INTO {schema}.api_keys (` + columns + `)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
			ON CONFLICT (organization_id, id) DO UPDATE SET
				display_name = EXCLUDED.display_name,
				subject      = EXCLUDED.subject,
				kind         = EXCLUDED.kind,
				team_id      = EXCLUDED.team_id,
				roles        = EXCLUDED.roles,
				attributes   = EXCLUDED.attributes,
				prefix       = EXCLUDED.prefix,
				hash         = EXCLUDED.hash,
				expire_time  = EXCLUDED.expire_time,
				scope_models = EXCLUDED.scope_models,
				scope_operations = EXCLUDED.scope_operations,
				revoke_time  = LEAST(api_keys.revoke_time, EXCLUDED.revoke_time)`),
		create: q(`INSERT INTO {schema}.api_keys (` + columns + `)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)`),
		getByHash: q(`SELECT ` + columns + ` FROM {schema}.api_keys WHERE hash = $1`),
		get:       q(`SELECT ` + columns + ` FROM {schema}.api_keys WHERE organization_id = $1 AND id = $2`),
		list:      q(`SELECT ` + columns + ` FROM {schema}.api_keys WHERE organization_id = $1 ORDER BY id`),
		revoke: q(`UPDATE {schema}.api_keys SET revoke_time = LEAST(revoke_time, $3)
			WHERE organization_id = $1 AND id = $2`),
		revokedSince: q(`SELECT organization_id, id, revoke_time FROM {schema}.api_keys
			WHERE revoke_record_time >= $1 ORDER BY revoke_record_time`),
	}}
	st.listener = newListener(st)
	return st
}

// PutAPIKey implements identity.Store.
func (s *Store) PutAPIKey(ctx context.Context, k identity.APIKey) error {
	return s.write(ctx, "put", s.q.put, k)
}

// CreateAPIKey implements identity.Store.
func (s *Store) CreateAPIKey(ctx context.Context, k identity.APIKey) error {
	return s.write(ctx, "create", s.q.create, k)
}

func (s *Store) write(ctx context.Context, verb, query string, k identity.APIKey) error {
	if err := k.Validate(); err != nil {
		return fmt.Errorf("%s api key: %w", verb, err)
	}
	ops := make([]string, 0, len(k.Scopes.Operations))
	for _, op := range k.Scopes.Operations {
		ops = append(ops, string(op))
	}
	_, err := s.pool.Exec(ctx, query, k.OrganizationID, k.ID, k.DisplayName, k.Subject,
		string(k.Kind), k.TeamID, orEmpty(k.Roles), orEmptyMap(k.Attributes), k.Prefix, k.Hash[:],
		nullTime(k.ExpireTime), nullTime(k.RevokeTime), k.CreateTime, orEmpty(k.Scopes.Models), ops)
	if pg.IsUniqueViolation(err) {
		return fmt.Errorf("%s api key %s: %w", verb, k.ID, identity.ErrAlreadyExists)
	}
	if err != nil {
		return fmt.Errorf("%s api key %s: %w", verb, k.ID, err)
	}
	return nil
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func orEmptyMap(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

// GetAPIKeyByHash implements identity.Store. It is not scoped by organisation: see
// identity.Store.
func (s *Store) GetAPIKeyByHash(ctx context.Context, hash [32]byte) (identity.APIKey, error) {
	k, err := scanKey(s.pool.QueryRow(ctx, s.q.getByHash, hash[:]))
	if err != nil {
		return identity.APIKey{}, fmt.Errorf("get api key by hash: %w", err)
	}
	return k, nil
}

// GetAPIKey implements identity.Store.
func (s *Store) GetAPIKey(ctx context.Context, org, id string) (identity.APIKey, error) {
	k, err := scanKey(s.pool.QueryRow(ctx, s.q.get, org, id))
	if err != nil {
		return identity.APIKey{}, fmt.Errorf("get api key %s: %w", id, err)
	}
	return k, nil
}

// ListAPIKeys implements identity.Store.
func (s *Store) ListAPIKeys(ctx context.Context, org string) ([]identity.APIKey, error) {
	rows, err := s.pool.Query(ctx, s.q.list, org)
	if err != nil {
		return nil, fmt.Errorf("list api keys: %w", err)
	}
	keys, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (identity.APIKey, error) { return scanKey(r) })
	if err != nil {
		return nil, fmt.Errorf("list api keys: %w", err)
	}
	return keys, nil
}

// RevokeAPIKey implements identity.Store.
func (s *Store) RevokeAPIKey(ctx context.Context, org, id string, at time.Time) error {
	if at.IsZero() {
		return fmt.Errorf("revoke api key %s: %w", id, &identity.ValidationError{Field: "revoke_time", Problem: "is required"})
	}
	tag, err := s.pool.Exec(ctx, s.q.revoke, org, id, at)
	if err != nil {
		return fmt.Errorf("revoke api key %s: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("revoke api key %s: %w", id, identity.ErrNotFound)
	}
	return nil
}

func scanKey(row pgx.Row) (identity.APIKey, error) {
	var (
		k              identity.APIKey
		kind           string
		hash           []byte
		expire, revoke *time.Time
		ops            []string
	)
	err := row.Scan(&k.OrganizationID, &k.ID, &k.DisplayName, &k.Subject, &kind, &k.TeamID,
		&k.Roles, &k.Attributes, &k.Prefix, &hash, &expire, &revoke, &k.CreateTime,
		&k.Scopes.Models, &ops)
	if errors.Is(err, pgx.ErrNoRows) {
		return identity.APIKey{}, identity.ErrNotFound
	}
	if err != nil {
		return identity.APIKey{}, err
	}
	if len(hash) != len(k.Hash) {
		return identity.APIKey{}, fmt.Errorf("api key %s: stored hash has %d bytes", k.ID, len(hash))
	}
	copy(k.Hash[:], hash)
	k.Kind = identity.Kind(kind)
	if expire != nil {
		k.ExpireTime = expire.UTC()
	}
	if revoke != nil {
		k.RevokeTime = revoke.UTC()
	}
	k.CreateTime = k.CreateTime.UTC()
	if len(k.Roles) == 0 {
		k.Roles = nil
	}
	if len(k.Attributes) == 0 {
		k.Attributes = nil
	}
	if len(k.Scopes.Models) == 0 {
		k.Scopes.Models = nil
	}
	for _, op := range ops {
		k.Scopes.Operations = append(k.Scopes.Operations, identity.Operation(op))
	}
	return k, nil
}

func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}
