// Package identitypg is the Postgres identity.Store, with its embedded migrations.
package identitypg

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
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
	prefix, hash, expire_time, revoke_time, create_time, scope_models, scope_operations, owner_id`

// keyColumns are columns, of the api_keys table aliased k.
const keyColumns = `k.organization_id, k.id, k.display_name, k.subject, k.kind, k.team_id, k.roles,
	k.attributes, k.prefix, k.hash, k.expire_time, k.revoke_time, k.create_time, k.scope_models,
	k.scope_operations, k.owner_id`

// grantColumns select, for organisation org, team team and roles roles (SQL expressions),
// the custom roles among roles, and the team's attributes and licence acceptances, as JSON.
func grantColumns(org, team, roles string) string {
	return `(SELECT coalesce(jsonb_agg(jsonb_build_object('id', r.id, 'display_name', r.display_name,
			'permissions', r.permissions, 'scope', r.scope) ORDER BY r.id), '[]')
		FROM {schema}.roles r WHERE r.organization_id = ` + org + ` AND r.id = ANY(` + roles + `)),
	(SELECT t.attributes FROM {schema}.teams t WHERE t.organization_id = ` + org + ` AND t.id = ` + team + `),
	(SELECT coalesce(jsonb_agg(jsonb_build_object('team_id', l.team_id, 'model', l.model,
			'license_name', l.license_name, 'license_version', l.license_version,
			'accepted_by', l.accepted_by, 'accept_time', l.accept_time)
			ORDER BY l.model, l.license_name, l.license_version), '[]')
		FROM {schema}.license_acceptances l WHERE l.organization_id = ` + org + ` AND l.team_id = ` + team + `
			AND ` + team + ` <> '')`
}

// Store is an identity.Store on Postgres.
type Store struct {
	pool     *pgxpool.Pool
	schema   string
	q        queries
	listener *listener
}

type queries struct {
	put, create, getCredential, grants, get, list, revoke, revokedSince string
	lockOwner                                                           string
	admin                                                               adminQueries
}

var _ identity.Store = (*Store)(nil)

// New returns a Store on the tables of schema, which Migrate must have prepared.
func New(pool *pgxpool.Pool, schema string) *Store {
	q := func(s string) string { return pg.Qualify(schema, s) }
	st := &Store{pool: pool, schema: schema, q: queries{
		// The key with the same (organization_id, id) is replaced, keeping its create_time
		// and its earliest revocation (LEAST ignores NULL); another key with the same hash
		// violates api_keys_hash_key.
		// A key whose owner is stored takes the owner's team.
		put: q(`INSERT INTO {schema}.api_keys (` + columns + `)
			VALUES ($1, $2, $3, $4, $5, coalesce((SELECT a.team_id FROM {schema}.accounts a
				WHERE a.organization_id = $1 AND a.kind = $5 AND a.id = $16), $6),
				$7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
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
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)`),
		// One indexed read per authentication: the key by hash, its owner by primary key,
		// and the grants of whoever holds it (the owner when stored, else the key).
		getCredential: q(`SELECT ` + keyColumns + `, o.id, o.email, o.display_name, o.team_id, o.roles,
				o.attributes, o.disabled, o.create_time, o.update_time,
				` + grantColumns("k.organization_id", "coalesce(o.team_id, k.team_id)", "coalesce(o.roles, k.roles)") + `
			FROM {schema}.api_keys k
			LEFT JOIN {schema}.accounts o
				ON o.organization_id = k.organization_id AND o.kind = k.kind AND o.id = k.owner_id
			WHERE k.hash = $1`),
		grants: q(`SELECT ` + grantColumns("$1", "$2", "$3::text[]")),
		get:    q(`SELECT ` + columns + ` FROM {schema}.api_keys WHERE organization_id = $1 AND id = $2`),
		list: q(`SELECT ` + columns + ` FROM {schema}.api_keys
			WHERE organization_id = $1 AND ($2 = '' OR team_id = $2) AND id > $3 ORDER BY id LIMIT $4`),
		lockOwner: q(`SELECT team_id, disabled FROM {schema}.accounts
			WHERE organization_id = $1 AND kind = $2 AND id = $3 FOR SHARE`),
		revoke: q(`UPDATE {schema}.api_keys SET revoke_time = LEAST(revoke_time, $3)
			WHERE organization_id = $1 AND id = $2`),
		revokedSince: q(`SELECT organization_id, id, revoke_time FROM {schema}.api_keys
			WHERE revoke_record_time >= $1 ORDER BY revoke_record_time`),
		admin: newAdminQueries(q),
	}}
	st.listener = newListener(st)
	return st
}

// PutAPIKey implements identity.Store.
func (s *Store) PutAPIKey(ctx context.Context, k identity.APIKey) error {
	if err := k.Validate(); err != nil {
		return fmt.Errorf("put api key: %w", err)
	}
	err := s.write(ctx, s.pool, s.q.put, k)
	if pg.IsUniqueViolation(err) {
		// Two processes seeding the same key at once (replicas starting together on one
		// database): ON CONFLICT arbitrates only (organization_id, id), so the second insert
		// can fail on the hash's unique index while the first is in flight. Once it has
		// committed, the same statement takes the update path; a hash that belongs to
		// another key fails again.
		err = s.write(ctx, s.pool, s.q.put, k)
	}
	if pg.IsUniqueViolation(err) {
		return fmt.Errorf("put api key %s: %w", k.ID, identity.ErrAlreadyExists)
	}
	if err != nil {
		return fmt.Errorf("put api key %s: %w", k.ID, err)
	}
	return nil
}

// CreateAPIKey implements identity.Store. With requireOwner, the owner's row is locked
// (FOR SHARE) until the key is inserted, so that DeleteAccount, which locks it FOR UPDATE,
// either runs first (and the key is refused) or sees the key (and revokes it).
func (s *Store) CreateAPIKey(ctx context.Context, k identity.APIKey, requireOwner bool) error {
	if err := k.Validate(); err != nil {
		return fmt.Errorf("create api key: %w", err)
	}
	if !requireOwner {
		return created(s.write(ctx, s.pool, s.q.create, k), identity.ResourceAPIKey, k.ID)
	}
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var (
			team     string
			disabled bool
		)
		err := tx.QueryRow(ctx, s.q.lockOwner, k.OrganizationID, string(k.Kind), k.OwnerID()).Scan(&team, &disabled)
		switch {
		case errors.Is(err, pgx.ErrNoRows) || (err == nil && k.TeamID != "" && team != k.TeamID):
			return fmt.Errorf("create api key %s: %w", k.ID, &identity.OwnerError{Kind: k.Kind, ID: k.OwnerID(), TeamID: k.TeamID})
		case err != nil:
			return fmt.Errorf("create api key %s: %w", k.ID, err)
		case disabled:
			return fmt.Errorf("create api key %s: %w", k.ID, &identity.OwnerError{Kind: k.Kind, ID: k.OwnerID(), Disabled: true})
		}
		k.TeamID = team
		return created(s.write(ctx, tx, s.q.create, k), identity.ResourceAPIKey, k.ID)
	})
}

// execer is a pool or a transaction.
type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// write runs query, put or create, with k's columns, and returns the database's error as
// is: the callers differ in what a unique violation means. k is valid.
func (s *Store) write(ctx context.Context, db execer, query string, k identity.APIKey) error {
	ops := make([]string, 0, len(k.Scopes.Operations))
	for _, op := range k.Scopes.Operations {
		ops = append(ops, string(op))
	}
	_, err := db.Exec(ctx, query, k.OrganizationID, k.ID, k.DisplayName, k.Subject,
		string(k.Kind), k.TeamID, orEmpty(k.Roles), orEmptyMap(k.Attributes), k.Prefix, k.Hash[:],
		nullTime(k.ExpireTime), nullTime(k.RevokeTime), k.CreateTime, orEmpty(k.Scopes.Models), ops, k.OwnerID())
	return err
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

// GetCredential implements identity.Store, in one query. It is not scoped by organisation:
// see identity.Store.
func (s *Store) GetCredential(ctx context.Context, hash [32]byte) (identity.Credential, error) {
	var (
		c                              identity.Credential
		ownerID, email, name, team     *string
		roles                          []string
		attrs                          map[string]string
		disabled                       *bool
		created, updated               *time.Time
		customRoles, teamAttrs, grants []byte
	)
	k, err := scanKey(scanFunc(func(dest ...any) error {
		return s.pool.QueryRow(ctx, s.q.getCredential, hash[:]).Scan(append(dest, &ownerID, &email, &name, &team,
			&roles, &attrs, &disabled, &created, &updated, &customRoles, &teamAttrs, &grants)...)
	}))
	if errors.Is(err, identity.ErrNotFound) {
		return c, fmt.Errorf("get api key by hash: %w", identity.ErrNotFound)
	}
	if err != nil {
		return c, fmt.Errorf("get api key by hash: %w", err)
	}
	c.Key = k
	if ownerID != nil {
		c.Owner = &identity.Account{
			OrganizationID: k.OrganizationID, Kind: k.Kind, ID: *ownerID, Email: *email, DisplayName: *name,
			TeamID: *team, Roles: nilIfEmpty(roles), Attributes: nilIfEmptyMap(attrs), Disabled: *disabled,
			CreateTime: created.UTC(), UpdateTime: updated.UTC(),
		}
	}
	if c.Grants, err = decodeGrants(k.OrganizationID, customRoles, teamAttrs, grants); err != nil {
		return c, fmt.Errorf("get api key by hash: %w", err)
	}
	return c, nil
}

// Grants implements identity.Store, in one query.
func (s *Store) Grants(ctx context.Context, org, team string, roles []string) (identity.Grants, error) {
	var customRoles, teamAttrs, grants []byte
	if err := s.pool.QueryRow(ctx, s.q.grants, org, team, orEmpty(roles)).Scan(&customRoles, &teamAttrs, &grants); err != nil {
		return identity.Grants{}, fmt.Errorf("grants: %w", err)
	}
	g, err := decodeGrants(org, customRoles, teamAttrs, grants)
	if err != nil {
		return identity.Grants{}, fmt.Errorf("grants: %w", err)
	}
	return g, nil
}

// scanFunc makes a function a pgx.Row.
type scanFunc func(dest ...any) error

func (f scanFunc) Scan(dest ...any) error { return f(dest...) }

// decodeGrants reads what grantColumns selects.
func decodeGrants(org string, customRoles, teamAttrs, licenses []byte) (identity.Grants, error) {
	var (
		g     identity.Grants
		roles []struct {
			ID          string                `json:"id"`
			DisplayName string                `json:"display_name"`
			Permissions []identity.Permission `json:"permissions"`
			Scope       identity.RoleScope    `json:"scope"`
		}
		accepted []struct {
			TeamID         string    `json:"team_id"`
			Model          string    `json:"model"`
			LicenseName    string    `json:"license_name"`
			LicenseVersion string    `json:"license_version"`
			AcceptedBy     string    `json:"accepted_by"`
			AcceptTime     time.Time `json:"accept_time"`
		}
	)
	if err := json.Unmarshal(customRoles, &roles); err != nil {
		return g, fmt.Errorf("decode roles: %w", err)
	}
	for _, r := range roles {
		g.CustomRoles = append(g.CustomRoles, identity.Role{OrganizationID: org, ID: r.ID, DisplayName: r.DisplayName,
			Permissions: r.Permissions, Scope: r.Scope})
	}
	if teamAttrs != nil {
		g.TeamAttributes = map[string]string{}
		if err := json.Unmarshal(teamAttrs, &g.TeamAttributes); err != nil {
			return g, fmt.Errorf("decode team attributes: %w", err)
		}
		g.TeamAttributes = nilIfEmptyMap(g.TeamAttributes)
	}
	if err := json.Unmarshal(licenses, &accepted); err != nil {
		return g, fmt.Errorf("decode licence acceptances: %w", err)
	}
	for _, a := range accepted {
		g.Licenses = append(g.Licenses, identity.LicenseAcceptance{OrganizationID: org, TeamID: a.TeamID, Model: a.Model,
			LicenseName: a.LicenseName, LicenseVersion: a.LicenseVersion, AcceptedBy: a.AcceptedBy, AcceptTime: a.AcceptTime.UTC()})
	}
	return g, nil
}

func nilIfEmpty[T any](s []T) []T {
	if len(s) == 0 {
		return nil
	}
	return s
}

func nilIfEmptyMap(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return m
}

// GetAPIKey implements identity.Store.
func (s *Store) GetAPIKey(ctx context.Context, org, id string) (identity.APIKey, error) {
	k, err := scanKey(s.pool.QueryRow(ctx, s.q.get, org, id))
	if errors.Is(err, identity.ErrNotFound) {
		return identity.APIKey{}, &identity.NotFoundError{Resource: identity.ResourceAPIKey, ID: id}
	}
	if err != nil {
		return identity.APIKey{}, fmt.Errorf("get api key %s: %w", id, err)
	}
	return k, nil
}

// ListAPIKeys implements identity.Store.
func (s *Store) ListAPIKeys(ctx context.Context, org, team string, page identity.Page) ([]identity.APIKey, error) {
	rows, err := s.pool.Query(ctx, s.q.list, org, team, page.After, page.Limit)
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
		return &identity.NotFoundError{Resource: identity.ResourceAPIKey, ID: id}
	}
	return nil
}

func scanKey(row pgx.Row) (identity.APIKey, error) {
	var (
		k              identity.APIKey
		kind, owner    string
		hash           []byte
		expire, revoke *time.Time
		ops            []string
	)
	err := row.Scan(&k.OrganizationID, &k.ID, &k.DisplayName, &k.Subject, &kind, &k.TeamID,
		&k.Roles, &k.Attributes, &k.Prefix, &hash, &expire, &revoke, &k.CreateTime,
		&k.Scopes.Models, &ops, &owner)
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
