package registrypg

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/fmgate/fmgate/services/registry"
)

func isUniqueViolation(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == uniqueViolation
}

// CreateModel implements registry.Store.
func (s *Store) CreateModel(ctx context.Context, m registry.Model) error {
	if err := m.Validate(); err != nil {
		return err
	}
	args, err := modelArgs(m)
	if err != nil {
		return err
	}
	_, err = s.pool.Exec(ctx, s.q.createModel, args...)
	if isUniqueViolation(err) {
		return &registry.AlreadyExistsError{Resource: registry.ResourceModel, Name: m.Name}
	}
	if err != nil {
		return fmt.Errorf("create model %s: %w", m.Name, err)
	}
	return nil
}

// UpdateModel implements registry.Store: the row is locked (SELECT ... FOR UPDATE) while fn
// runs, so concurrent updates of one model take turns.
func (s *Store) UpdateModel(ctx context.Context, org, name string, fn func(registry.Model) (registry.ModelChange, error)) (before, after registry.Model, err error) {
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		cur, err := lockRow(ctx, tx, s.q.lockModel, scanModel, registry.ResourceModel, org, name)
		if err != nil {
			return err
		}
		change, err := fn(cur.Clone())
		if err != nil {
			return err
		}
		next := change.Model.Clone()
		if err := checkSameKey(next.OrganizationID, next.Name, org, name, "name"); err != nil {
			return err
		}
		if err := next.Validate(); err != nil {
			return err
		}
		args, err := modelArgs(next)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, s.q.updateModel, args...); err != nil {
			return fmt.Errorf("update model %s: %w", name, err)
		}
		if tr := change.Transition; tr != nil {
			if _, err := tx.Exec(ctx, s.q.insertTransition, org, name, string(tr.From), string(tr.To),
				tr.Actor, tr.EvidenceNote, tr.Time); err != nil {
				return fmt.Errorf("record transition of model %s: %w", name, err)
			}
		}
		before, after = cur, next
		return nil
	})
	if err != nil {
		return registry.Model{}, registry.Model{}, err
	}
	return before, after, nil
}

func checkSameKey(gotOrg, gotID, org, id, idField string) error {
	var vs []registry.Violation
	if gotOrg != org {
		vs = append(vs, registry.Violation{Field: "organization_id", Description: "cannot change"})
	}
	if gotID != id {
		vs = append(vs, registry.Violation{Field: idField, Description: "cannot change"})
	}
	if len(vs) > 0 {
		return &registry.ValidationError{Violations: vs}
	}
	return nil
}

// lockRow reads one row of an organisation with a "FOR UPDATE" query, so that the caller's
// change inside tx cannot race another writer; a missing row is the resource's NotFoundError.
func lockRow[T any](ctx context.Context, tx pgx.Tx, query string, scan pgx.RowToFunc[T], res registry.Resource, org, id string) (T, error) {
	rows, _ := tx.Query(ctx, query, org, id)
	v, err := pgx.CollectExactlyOneRow(rows, scan)
	if errors.Is(err, pgx.ErrNoRows) {
		return v, &registry.NotFoundError{Resource: res, Name: id}
	}
	if err != nil {
		return v, fmt.Errorf("lock %s %s: %w", res, id, err)
	}
	return v, nil
}

// DeleteModel implements registry.Store.
func (s *Store) DeleteModel(ctx context.Context, org, name string, check func(registry.Model) error) (registry.Model, error) {
	var deleted registry.Model
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		cur, err := lockRow(ctx, tx, s.q.lockModel, scanModel, registry.ResourceModel, org, name)
		if err != nil {
			return err
		}
		if err := check(cur.Clone()); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, s.q.deleteModel, org, name); err != nil {
			return fmt.Errorf("delete model %s: %w", name, err)
		}
		deleted = cur
		return nil
	})
	return deleted, err
}

// ListTransitions implements registry.Store. The page key is the transition's sequence
// number.
func (s *Store) ListTransitions(ctx context.Context, org, name string, page registry.Page) ([]registry.Transition, string, error) {
	after, err := registry.DecodePageToken(page.Token)
	if err != nil {
		return nil, "", err
	}
	var seq int64
	if page.Token != "" {
		if seq, err = strconv.ParseInt(after, 10, 64); err != nil || seq < 0 {
			return nil, "", registry.ErrInvalidPageToken
		}
	}
	limit := page.Limit()
	rows, _ := s.pool.Query(ctx, s.q.listTransitions, org, name, seq, limit+1)
	type seqTransition struct {
		seq int64
		t   registry.Transition
	}
	found, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (seqTransition, error) {
		var st seqTransition
		err := row.Scan(&st.seq, &st.t.OrganizationID, &st.t.Model, &st.t.From, &st.t.To, &st.t.Actor,
			&st.t.EvidenceNote, &st.t.Time)
		st.t.Time = st.t.Time.UTC()
		return st, err
	})
	if err != nil {
		return nil, "", fmt.Errorf("list transitions of model %s: %w", name, err)
	}
	next := ""
	if len(found) > limit {
		found = found[:limit]
		next = registry.EncodePageToken(strconv.FormatInt(found[limit-1].seq, 10))
	}
	out := make([]registry.Transition, len(found))
	for i, st := range found {
		out[i] = st.t
	}
	return out, next, nil
}

// CreateEndpoint implements registry.Store.
func (s *Store) CreateEndpoint(ctx context.Context, e registry.Endpoint) error {
	if err := e.Validate(); err != nil {
		return err
	}
	_, err := s.pool.Exec(ctx, s.q.createEndpoint, endpointArgs(e)...)
	if isUniqueViolation(err) {
		return &registry.AlreadyExistsError{Resource: registry.ResourceEndpoint, Name: e.ID}
	}
	if err != nil {
		return fmt.Errorf("create endpoint %s: %w", e.ID, err)
	}
	return nil
}

// UpdateEndpoint implements registry.Store, as UpdateModel.
func (s *Store) UpdateEndpoint(ctx context.Context, org, id string, fn func(registry.Endpoint) (registry.Endpoint, error)) (before, after registry.Endpoint, err error) {
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		cur, err := lockRow(ctx, tx, s.q.lockEndpoint, scanEndpoint, registry.ResourceEndpoint, org, id)
		if err != nil {
			return err
		}
		next, err := fn(cur)
		if err != nil {
			return err
		}
		if err := checkSameKey(next.OrganizationID, next.ID, org, id, "id"); err != nil {
			return err
		}
		if err := next.Validate(); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, s.q.updateEndpoint, endpointArgs(next)...); err != nil {
			return fmt.Errorf("update endpoint %s: %w", id, err)
		}
		before, after = cur, next
		return nil
	})
	if err != nil {
		return registry.Endpoint{}, registry.Endpoint{}, err
	}
	return before, after, nil
}

// DeleteEndpoint implements registry.Store.
func (s *Store) DeleteEndpoint(ctx context.Context, org, id string, check func(registry.Endpoint) error) (registry.Endpoint, error) {
	var deleted registry.Endpoint
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		cur, err := lockRow(ctx, tx, s.q.lockEndpoint, scanEndpoint, registry.ResourceEndpoint, org, id)
		if err != nil {
			return err
		}
		if err := check(cur); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, s.q.deleteEndpoint, org, id); err != nil {
			return fmt.Errorf("delete endpoint %s: %w", id, err)
		}
		deleted = cur
		return nil
	})
	return deleted, err
}

func hostingArgs(h registry.HostingRequest) []any {
	var decided *time.Time
	if !h.DecideTime.IsZero() {
		decided = &h.DecideTime
	}
	return []any{h.OrganizationID, h.ID, h.Requester, h.Model, h.RequestsPerMinute, h.TokensPerMinute,
		h.Region, h.Justification, string(h.State), h.DecidedBy, h.DecisionNote, decided, h.UpdatedBy,
		h.StatusNote, h.CreateTime, h.UpdateTime, h.TeamID}
}

func scanHosting(row pgx.CollectableRow) (registry.HostingRequest, error) {
	var (
		h       registry.HostingRequest
		decided *time.Time
	)
	err := row.Scan(&h.OrganizationID, &h.ID, &h.Requester, &h.Model, &h.RequestsPerMinute, &h.TokensPerMinute,
		&h.Region, &h.Justification, &h.State, &h.DecidedBy, &h.DecisionNote, &decided, &h.UpdatedBy,
		&h.StatusNote, &h.CreateTime, &h.UpdateTime, &h.TeamID)
	if decided != nil {
		h.DecideTime = decided.UTC()
	}
	h.CreateTime, h.UpdateTime = h.CreateTime.UTC(), h.UpdateTime.UTC()
	return h, err
}

// CreateHostingRequest implements registry.Store.
func (s *Store) CreateHostingRequest(ctx context.Context, h registry.HostingRequest) error {
	if err := h.ValidateNew(); err != nil {
		return err
	}
	_, err := s.pool.Exec(ctx, s.q.createHosting, hostingArgs(h)...)
	if isUniqueViolation(err) {
		return &registry.AlreadyExistsError{Resource: registry.ResourceHostingRequest, Name: h.ID}
	}
	if err != nil {
		return fmt.Errorf("create hosting request %s: %w", h.ID, err)
	}
	return nil
}

// GetHostingRequest implements registry.Store.
func (s *Store) GetHostingRequest(ctx context.Context, org, id string) (registry.HostingRequest, error) {
	rows, _ := s.pool.Query(ctx, s.q.getHosting, org, id)
	h, err := pgx.CollectExactlyOneRow(rows, scanHosting)
	if errors.Is(err, pgx.ErrNoRows) {
		return registry.HostingRequest{}, &registry.NotFoundError{Resource: registry.ResourceHostingRequest, Name: id}
	}
	if err != nil {
		return registry.HostingRequest{}, fmt.Errorf("get hosting request %s: %w", id, err)
	}
	return h, nil
}

// ListHostingRequests implements registry.Store.
func (s *Store) ListHostingRequests(ctx context.Context, org string, filter registry.HostingFilter, page registry.Page) ([]registry.HostingRequest, string, error) {
	after, err := registry.DecodePageToken(page.Token)
	if err != nil {
		return nil, "", err
	}
	states := make([]string, len(filter.States))
	for i, st := range filter.States {
		states[i] = string(st)
	}
	limit := page.Limit()
	args := []any{org, states, filter.Requester, limit + 1, filter.TeamID}
	query := s.q.listHosting
	if page.Token != "" {
		query, args = s.q.listHostingAfter, append(args, after)
	}
	rows, _ := s.pool.Query(ctx, query, args...)
	hs, err := pgx.CollectRows(rows, scanHosting)
	if err != nil {
		return nil, "", fmt.Errorf("list hosting requests: %w", err)
	}
	hs, next := trim(hs, limit, func(h registry.HostingRequest) string { return h.ID })
	return hs, next, nil
}

// UpdateHostingRequest implements registry.Store, as UpdateModel.
func (s *Store) UpdateHostingRequest(ctx context.Context, org, id string, fn func(registry.HostingRequest) (registry.HostingRequest, error)) (before, after registry.HostingRequest, err error) {
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		cur, err := lockRow(ctx, tx, s.q.lockHosting, scanHosting, registry.ResourceHostingRequest, org, id)
		if err != nil {
			return err
		}
		next, err := fn(cur)
		if err != nil {
			return err
		}
		if err := checkSameKey(next.OrganizationID, next.ID, org, id, "id"); err != nil {
			return err
		}
		if err := next.ValidateUpdate(cur); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, s.q.updateHosting, hostingArgs(next)...); err != nil {
			return fmt.Errorf("update hosting request %s: %w", id, err)
		}
		before, after = cur, next
		return nil
	})
	if err != nil {
		return registry.HostingRequest{}, registry.HostingRequest{}, err
	}
	return before, after, nil
}
