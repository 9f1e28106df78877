// Package audittest holds the conformance suite every audit.Store passes, and a store that
// fails on demand for tests of the Recorder.
package audittest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fmgate/fmgate/internal/audit"
)

// Backdoor changes a store's records behind its API, as someone with direct write access to
// the storage would, so the suite can check that Verify notices.
type Backdoor struct {
	// Tamper applies mutate to the stored record seq of chain (org, service).
	Tamper func(t *testing.T, org, service string, seq int64, mutate func(*audit.Event))
	// Delete removes the stored record seq of chain (org, service).
	Delete func(t *testing.T, org, service string, seq int64)
}

// NewStore returns a new, empty store and its backdoor.
type NewStore func(t *testing.T) (audit.Store, Backdoor)

var t0 = time.Date(2026, 3, 1, 9, 0, 0, 123456789, time.UTC)

// Event returns a valid event of org and service with id, at t0 plus i seconds.
func Event(org, service, id string, i int) audit.Event {
	return audit.Event{
		ID: id, OrganizationID: org, Service: service, Time: t0.Add(time.Duration(i) * time.Second),
		Actor:    audit.Actor{Subject: "alice", Kind: "user"},
		Action:   "policy.update",
		Resource: audit.Resource{Type: "policy", ID: "p1"},
		Before:   json.RawMessage(`{"effect":"deny", "models":["a"]}`),
		After:    json.RawMessage(`{"models":["a","b"],"effect":"allow","n":12345678901234567890}`),
		TraceID:  "4bf92f3577b34da6a3ce929d0e0e4736",
	}
}

func listAll(t *testing.T, s audit.Store, f audit.Filter) []audit.Event {
	t.Helper()
	var all []audit.Event
	token := ""
	for {
		page, next, err := s.List(t.Context(), f, audit.Page{Size: 7, Token: token})
		require.NoError(t, err)
		all = append(all, page...)
		if next == "" {
			return all
		}
		token = next
	}
}

// TestStore runs the conformance suite against the stores newStore returns.
func TestStore(t *testing.T, newStore NewStore) {
	t.Run("ChainContinuity", func(t *testing.T) { testChain(t, newStore) })
	t.Run("Idempotent", func(t *testing.T) { testIdempotent(t, newStore) })
	t.Run("Validation", func(t *testing.T) { testValidation(t, newStore) })
	t.Run("ConcurrentAppends", func(t *testing.T) { testConcurrent(t, newStore) })
	t.Run("Tamper", func(t *testing.T) { testTamper(t, newStore) })
	t.Run("Delete", func(t *testing.T) { testDelete(t, newStore) })
	t.Run("ListFilters", func(t *testing.T) { testList(t, newStore) })
	t.Run("TenantIsolation", func(t *testing.T) { testIsolation(t, newStore) })
}

func testChain(t *testing.T, newStore NewStore) {
	s, _ := newStore(t)
	ctx := t.Context()
	require.NoError(t, s.Append(ctx, Event("acme", "policy", "e1", 1), Event("acme", "policy", "e2", 2)))
	require.NoError(t, s.Append(ctx, Event("acme", "policy", "e3", 3)))
	// Another chain in the same call does not disturb this one.
	require.NoError(t, s.Append(ctx, Event("acme", "registry", "r1", 4), Event("acme", "policy", "e4", 5)))

	got := listAll(t, s, audit.Filter{OrganizationID: "acme", Service: "policy"})
	require.Len(t, got, 4)
	var prev audit.Hash
	for i, e := range got {
		assert.Equal(t, fmt.Sprintf("e%d", i+1), e.ID)
		assert.Equal(t, int64(i+1), e.Sequence)
		assert.Equal(t, []byte(prev), []byte(e.PrevHash), "record %d links to the one before", e.Sequence)
		assert.Equal(t, audit.ComputeHash(e), e.Hash, "record %d's hash is recomputable from what List returns", e.Sequence)
		prev = e.Hash
	}
	first := got[0]
	assert.Equal(t, t0.Add(time.Second).Truncate(time.Microsecond), first.Time, "time kept to the microsecond, in UTC")
	assert.JSONEq(t, `{"effect":"deny","models":["a"]}`, string(first.Before))
	assert.Equal(t, `{"effect":"allow","models":["a","b"],"n":12345678901234567890}`, string(first.After),
		"JSON is kept canonical: compact, keys sorted, numbers as written")
	assert.Nil(t, first.Details)
	assert.Equal(t, audit.Actor{Subject: "alice", Kind: "user"}, first.Actor)
	assert.Equal(t, audit.Resource{Type: "policy", ID: "p1"}, first.Resource)
	assert.Equal(t, "4bf92f3577b34da6a3ce929d0e0e4736", first.TraceID)

	for _, svc := range []string{"policy", "registry", "never-written"} {
		v, err := s.Verify(ctx, "acme", svc)
		require.NoError(t, err)
		assert.True(t, v.OK(), "%s: %s", svc, v.Reason)
	}
	v, err := s.Verify(ctx, "acme", "policy")
	require.NoError(t, err)
	assert.Equal(t, int64(4), v.Records)
	assert.Equal(t, int64(4), v.HeadSequence)
	assert.Equal(t, got[3].Hash, v.HeadHash)
	v, err = s.Verify(ctx, "acme", "registry")
	require.NoError(t, err)
	assert.Equal(t, int64(1), v.Records)
}

func testIdempotent(t *testing.T, newStore NewStore) {
	s, _ := newStore(t)
	ctx := t.Context()
	require.NoError(t, s.Append(ctx, Event("acme", "edge", "a", 1), Event("acme", "edge", "a", 1), Event("acme", "edge", "b", 2)))
	require.NoError(t, s.Append(ctx, Event("acme", "edge", "b", 2), Event("acme", "edge", "c", 3)))
	require.NoError(t, s.Append(ctx, Event("acme", "edge", "a", 1)))
	// The same id in another chain is another event.
	require.NoError(t, s.Append(ctx, Event("globex", "edge", "a", 1)))
	got := listAll(t, s, audit.Filter{OrganizationID: "acme"})
	var ids []string
	for _, e := range got {
		ids = append(ids, e.ID)
	}
	assert.Equal(t, []string{"a", "b", "c"}, ids)
	v, err := s.Verify(ctx, "acme", "edge")
	require.NoError(t, err)
	assert.True(t, v.OK())
	assert.Equal(t, int64(3), v.Records)
}

func testValidation(t *testing.T, newStore NewStore) {
	s, _ := newStore(t)
	tests := []struct {
		name   string
		mutate func(*audit.Event)
		field  string
	}{
		{"no id", func(e *audit.Event) { e.ID = "" }, "id"},
		{"no organization", func(e *audit.Event) { e.OrganizationID = "" }, "organization_id"},
		{"no service", func(e *audit.Event) { e.Service = "" }, "service"},
		{"no action", func(e *audit.Event) { e.Action = "" }, "action"},
		{"no time", func(e *audit.Event) { e.Time = time.Time{} }, "time"},
		{"bad JSON", func(e *audit.Event) { e.Details = json.RawMessage(`{"a":`) }, "details"},
		{"two JSON values", func(e *audit.Event) { e.After = json.RawMessage(`{} {}`) }, "after"},
		{"long id", func(e *audit.Event) { e.ID = string(make([]byte, audit.MaxIDLen+1)) }, "id"},
		{"invalid UTF-8", func(e *audit.Event) { e.Actor.Subject = "\xff" }, "actor.subject"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bad := Event("acme", "policy", "bad", 1)
			tt.mutate(&bad)
			err := s.Append(t.Context(), Event("acme", "policy", "good-"+tt.name, 0), bad)
			var ve *audit.ValidationError
			require.ErrorAs(t, err, &ve)
			assert.Equal(t, tt.field, ve.Field)
		})
	}
	got, _, err := s.List(t.Context(), audit.Filter{OrganizationID: "acme"}, audit.Page{})
	require.NoError(t, err)
	assert.Empty(t, got, "a call with an invalid event appends nothing")
}

func testConcurrent(t *testing.T, newStore NewStore) {
	s, _ := newStore(t)
	const writers, each = 50, 4
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				if err := s.Append(context.Background(), Event("acme", "edge", fmt.Sprintf("w%d-%d", w, i), i)); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	v, err := s.Verify(t.Context(), "acme", "edge")
	require.NoError(t, err)
	require.True(t, v.OK(), v.Reason)
	assert.Equal(t, int64(writers*each), v.Records, "one chain holds every event, none lost, none forked")
	got := listAll(t, s, audit.Filter{OrganizationID: "acme", Service: "edge"})
	seqs := map[int64]bool{}
	for _, e := range got {
		assert.False(t, seqs[e.Sequence], "sequence %d assigned twice", e.Sequence)
		seqs[e.Sequence] = true
	}
	assert.Len(t, seqs, writers*each)
}

func testTamper(t *testing.T, newStore NewStore) {
	tests := []struct {
		name   string
		mutate func(*audit.Event)
		broken int64
		reason string
	}{
		{"action changed", func(e *audit.Event) { e.Action = "policy.read" }, 3, "hash does not match"},
		{"details changed", func(e *audit.Event) { e.After = json.RawMessage(`{"effect":"deny"}`) }, 3, "hash does not match"},
		{"time changed", func(e *audit.Event) { e.Time = e.Time.Add(-time.Hour) }, 3, "hash does not match"},
		{"record and its hash rewritten", func(e *audit.Event) {
			e.Actor.Subject = "mallory"
			e.Hash = audit.ComputeHash(*e)
		}, 4, "previous hash"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, bd := newStore(t)
			for i := 1; i <= 5; i++ {
				require.NoError(t, s.Append(t.Context(), Event("acme", "policy", fmt.Sprintf("e%d", i), i)))
			}
			require.NoError(t, s.Append(t.Context(), Event("globex", "policy", "g1", 1)))
			bd.Tamper(t, "acme", "policy", 3, tt.mutate)
			v, err := s.Verify(t.Context(), "acme", "policy")
			require.NoError(t, err)
			assert.False(t, v.OK())
			assert.Equal(t, tt.broken, v.Broken)
			assert.Contains(t, v.Reason, tt.reason)
			assert.Equal(t, tt.broken-1, v.Records)
			v, err = s.Verify(t.Context(), "globex", "policy")
			require.NoError(t, err)
			assert.True(t, v.OK(), "another tenant's chain is unaffected")
		})
	}
}

func testDelete(t *testing.T, newStore NewStore) {
	tests := []struct {
		name    string
		deleted []int64
		broken  int64
	}{
		{"first", []int64{1}, 1},
		{"middle", []int64{3}, 3},
		{"last", []int64{5}, 5},
		{"tail", []int64{4, 5}, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, bd := newStore(t)
			for i := 1; i <= 5; i++ {
				require.NoError(t, s.Append(t.Context(), Event("acme", "policy", fmt.Sprintf("e%d", i), i)))
			}
			for _, seq := range tt.deleted {
				bd.Delete(t, "acme", "policy", seq)
			}
			v, err := s.Verify(t.Context(), "acme", "policy")
			require.NoError(t, err)
			assert.False(t, v.OK())
			assert.Equal(t, tt.broken, v.Broken)
			assert.Contains(t, v.Reason, "missing")
		})
	}
}

func testList(t *testing.T, newStore NewStore) {
	s, _ := newStore(t)
	ctx := t.Context()
	var events []audit.Event
	for i := range 20 {
		svc := []string{"policy", "registry"}[i%2]
		e := Event("acme", svc, fmt.Sprintf("e%02d", i), i/2) // two services share each second
		if i%3 == 0 {
			e.Action, e.Actor.Subject = "generation", "svc-bot"
		}
		events = append(events, e)
	}
	require.NoError(t, s.Append(ctx, events...))

	ids := func(es []audit.Event) []string {
		var out []string
		for _, e := range es {
			out = append(out, e.ID)
		}
		return out
	}
	tests := []struct {
		name string
		f    audit.Filter
		want []string
	}{
		{"all, in time then service order", audit.Filter{OrganizationID: "acme"},
			[]string{"e00", "e01", "e02", "e03", "e04", "e05", "e06", "e07", "e08", "e09",
				"e10", "e11", "e12", "e13", "e14", "e15", "e16", "e17", "e18", "e19"}},
		{"service", audit.Filter{OrganizationID: "acme", Service: "registry"},
			[]string{"e01", "e03", "e05", "e07", "e09", "e11", "e13", "e15", "e17", "e19"}},
		{"action", audit.Filter{OrganizationID: "acme", Action: "generation"},
			[]string{"e00", "e03", "e06", "e09", "e12", "e15", "e18"}},
		{"actor", audit.Filter{OrganizationID: "acme", ActorSubject: "alice", Service: "policy"},
			[]string{"e02", "e04", "e08", "e10", "e14", "e16"}},
		{"time range", audit.Filter{OrganizationID: "acme", From: t0.Add(3 * time.Second), To: t0.Add(5 * time.Second)},
			[]string{"e06", "e07", "e08", "e09"}},
		{"nothing", audit.Filter{OrganizationID: "acme", Action: "model.delete"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, ids(listAll(t, s, tt.f)))
		})
	}

	t.Run("page sizes", func(t *testing.T) {
		page, next, err := s.List(ctx, audit.Filter{OrganizationID: "acme"}, audit.Page{Size: 20})
		require.NoError(t, err)
		assert.Len(t, page, 20)
		assert.Empty(t, next, "no token after the last page")
		page, next, err = s.List(ctx, audit.Filter{OrganizationID: "acme"}, audit.Page{Size: 19})
		require.NoError(t, err)
		assert.Len(t, page, 19)
		assert.NotEmpty(t, next)
	})
	t.Run("invalid tokens", func(t *testing.T) {
		valid := audit.EncodePageToken(audit.Cursor{Time: t0, Service: "policy", Sequence: 1})
		for _, tok := range []string{"garbage!", "YTE6", valid[:len(valid)-3]} {
			_, _, err := s.List(ctx, audit.Filter{OrganizationID: "acme"}, audit.Page{Token: tok})
			assert.ErrorIs(t, err, audit.ErrInvalidPageToken, tok)
		}
	})
}

func testIsolation(t *testing.T, newStore NewStore) {
	s, _ := newStore(t)
	ctx := t.Context()
	require.NoError(t, s.Append(ctx, Event("acme", "policy", "a1", 1), Event("acme", "policy", "a2", 2)))
	require.NoError(t, s.Append(ctx, Event("globex", "policy", "g1", 1)))

	got := listAll(t, s, audit.Filter{OrganizationID: "globex"})
	require.Len(t, got, 1)
	assert.Equal(t, "g1", got[0].ID)
	assert.Equal(t, int64(1), got[0].Sequence, "each organization has its own chain")
	assert.Nil(t, got[0].PrevHash)

	// A token from acme's listing does not reveal acme's records to globex.
	_, next, err := s.List(ctx, audit.Filter{OrganizationID: "acme"}, audit.Page{Size: 1})
	require.NoError(t, err)
	require.NotEmpty(t, next)
	got, _, err = s.List(ctx, audit.Filter{OrganizationID: "globex"}, audit.Page{Token: next})
	require.NoError(t, err)
	for _, e := range got {
		assert.Equal(t, "globex", e.OrganizationID)
	}
	got = listAll(t, s, audit.Filter{OrganizationID: "initech"})
	assert.Empty(t, got)
	v, err := s.Verify(ctx, "globex", "policy")
	require.NoError(t, err)
	assert.Equal(t, int64(1), v.Records)
}

// ErrDown is what a FlakyStore returns while it is down.
var ErrDown = errors.New("audit store down (test)")

// FlakyStore wraps a store and fails on demand.
type FlakyStore struct {
	audit.Store
	down        atomic.Bool
	lostAcks    atomic.Int32
	appendCalls atomic.Int64
	block       chan struct{}
	mu          sync.Mutex
}

// NewFlaky wraps s.
func NewFlaky(s audit.Store) *FlakyStore { return &FlakyStore{Store: s} }

// SetDown makes Append fail with ErrDown (true) or pass through (false).
func (f *FlakyStore) SetDown(down bool) { f.down.Store(down) }

// LoseAcks makes the next n successful Appends report ErrDown anyway, as when a commit
// succeeds but its acknowledgement is lost.
func (f *FlakyStore) LoseAcks(n int) { f.lostAcks.Store(int32(n)) }

// Block makes Append wait until the returned function is called or its context ends.
func (f *FlakyStore) Block() (release func()) {
	ch := make(chan struct{})
	f.mu.Lock()
	f.block = ch
	f.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			f.mu.Lock()
			f.block = nil
			f.mu.Unlock()
			close(ch)
		})
	}
}

// AppendCalls counts calls to Append.
func (f *FlakyStore) AppendCalls() int64 { return f.appendCalls.Load() }

// Append implements audit.Store.
func (f *FlakyStore) Append(ctx context.Context, events ...audit.Event) error {
	f.appendCalls.Add(1)
	f.mu.Lock()
	block := f.block
	f.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if f.down.Load() {
		return ErrDown
	}
	if err := f.Store.Append(ctx, events...); err != nil {
		return err
	}
	if f.lostAcks.Load() > 0 && f.lostAcks.Add(-1) >= 0 {
		return ErrDown
	}
	return nil
}
