package audit_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"

	"github.com/fmgate/fmgate/internal/audit"
	"github.com/fmgate/fmgate/internal/audit/auditmem"
	"github.com/fmgate/fmgate/internal/audit/audittest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type harness struct {
	store *auditmem.Store
	flaky *audittest.FlakyStore
	rec   *audit.Recorder
	stop  context.CancelFunc
	done  chan error
}

func fastConfig(spool string) audit.RecorderConfig {
	return audit.RecorderConfig{
		MaxRetries: 2, MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond,
		SpoolDir: spool, BatchSize: 4, Log: slog.New(slog.DiscardHandler),
	}
}

func newRecorder(t *testing.T, store *auditmem.Store, cfg audit.RecorderConfig) *harness {
	t.Helper()
	h := &harness{store: store, flaky: audittest.NewFlaky(store)}
	var err error
	h.rec, err = audit.NewRecorder(h.flaky, "edge", cfg)
	require.NoError(t, err)
	return h
}

func (h *harness) start(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	h.stop, h.done = cancel, make(chan error, 1)
	go func() { h.done <- h.rec.Run(ctx) }()
	t.Cleanup(func() { _ = h.shutdown() })
}

func (h *harness) shutdown() error {
	if h.stop == nil {
		return nil
	}
	h.stop()
	h.stop = nil
	return <-h.done
}

func record(t *testing.T, r *audit.Recorder, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		require.NoError(t, r.Record(t.Context(), audit.Event{
			ID: fmt.Sprintf("ev%03d", i), OrganizationID: "acme", Action: "generation",
			Actor: audit.Actor{Subject: "alice", Kind: "user"},
		}))
	}
}

// stored returns the ids of the chain (acme, edge) in sequence order, after verifying it.
func stored(t *testing.T, s audit.Store) []string {
	t.Helper()
	v, err := s.Verify(t.Context(), "acme", "edge")
	require.NoError(t, err)
	require.True(t, v.OK(), v.Reason)
	all := listAll(t, s)
	bySeq := make([]string, len(all))
	for _, e := range all {
		bySeq[e.Sequence-1] = e.ID
	}
	return bySeq
}

func listAll(t *testing.T, s audit.Store) []audit.Event {
	page, _, err := s.List(t.Context(), audit.Filter{OrganizationID: "acme", Service: "edge"}, audit.Page{Size: audit.MaxPageSize})
	require.NoError(t, err)
	return page
}

func ids(from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprintf("ev%03d", i))
	}
	return out
}

func TestRecorderWritesInOrder(t *testing.T) {
	h := newRecorder(t, auditmem.New(), fastConfig(""))
	h.start(t)
	traceID := trace.TraceID{0x4b, 0xf9, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14}
	ctx := trace.ContextWithSpanContext(t.Context(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: traceID, SpanID: trace.SpanID{1}, TraceFlags: trace.FlagsSampled,
	}))
	require.NoError(t, h.rec.Record(ctx, audit.Event{OrganizationID: "acme", Action: "policy.update"}))
	record(t, h.rec, 0, 20)
	require.Eventually(t, func() bool { return h.rec.Stats().Written == 21 }, 5*time.Second, time.Millisecond)
	require.NoError(t, h.shutdown())

	all := listAll(t, h.store)
	require.Len(t, all, 21)
	first := all[0]
	for _, e := range all {
		if e.Sequence == 1 {
			first = e
		}
	}
	assert.Equal(t, "edge", first.Service, "the recorder's service")
	assert.Equal(t, traceID.String(), first.TraceID, "the trace id comes from the context")
	assert.Len(t, first.ID, 26, "a random id")
	assert.False(t, first.Time.IsZero())
	got := stored(t, h.store)
	assert.Equal(t, ids(0, 20), got[1:])
	assert.Equal(t, audit.Stats{Recorded: 21, Written: 21}, h.rec.Stats())
}

func TestRecorderRejectsInvalidEvents(t *testing.T) {
	h := newRecorder(t, auditmem.New(), fastConfig(""))
	tests := []struct {
		name  string
		e     audit.Event
		field string
	}{
		{"no organization", audit.Event{Action: "x"}, "organization_id"},
		{"no action", audit.Event{OrganizationID: "acme"}, "action"},
		{"other service", audit.Event{OrganizationID: "acme", Action: "x", Service: "policy"}, "service"},
		{"details not JSON", audit.Event{OrganizationID: "acme", Action: "x", Details: json.RawMessage(`{"a":`)}, "details"},
		{"two values in before", audit.Event{OrganizationID: "acme", Action: "x", Before: json.RawMessage(`{} {}`)}, "before"},
		{"after too large", audit.Event{OrganizationID: "acme", Action: "x", After: json.RawMessage(`"` + strings.Repeat("a", audit.MaxJSONLen) + `"`)}, "after"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ve *audit.ValidationError
			require.ErrorAs(t, h.rec.Record(t.Context(), tt.e), &ve)
			assert.Equal(t, tt.field, ve.Field)
		})
	}
	assert.Zero(t, h.rec.Stats().Recorded)
	_, err := audit.NewRecorder(h.store, "../etc", audit.RecorderConfig{})
	assert.Error(t, err, "the service names the spool file: no paths")
}

// Record checks JSON fields without canonicalising them; what the store keeps is canonical.
func TestRecorderStoresCanonicalJSON(t *testing.T) {
	h := newRecorder(t, auditmem.New(), fastConfig(""))
	h.start(t)
	require.NoError(t, h.rec.Record(t.Context(), audit.Event{
		OrganizationID: "acme", Action: "generation", Details: json.RawMessage(`{ "z": 1, "a": [true, null] }`),
	}))
	require.Eventually(t, func() bool { return h.rec.Stats().Written == 1 }, 5*time.Second, time.Millisecond)
	require.NoError(t, h.shutdown())
	all := listAll(t, h.store)
	require.Len(t, all, 1)
	assert.JSONEq(t, `{"a":[true,null],"z":1}`, string(all[0].Details))
	assert.Equal(t, `{"a":[true,null],"z":1}`, string(all[0].Details))
}

func TestRecorderSpoolsWhileStoreIsDownThenReplays(t *testing.T) {
	spool := t.TempDir()
	h := newRecorder(t, auditmem.New(), fastConfig(spool))
	h.flaky.SetDown(true)
	h.start(t)
	record(t, h.rec, 0, 10)
	require.Eventually(t, func() bool { return h.rec.Stats().Spooled == 10 }, 5*time.Second, time.Millisecond)
	assert.FileExists(t, filepath.Join(spool, "audit-edge.jsonl"))
	// While the spool holds events, newer events join it behind them.
	record(t, h.rec, 10, 15)
	require.Eventually(t, func() bool { return h.rec.Stats().Spooled == 15 }, 5*time.Second, time.Millisecond)
	assert.Empty(t, listAll(t, h.store))

	h.flaky.SetDown(false)
	require.Eventually(t, func() bool { return h.rec.Stats().Replayed == 15 }, 5*time.Second, time.Millisecond)
	assert.NoFileExists(t, filepath.Join(spool, "audit-edge.jsonl"))
	record(t, h.rec, 15, 20)
	require.Eventually(t, func() bool { return h.rec.Stats().Written == 5 }, 5*time.Second, time.Millisecond)
	require.NoError(t, h.shutdown())

	assert.Equal(t, ids(0, 20), stored(t, h.store), "every event once, in the order recorded")
	st := h.rec.Stats()
	assert.Zero(t, st.Lost)
	assert.Positive(t, st.Failures)
}

func TestRecorderSpoolSurvivesRestart(t *testing.T) {
	spool := t.TempDir()
	store := auditmem.New()
	first := newRecorder(t, store, fastConfig(spool))
	first.flaky.SetDown(true)
	first.start(t)
	record(t, first.rec, 0, 6)
	require.Eventually(t, func() bool { return first.flaky.AppendCalls() > 0 }, 5*time.Second, time.Millisecond)
	// Shut down while the store is down: what is queued or retried goes to the spool.
	require.NoError(t, first.shutdown())
	assert.Equal(t, int64(6), first.rec.Stats().Spooled)
	assert.ErrorIs(t, first.rec.Record(t.Context(), audit.Event{OrganizationID: "acme", Action: "x"}), audit.ErrClosed)
	assert.Empty(t, listAll(t, store))

	// The next process replays the spool before anything it records itself.
	second := newRecorder(t, store, fastConfig(spool))
	record(t, second.rec, 6, 9)
	second.start(t)
	require.Eventually(t, func() bool { st := second.rec.Stats(); return st.Replayed == 6 && st.Written == 3 }, 5*time.Second, time.Millisecond)
	require.NoError(t, second.shutdown())
	assert.Equal(t, ids(0, 9), stored(t, store))
	assert.NoFileExists(t, filepath.Join(spool, "audit-edge.jsonl"))
}

// A write that succeeded but reported failure is retried, and replays of a spool that was
// partly written already, without duplicating anything: the store skips known ids.
func TestRecorderNoDuplicates(t *testing.T) {
	t.Run("lost acknowledgement", func(t *testing.T) {
		h := newRecorder(t, auditmem.New(), fastConfig(""))
		h.flaky.LoseAcks(2)
		h.start(t)
		record(t, h.rec, 0, 8)
		require.Eventually(t, func() bool { return h.rec.Stats().Written == 8 }, 5*time.Second, time.Millisecond)
		require.NoError(t, h.shutdown())
		assert.Equal(t, ids(0, 8), stored(t, h.store))
		assert.Equal(t, int64(2), h.rec.Stats().Failures)
	})
	t.Run("spool replayed twice", func(t *testing.T) {
		spool := t.TempDir()
		store := auditmem.New()
		first := newRecorder(t, store, fastConfig(spool))
		first.flaky.SetDown(true)
		first.start(t)
		record(t, first.rec, 0, 10)
		require.Eventually(t, func() bool { return first.rec.Stats().Spooled == 10 }, 5*time.Second, time.Millisecond)
		require.NoError(t, first.shutdown())

		second := newRecorder(t, store, fastConfig(spool))
		// Every replay's writes land but report failure, as a crash between the store's
		// commit and the spool's removal would: the spool stays and is replayed again.
		second.flaky.LoseAcks(5)
		second.start(t)
		require.Eventually(t, func() bool { return second.rec.Stats().Replayed == 10 }, 5*time.Second, time.Millisecond)
		require.NoError(t, second.shutdown())
		assert.Equal(t, ids(0, 10), stored(t, store))
	})
}

func TestRecorderQueueFull(t *testing.T) {
	cfg := fastConfig("")
	cfg.QueueSize, cfg.BatchSize, cfg.EnqueueTimeout = 2, 1, 20*time.Millisecond
	h := newRecorder(t, auditmem.New(), cfg)
	release := h.flaky.Block()
	h.start(t)
	record(t, h.rec, 0, 1)
	require.Eventually(t, func() bool { return h.flaky.AppendCalls() == 1 }, 5*time.Second, time.Millisecond, "one event is being written")
	record(t, h.rec, 1, 3) // fills the queue
	err := h.rec.Record(t.Context(), audit.Event{ID: "ev003", OrganizationID: "acme", Action: "generation"})
	require.ErrorIs(t, err, audit.ErrQueueFull)
	assert.Equal(t, int64(1), h.rec.Stats().Rejected, "a refused event is counted")

	release()
	require.Eventually(t, func() bool { return h.rec.Stats().Written == 3 }, 5*time.Second, time.Millisecond)
	require.NoError(t, h.shutdown())
	assert.Equal(t, ids(0, 3), stored(t, h.store))
}

func TestRecorderShutdown(t *testing.T) {
	t.Run("flushes the queue", func(t *testing.T) {
		h := newRecorder(t, auditmem.New(), fastConfig(""))
		record(t, h.rec, 0, 10)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		require.NoError(t, h.rec.Run(ctx))
		assert.Equal(t, ids(0, 10), stored(t, h.store))
		assert.ErrorIs(t, h.rec.Record(t.Context(), audit.Event{OrganizationID: "acme", Action: "x"}), audit.ErrClosed)
	})
	t.Run("reports what it loses without a spool", func(t *testing.T) {
		h := newRecorder(t, auditmem.New(), fastConfig(""))
		h.flaky.SetDown(true)
		record(t, h.rec, 0, 3)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		err := h.rec.Run(ctx)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "3 events lost")
		assert.Equal(t, int64(3), h.rec.Stats().Lost)
	})
	t.Run("flush deadline", func(t *testing.T) {
		cfg := fastConfig(t.TempDir())
		cfg.FlushTimeout = 20 * time.Millisecond
		h := newRecorder(t, auditmem.New(), cfg)
		release := h.flaky.Block() // the store hangs
		defer release()
		record(t, h.rec, 0, 3)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		require.NoError(t, h.rec.Run(ctx), "a hung store at shutdown sends the queue to the spool")
		assert.Equal(t, int64(3), h.rec.Stats().Spooled)
	})
}

func TestRecorderSkipsTornSpoolLine(t *testing.T) {
	spool := t.TempDir()
	store := auditmem.New()
	first := newRecorder(t, store, fastConfig(spool))
	first.flaky.SetDown(true)
	record(t, first.rec, 0, 2)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	require.NoError(t, first.rec.Run(ctx))
	path := filepath.Join(spool, "audit-edge.jsonl")
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteString(`{"id":"ev002","organization_id":"ac`) // a crash mid-write
	require.NoError(t, err)
	require.NoError(t, f.Close())

	second := newRecorder(t, store, fastConfig(spool))
	second.start(t)
	require.Eventually(t, func() bool { return second.rec.Stats().Replayed == 2 }, 5*time.Second, time.Millisecond)
	require.NoError(t, second.shutdown())
	assert.Equal(t, ids(0, 2), stored(t, store))
	assert.Equal(t, int64(1), second.rec.Stats().Lost)
}
