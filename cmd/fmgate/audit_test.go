package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fmgate/fmgate/internal/audit"
	"github.com/fmgate/fmgate/internal/audit/auditpg"
	"github.com/fmgate/fmgate/internal/audit/audittest"
	"github.com/fmgate/fmgate/internal/pg"
	"github.com/fmgate/fmgate/internal/pg/pgtest"
)

func TestAuditCommand(t *testing.T) {
	pool, schema := pgtest.Schema(t, "audit")
	require.NoError(t, auditpg.Migrate(t.Context(), pool, schema))
	store := auditpg.New(pool, schema)
	var events []audit.Event
	for i := 1; i <= 5; i++ {
		e := audittest.Event("acme", "policy", fmt.Sprintf("e%d", i), i)
		if i == 4 {
			e.Action, e.Actor = "generation", audit.Actor{Subject: "key_1", Kind: "api_key"}
		}
		events = append(events, e)
	}
	require.NoError(t, store.Append(t.Context(), events...))
	require.NoError(t, store.Append(t.Context(), audittest.Event("globex", "policy", "g1", 1)))

	auditRun := func(args ...string) (string, error) {
		var stdout, stderr bytes.Buffer
		args = append([]string{"audit", args[0], "--postgres.url", pgtest.URL(t), "--audit.schema", schema}, args[1:]...)
		err := run(t.Context(), args, &stdout, &stderr)
		return stdout.String(), err
	}

	t.Run("list", func(t *testing.T) {
		out, err := auditRun("list", "--organization", "acme")
		require.NoError(t, err)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		require.Len(t, lines, 5)
		assert.Equal(t, "2026-03-01T09:00:01.123456Z  policy #1  policy.update  user:alice  policy/p1  trace=4bf92f3577b34da6a3ce929d0e0e4736", lines[0])
		assert.NotContains(t, out, "globex")
	})
	t.Run("list filtered", func(t *testing.T) {
		out, err := auditRun("list", "--organization", "acme", "--action", "generation")
		require.NoError(t, err)
		assert.Equal(t, 1, strings.Count(out, "\n"))
		assert.Contains(t, out, "policy #4  generation  api_key:key_1")
		out, err = auditRun("list", "--organization", "acme", "--since", "2026-03-01T09:00:03Z", "--limit", "2")
		require.NoError(t, err)
		assert.Equal(t, 2, strings.Count(out, "\n"))
		assert.Contains(t, out, "#3 ")
	})
	t.Run("export", func(t *testing.T) {
		out, err := auditRun("export", "--organization", "acme", "--service", "policy")
		require.NoError(t, err)
		var got []audit.Event
		dec := json.NewDecoder(strings.NewReader(out))
		for dec.More() {
			var e audit.Event
			require.NoError(t, dec.Decode(&e))
			got = append(got, e)
		}
		require.Len(t, got, 5)
		for _, e := range got {
			assert.Equal(t, audit.ComputeHash(e), e.Hash, "an export can be verified offline")
		}
		assert.Equal(t, got[0].Hash, got[1].PrevHash)
	})
	t.Run("verify ok", func(t *testing.T) {
		out, err := auditRun("verify", "--organization", "acme", "--service", "policy")
		require.NoError(t, err)
		assert.Regexp(t, `^chain ok \(5 records, head 5 sha256:[0-9a-f]{64}\)\n$`, out)
	})
	t.Run("usage errors", func(t *testing.T) {
		_, err := auditRun("verify", "--organization", "acme")
		assert.ErrorContains(t, err, "--service is required")
		_, err = auditRun("list", "--since", "yesterday")
		assert.ErrorContains(t, err, "--organization is required")
		assert.ErrorContains(t, err, "--since")
		err = run(t.Context(), []string{"audit", "erase"}, &bytes.Buffer{}, &bytes.Buffer{})
		assert.ErrorContains(t, err, `unknown command "erase"`)
	})
	t.Run("verify broken", func(t *testing.T) {
		// A superuser bypasses the append-only trigger; the chain still tells.
		require.NoError(t, pgx.BeginFunc(t.Context(), pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(t.Context(), `SET LOCAL session_replication_role = replica`); err != nil {
				return err
			}
			_, err := tx.Exec(t.Context(), pg.Qualify(schema, `UPDATE {schema}.events SET actor_subject = 'mallory'
				WHERE organization_id = 'acme' AND service = 'policy' AND sequence = 3`))
			return err
		}))
		out, err := auditRun("verify", "--organization", "acme", "--service", "policy")
		require.ErrorIs(t, err, errChainBroken)
		assert.Equal(t, "chain acme/policy broken at record 3: hash does not match the record's content (2 records before it verify)\n", out)
		out, err = auditRun("verify", "--organization", "globex", "--service", "policy")
		require.NoError(t, err)
		assert.Contains(t, out, "chain ok (1 records")
	})
}
