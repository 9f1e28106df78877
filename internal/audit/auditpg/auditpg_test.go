package auditpg_test

import (
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/fmgate/fmgate/internal/audit"
	"github.com/fmgate/fmgate/internal/audit/auditpg"
	"github.com/fmgate/fmgate/internal/audit/audittest"
	"github.com/fmgate/fmgate/internal/pg"
	"github.com/fmgate/fmgate/internal/pg/pgtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// superuser runs fn in a transaction with triggers disabled (session_replication_role =
// replica, which needs a superuser): the bypass the hash chain exists to detect.
func superuser(t *testing.T, pool *pgxpool.Pool, fn func(tx pgx.Tx) error) {
	t.Helper()
	require.NoError(t, pgx.BeginFunc(t.Context(), pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(t.Context(), `SET LOCAL session_replication_role = replica`); err != nil {
			return err
		}
		return fn(tx)
	}))
}

func newStore(t *testing.T) (audit.Store, audittest.Backdoor, *pgxpool.Pool, string) {
	pool, schema := pgtest.Schema(t, "audit")
	require.NoError(t, auditpg.Migrate(t.Context(), pool, schema))
	s := auditpg.New(pool, schema)
	bd := audittest.Backdoor{
		Tamper: func(t *testing.T, org, service string, seq int64, mutate func(*audit.Event)) {
			// Read the record through List's columns, change it in Go, write every column back.
			var found *audit.Event
			token := ""
			for found == nil {
				page, next, err := s.List(t.Context(), audit.Filter{OrganizationID: org, Service: service}, audit.Page{Size: 1000, Token: token})
				require.NoError(t, err)
				for i := range page {
					if page[i].Sequence == seq {
						found = &page[i]
					}
				}
				if next == "" {
					break
				}
				token = next
			}
			require.NotNil(t, found)
			e := *found
			mutate(&e)
			superuser(t, pool, func(tx pgx.Tx) error {
				tag, err := tx.Exec(t.Context(), pg.Qualify(schema, `UPDATE {schema}.events SET
					event_time = $4, actor_subject = $5, action = $6, after = $7, hash = $8
					WHERE organization_id = $1 AND service = $2 AND sequence = $3`),
					org, service, seq, e.Time, e.Actor.Subject, e.Action, string(e.After), []byte(e.Hash))
				if err == nil && tag.RowsAffected() != 1 {
					t.Errorf("tamper updated %d rows", tag.RowsAffected())
				}
				return err
			})
		},
		Delete: func(t *testing.T, org, service string, seq int64) {
			superuser(t, pool, func(tx pgx.Tx) error {
				_, err := tx.Exec(t.Context(), pg.Qualify(schema, `DELETE FROM {schema}.events
					WHERE organization_id = $1 AND service = $2 AND sequence = $3`), org, service, seq)
				return err
			})
		},
	}
	return s, bd, pool, schema
}

func TestStore(t *testing.T) {
	audittest.TestStore(t, func(t *testing.T) (audit.Store, audittest.Backdoor) {
		s, bd, _, _ := newStore(t)
		return s, bd
	})
}

func TestMigrateTwice(t *testing.T) {
	pool, schema := pgtest.Schema(t, "audit")
	require.NoError(t, auditpg.Migrate(t.Context(), pool, schema))
	require.NoError(t, auditpg.Migrate(t.Context(), pool, schema), "migrations are applied once")
}

// Without a superuser's bypass, the tables refuse every change but an append.
func TestAppendOnly(t *testing.T) {
	s, _, pool, schema := newStore(t)
	require.NoError(t, s.Append(t.Context(), audittest.Event("acme", "policy", "e1", 1), audittest.Event("acme", "policy", "e2", 2)))
	tests := []struct{ name, sql string }{
		{"update event", `UPDATE {schema}.events SET action = 'x'`},
		{"delete event", `DELETE FROM {schema}.events WHERE sequence = 2`},
		{"truncate events", `TRUNCATE {schema}.events`},
		{"delete head", `DELETE FROM {schema}.chain_heads`},
		{"move head back", `UPDATE {schema}.chain_heads SET sequence = 1`},
		{"truncate heads", `TRUNCATE {schema}.chain_heads`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := pool.Exec(t.Context(), pg.Qualify(schema, tt.sql))
			require.Error(t, err)
			assert.Contains(t, err.Error(), "audit")
		})
	}
	v, err := s.Verify(t.Context(), "acme", "policy")
	require.NoError(t, err)
	assert.True(t, v.OK(), v.Reason)
	assert.Equal(t, int64(2), v.Records)
}

// An admin change and its audit record commit, or roll back, together.
func TestAppendTx(t *testing.T) {
	s, _, pool, _ := newStore(t)
	ps := s.(*auditpg.Store)
	err := pgx.BeginFunc(t.Context(), pool, func(tx pgx.Tx) error {
		require.NoError(t, ps.AppendTx(t.Context(), tx, audittest.Event("acme", "policy", "rolled-back", 1)))
		return assert.AnError
	})
	require.ErrorIs(t, err, assert.AnError)
	require.NoError(t, pgx.BeginFunc(t.Context(), pool, func(tx pgx.Tx) error {
		return ps.AppendTx(t.Context(), tx, audittest.Event("acme", "policy", "committed", 2))
	}))
	got, _, err := s.List(t.Context(), audit.Filter{OrganizationID: "acme"}, audit.Page{})
	require.NoError(t, err)
	require.Len(t, got, 1)
	assert.Equal(t, "committed", got[0].ID)
	assert.Equal(t, int64(1), got[0].Sequence)
}
