// Package registrypg is the Postgres registry store.
package registrypg

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fmgate/fmgate/internal/pg"
	"github.com/fmgate/fmgate/services/registry"
)

// DefaultSchema is the schema the registry's tables live in unless configured otherwise.
const DefaultSchema = "registry"

//go:embed migrations/*.sql
var migrations embed.FS

// Migrate applies the registry's migrations to schema.
func Migrate(ctx context.Context, pool *pgxpool.Pool, schema string) error {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return fmt.Errorf("migrate %s: %w", schema, err)
	}
	return pg.Migrate(ctx, pool, schema, sub)
}

// Store is a registry.Store on Postgres. Its schema must have been migrated (Migrate).
type Store struct {
	pool *pgxpool.Pool
	q    queries
}

var _ registry.Store = (*Store)(nil)

type queries struct {
	putModel, getModel, listModels, listModelsAfter                           string
	putEndpoint, getEndpoint, getEndpoints, listEndpoints, listEndpointsAfter string

	createModel, lockModel, updateModel, deleteModel, insertTransition, listTransitions  string
	createEndpoint, lockEndpoint, updateEndpoint, deleteEndpoint                         string
	createHosting, getHosting, lockHosting, updateHosting, listHosting, listHostingAfter string
}

const modelColumns = `organization_id, name, display_name, vendor, lifecycle_state, context_window,
	input_price_per_million, output_price_per_million, endpoint_ids, fallback_models, card`

const hostingColumns = `organization_id, id, requester, model, requests_per_minute, tokens_per_minute,
	region, justification, state, decided_by, decision_note, decide_time, updated_by, status_note,
	create_time, update_time, team_id`

// modelFilter is the WHERE clause of model lists: $2 the states (empty keeps all), $5 the
// vendor and $6 the use-case tag ("" keeps all).
const modelFilter = `organization_id = $1 AND (cardinality($2::text[]) = 0 OR lifecycle_state = ANY($2))
	AND ($5::text = '' OR vendor = $5) AND ($6::text = '' OR card->'use_case_tags' @> jsonb_build_array($6::text))`

// uniqueViolation is Postgres's SQLSTATE for a duplicate key.
const uniqueViolation = "23505"

const endpointColumns = `organization_id, id, provider, base_url, upstream_model, credential_ref, region,
	weight, priority, api_version, covered_by_baa`

// New returns a store on the tables of schema.
func New(pool *pgxpool.Pool, schema string) *Store {
	q := func(s string) string { return pg.Qualify(schema, s) }
	// Upserts skip the write when nothing changed, so seeding at every start costs no
	// row versions.
	return &Store{pool: pool, q: queries{
		putModel: q(`INSERT INTO {schema}.models (` + modelColumns + `)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
			ON CONFLICT (organization_id, name) DO UPDATE SET
				display_name = EXCLUDED.display_name, vendor = EXCLUDED.vendor,
				lifecycle_state = EXCLUDED.lifecycle_state, context_window = EXCLUDED.context_window,
				input_price_per_million = EXCLUDED.input_price_per_million,
				output_price_per_million = EXCLUDED.output_price_per_million,
				endpoint_ids = EXCLUDED.endpoint_ids, fallback_models = EXCLUDED.fallback_models,
				card = EXCLUDED.card
			WHERE (models.display_name, models.vendor, models.lifecycle_state, models.context_window,
				models.input_price_per_million, models.output_price_per_million, models.endpoint_ids,
				models.fallback_models, models.card)
				IS DISTINCT FROM (EXCLUDED.display_name, EXCLUDED.vendor, EXCLUDED.lifecycle_state,
				EXCLUDED.context_window, EXCLUDED.input_price_per_million,
				EXCLUDED.output_price_per_million, EXCLUDED.endpoint_ids, EXCLUDED.fallback_models,
				EXCLUDED.card)`),
		createModel: q(`INSERT INTO {schema}.models (` + modelColumns + `)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`),
		lockModel: q(`SELECT ` + modelColumns + ` FROM {schema}.models
			WHERE organization_id = $1 AND name = $2 FOR UPDATE`),
		updateModel: q(`UPDATE {schema}.models SET display_name = $3, vendor = $4, lifecycle_state = $5,
				context_window = $6, input_price_per_million = $7, output_price_per_million = $8,
				endpoint_ids = $9, fallback_models = $10, card = $11
			WHERE organization_id = $1 AND name = $2`),
		deleteModel: q(`DELETE FROM {schema}.models WHERE organization_id = $1 AND name = $2`),
		insertTransition: q(`INSERT INTO {schema}.model_transitions
				(organization_id, model, from_state, to_state, actor, evidence_note, create_time)
			VALUES ($1, $2, $3, $4, $5, $6, $7)`),
		listTransitions: q(`SELECT seq, organization_id, model, from_state, to_state, actor, evidence_note, create_time
			FROM {schema}.model_transitions
			WHERE organization_id = $1 AND model = $2 AND seq > $3 ORDER BY seq LIMIT $4`),
		createEndpoint: q(`INSERT INTO {schema}.endpoints (` + endpointColumns + `)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`),
		lockEndpoint: q(`SELECT ` + endpointColumns + ` FROM {schema}.endpoints
			WHERE organization_id = $1 AND id = $2 FOR UPDATE`),
		updateEndpoint: q(`UPDATE {schema}.endpoints SET provider = $3, base_url = $4, upstream_model = $5,
				credential_ref = $6, region = $7, weight = $8, priority = $9, api_version = $10,
				covered_by_baa = $11
			WHERE organization_id = $1 AND id = $2`),
		deleteEndpoint: q(`DELETE FROM {schema}.endpoints WHERE organization_id = $1 AND id = $2`),
		createHosting: q(`INSERT INTO {schema}.hosting_requests (` + hostingColumns + `)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)`),
		getHosting: q(`SELECT ` + hostingColumns + ` FROM {schema}.hosting_requests
			WHERE organization_id = $1 AND id = $2`),
		lockHosting: q(`SELECT ` + hostingColumns + ` FROM {schema}.hosting_requests
			WHERE organization_id = $1 AND id = $2 FOR UPDATE`),
		updateHosting: q(`UPDATE {schema}.hosting_requests SET requester = $3, model = $4,
				requests_per_minute = $5, tokens_per_minute = $6, region = $7, justification = $8,
				state = $9, decided_by = $10, decision_note = $11, decide_time = $12, updated_by = $13,
				status_note = $14, create_time = $15, update_time = $16, team_id = $17
			WHERE organization_id = $1 AND id = $2`),
		// $2 the states (empty keeps all), $3 the requester and $5 the team ("" keeps all).
		listHosting: q(`SELECT ` + hostingColumns + ` FROM {schema}.hosting_requests
			WHERE organization_id = $1 AND (cardinality($2::text[]) = 0 OR state = ANY($2))
				AND ($3::text = '' OR requester = $3) AND ($5::text = '' OR team_id = $5)
			ORDER BY id LIMIT $4`),
		listHostingAfter: q(`SELECT ` + hostingColumns + ` FROM {schema}.hosting_requests
			WHERE organization_id = $1 AND (cardinality($2::text[]) = 0 OR state = ANY($2))
				AND ($3::text = '' OR requester = $3) AND ($5::text = '' OR team_id = $5) AND id > $6
			ORDER BY id LIMIT $4`),
		getModel: q(`SELECT ` + modelColumns + ` FROM {schema}.models
			WHERE organization_id = $1 AND name = $2`),
		listModels: q(`SELECT ` + modelColumns + ` FROM {schema}.models
			WHERE ` + modelFilter + ` AND $4::text IS NULL ORDER BY name LIMIT $3`),
		listModelsAfter: q(`SELECT ` + modelColumns + ` FROM {schema}.models
			WHERE ` + modelFilter + ` AND name > $4 ORDER BY name LIMIT $3`),
		putEndpoint: q(`INSERT INTO {schema}.endpoints (` + endpointColumns + `)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
			ON CONFLICT (organization_id, id) DO UPDATE SET
				provider = EXCLUDED.provider, base_url = EXCLUDED.base_url,
				upstream_model = EXCLUDED.upstream_model, credential_ref = EXCLUDED.credential_ref,
				region = EXCLUDED.region, weight = EXCLUDED.weight, priority = EXCLUDED.priority,
				api_version = EXCLUDED.api_version, covered_by_baa = EXCLUDED.covered_by_baa
			WHERE (endpoints.provider, endpoints.base_url, endpoints.upstream_model,
				endpoints.credential_ref, endpoints.region, endpoints.weight, endpoints.priority,
				endpoints.api_version, endpoints.covered_by_baa)
				IS DISTINCT FROM (EXCLUDED.provider, EXCLUDED.base_url, EXCLUDED.upstream_model,
				EXCLUDED.credential_ref, EXCLUDED.region, EXCLUDED.weight, EXCLUDED.priority,
				EXCLUDED.api_version, EXCLUDED.covered_by_baa)`),
		getEndpoint: q(`SELECT ` + endpointColumns + ` FROM {schema}.endpoints
			WHERE organization_id = $1 AND id = $2`),
		getEndpoints: q(`SELECT ` + endpointColumns + ` FROM {schema}.endpoints
			WHERE organization_id = $1 AND id = ANY($2)`),
		listEndpoints: q(`SELECT ` + endpointColumns + ` FROM {schema}.endpoints
			WHERE organization_id = $1 ORDER BY id LIMIT $2`),
		listEndpointsAfter: q(`SELECT ` + endpointColumns + ` FROM {schema}.endpoints
			WHERE organization_id = $1 AND id > $3 ORDER BY id LIMIT $2`),
	}}
}

func scanModel(row pgx.CollectableRow) (registry.Model, error) {
	var (
		m    registry.Model
		card []byte
	)
	err := row.Scan(&m.OrganizationID, &m.Name, &m.DisplayName, &m.Vendor, &m.LifecycleState,
		&m.ContextWindow, &m.InputPricePerMillion, &m.OutputPricePerMillion, &m.EndpointIDs, &m.FallbackModels, &card)
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(card, &m.Card); err != nil {
		return m, fmt.Errorf("model %s: card: %w", m.Name, err)
	}
	return m.Clone(), nil
}

// modelArgs are the values of modelColumns, in order.
func modelArgs(m registry.Model) ([]any, error) {
	// NOT NULL arrays: nil is stored as empty and read back as nil.
	ids, fallbacks := m.EndpointIDs, m.FallbackModels
	if ids == nil {
		ids = []string{}
	}
	if fallbacks == nil {
		fallbacks = []string{}
	}
	card, err := json.Marshal(m.Card)
	if err != nil {
		return nil, fmt.Errorf("model %s: card: %w", m.Name, err)
	}
	return []any{m.OrganizationID, m.Name, m.DisplayName, m.Vendor, string(m.LifecycleState), m.ContextWindow,
		m.InputPricePerMillion, m.OutputPricePerMillion, ids, fallbacks, string(card)}, nil
}

func endpointArgs(e registry.Endpoint) []any {
	return []any{e.OrganizationID, e.ID, string(e.Provider), e.BaseURL, e.UpstreamModel, e.CredentialRef,
		e.Region, e.Weight, e.Priority, e.APIVersion, e.CoveredByBAA}
}

func scanEndpoint(row pgx.CollectableRow) (registry.Endpoint, error) {
	var e registry.Endpoint
	err := row.Scan(&e.OrganizationID, &e.ID, &e.Provider, &e.BaseURL, &e.UpstreamModel, &e.CredentialRef, &e.Region,
		&e.Weight, &e.Priority, &e.APIVersion, &e.CoveredByBAA)
	return e, err
}

// PutModel implements registry.Store.
func (s *Store) PutModel(ctx context.Context, m registry.Model) error {
	if err := m.Validate(); err != nil {
		return err
	}
	args, err := modelArgs(m)
	if err != nil {
		return err
	}
	if _, err := s.pool.Exec(ctx, s.q.putModel, args...); err != nil {
		return fmt.Errorf("put model %s: %w", m.Name, err)
	}
	return nil
}

// GetModel implements registry.Store.
func (s *Store) GetModel(ctx context.Context, org, name string) (registry.Model, error) {
	rows, _ := s.pool.Query(ctx, s.q.getModel, org, name)
	m, err := pgx.CollectExactlyOneRow(rows, scanModel)
	if errors.Is(err, pgx.ErrNoRows) {
		return registry.Model{}, &registry.NotFoundError{Resource: registry.ResourceModel, Name: name}
	}
	if err != nil {
		return registry.Model{}, fmt.Errorf("get model %s: %w", name, err)
	}
	return m, nil
}

// ListModels implements registry.Store.
func (s *Store) ListModels(ctx context.Context, org string, filter registry.ModelFilter, page registry.Page) ([]registry.Model, string, error) {
	after, err := registry.DecodePageToken(page.Token)
	if err != nil {
		return nil, "", err
	}
	states := make([]string, len(filter.States))
	for i, st := range filter.States {
		states[i] = string(st)
	}
	limit := page.Limit()
	// One row more than the page tells whether another page follows.
	var afterArg *string // NULL for the first page
	query := s.q.listModels
	if page.Token != "" {
		query, afterArg = s.q.listModelsAfter, &after
	}
	args := []any{org, states, limit + 1, afterArg, filter.Vendor, filter.UseCaseTag}
	rows, _ := s.pool.Query(ctx, query, args...)
	models, err := pgx.CollectRows(rows, scanModel)
	if err != nil {
		return nil, "", fmt.Errorf("list models: %w", err)
	}
	models, next := trim(models, limit, func(m registry.Model) string { return m.Name })
	return models, next, nil
}

// PutEndpoint implements registry.Store.
func (s *Store) PutEndpoint(ctx context.Context, e registry.Endpoint) error {
	if err := e.Validate(); err != nil {
		return err
	}
	if _, err := s.pool.Exec(ctx, s.q.putEndpoint, endpointArgs(e)...); err != nil {
		return fmt.Errorf("put endpoint %s: %w", e.ID, err)
	}
	return nil
}

// GetEndpoint implements registry.Store.
func (s *Store) GetEndpoint(ctx context.Context, org, id string) (registry.Endpoint, error) {
	rows, _ := s.pool.Query(ctx, s.q.getEndpoint, org, id)
	e, err := pgx.CollectExactlyOneRow(rows, scanEndpoint)
	if errors.Is(err, pgx.ErrNoRows) {
		return registry.Endpoint{}, &registry.NotFoundError{Resource: registry.ResourceEndpoint, Name: id}
	}
	if err != nil {
		return registry.Endpoint{}, fmt.Errorf("get endpoint %s: %w", id, err)
	}
	return e, nil
}

// GetEndpoints implements registry.Store.
func (s *Store) GetEndpoints(ctx context.Context, org string, ids []string) ([]registry.Endpoint, error) {
	if len(ids) == 0 {
		return []registry.Endpoint{}, nil
	}
	rows, _ := s.pool.Query(ctx, s.q.getEndpoints, org, ids)
	found, err := pgx.CollectRows(rows, scanEndpoint)
	if err != nil {
		return nil, fmt.Errorf("get endpoints: %w", err)
	}
	byID := make(map[string]registry.Endpoint, len(found))
	for _, e := range found {
		byID[e.ID] = e
	}
	out := make([]registry.Endpoint, 0, len(found))
	for _, id := range ids {
		if e, ok := byID[id]; ok {
			out = append(out, e)
		}
	}
	return out, nil
}

// ListEndpoints implements registry.Store.
func (s *Store) ListEndpoints(ctx context.Context, org string, page registry.Page) ([]registry.Endpoint, string, error) {
	after, err := registry.DecodePageToken(page.Token)
	if err != nil {
		return nil, "", err
	}
	limit := page.Limit()
	args := []any{org, limit + 1}
	query := s.q.listEndpoints
	if page.Token != "" {
		query, args = s.q.listEndpointsAfter, append(args, after)
	}
	rows, _ := s.pool.Query(ctx, query, args...)
	eps, err := pgx.CollectRows(rows, scanEndpoint)
	if err != nil {
		return nil, "", fmt.Errorf("list endpoints: %w", err)
	}
	eps, next := trim(eps, limit, func(e registry.Endpoint) string { return e.ID })
	return eps, next, nil
}

// trim cuts a result fetched with limit+1 rows to limit and returns the next page's token.
func trim[T any](items []T, limit int, keyOf func(T) string) ([]T, string) {
	if len(items) <= limit {
		return items, ""
	}
	items = items[:limit]
	return items, registry.EncodePageToken(keyOf(items[limit-1]))
}
