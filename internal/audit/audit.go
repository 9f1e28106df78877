// Package audit is the tamper-evident audit trail every fmgate service writes to: admin
// changes with their before and after, and the decision behind every generation.
//
// # Chains
//
// Records form hash chains, one per (service, organization). Each record carries a sequence
// number (1, 2, ... within its chain), the hash of the record before it, and its own hash,
// which covers every field and that previous hash. Changing, removing or reordering a record
// therefore breaks the chain at that record, and Store.Verify finds the first break.
//
// One chain per (service, organization), not one global chain, because the writers are
// independent: each service appends what it observes to its own table, in the mesh from its
// own process and possibly its own database, and a global chain would need a lock across all
// of them on every generation. Within a service, one chain per organization means tenants
// never wait on each other's appends, and a tenant's chain can be listed, exported and
// verified without reading any other tenant's records.
//
// # Canonical encoding
//
// Hash computes a record's hash as SHA-256 over
//
//	"fmgate.audit.v1\n"
//	field(prev_hash)                   32 bytes, or empty for sequence 1
//	field(u64be(sequence))
//	field(id) field(organization_id) field(service)
//	field(i64be(time in Unix microseconds, UTC))
//	field(actor.subject) field(actor.kind) field(action)
//	field(resource.type) field(resource.id)
//	field(before) field(after) field(details)   canonical JSON, or empty when absent
//	field(trace_id)
//
// where field(b) = u64be(len(b)) || b. Length prefixes make the encoding injective: no two
// different records encode alike, whatever bytes their fields hold. Canonical JSON is compact,
// with object keys sorted and numbers kept as written (Normalize produces it); stores keep the
// JSON exactly as normalised, so the hash can be recomputed from what they return. Times are
// truncated to microseconds, the precision Postgres keeps.
//
// # What the chain does not protect against
//
// Whoever can write the table directly (a Postgres superuser bypasses the append-only
// trigger) and knows this algorithm can rewrite a whole suffix of a chain consistently, or
// drop its last records along with the chain head. Keeping the head (sequence and hash, which
// `fmgate audit verify` prints) somewhere else and comparing later detects that too.
package audit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

// Sentinel errors of stores and the Recorder.
var (
	// ErrInvalidPageToken is returned by List for a token it did not issue.
	ErrInvalidPageToken = errors.New("invalid page token")
	// ErrQueueFull is returned by Recorder.Record when the queue stayed full for the
	// configured timeout; the event was not recorded.
	ErrQueueFull = errors.New("audit queue full")
	// ErrClosed is returned by Recorder.Record once the Recorder has shut down.
	ErrClosed = errors.New("audit recorder closed")
)

// ValidationError reports an event that cannot be recorded, naming the field.
type ValidationError struct {
	Field, Reason string
}

func (e *ValidationError) Error() string {
	return fmt.Sprintf("invalid audit event: %s %s", e.Field, e.Reason)
}

// Limits on an event's fields. They bound what one record costs to store and to hash.
const (
	MaxIDLen   = 128     // id, organization_id, service, action, actor and resource fields
	MaxJSONLen = 1 << 20 // before, after, details, each
)

// Actor is who did what a record records.
type Actor struct {
	// Subject names the principal: a user id, a service account, an API key id.
	Subject string `json:"subject"`
	// Kind says what Subject is ("user", "service_account", "api_key", "system").
	Kind string `json:"kind"`
}

// Resource is what an action was done to.
type Resource struct {
	Type string `json:"type"` // "policy", "model", "endpoint", "api_key", ...
	ID   string `json:"id"`
}

// Hash is a SHA-256 hash, written as lower-case hex in JSON and text.
type Hash []byte

func (h Hash) String() string { return hex.EncodeToString(h) }

// MarshalText implements encoding.TextMarshaler.
func (h Hash) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (h *Hash) UnmarshalText(b []byte) error {
	v, err := hex.DecodeString(string(b))
	if err != nil {
		return fmt.Errorf("audit hash: %w", err)
	}
	*h = v
	return nil
}

// Event is one audit record. The caller fills the first group of fields (the Recorder
// fills ID, Service, Time and TraceID when empty); the store assigns Sequence, PrevHash and
// Hash when it appends the event to its chain.
type Event struct {
	// ID identifies the event; appending an ID its chain already holds is a no-op, which
	// makes retries and spool replays idempotent.
	ID             string    `json:"id"`
	OrganizationID string    `json:"organization_id"`
	Service        string    `json:"service"`
	Time           time.Time `json:"time"`
	Actor          Actor     `json:"actor"`
	// Action is what happened, "<resource>.<verb>" for admin changes ("policy.update") and
	// "generation" for a generation's decision.
	Action   string   `json:"action"`
	Resource Resource `json:"resource"`
	// Before and After hold an admin change's resource as JSON (absent on create/delete).
	Before json.RawMessage `json:"before,omitempty"`
	After  json.RawMessage `json:"after,omitempty"`
	// Details holds anything else as JSON; for generations, a Generation.
	Details json.RawMessage `json:"details,omitempty"`
	TraceID string          `json:"trace_id,omitempty"`

	Sequence int64 `json:"sequence,omitempty"`
	PrevHash Hash  `json:"prev_hash,omitempty"`
	Hash     Hash  `json:"hash,omitempty"`
}

// Generation is the decision behind one generation, the Details of a "generation" event.
type Generation struct {
	Model          string    `json:"model"`
	Endpoint       string    `json:"endpoint,omitempty"`
	PolicyVerdict  string    `json:"policy_verdict"` // "allow" or "deny"
	PolicyVersion  string    `json:"policy_version,omitempty"`
	Obligations    []string  `json:"obligations,omitempty"`
	Findings       []Finding `json:"moderation_findings,omitempty"`
	InputTokens    int64     `json:"input_tokens"`
	OutputTokens   int64     `json:"output_tokens"`
	CostMicros     int64     `json:"cost_micros"` // in millionths of Currency
	Currency       string    `json:"currency,omitempty"`
	Outcome        string    `json:"outcome,omitempty"` // "ok", "blocked", an error code
	FinishedReason string    `json:"finish_reason,omitempty"`
}

// Finding is one moderation finding: never the matched text, only what and where.
type Finding struct {
	Detector string `json:"detector"`
	Stage    string `json:"stage"`  // "input" or "output"
	Action   string `json:"action"` // "block", "mask", "flag", ...
	Count    int    `json:"count,omitempty"`
}

// JSON marshals v for Before, After or Details. It panics only for values encoding/json
// cannot encode (channels, functions), a programming error.
func JSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("audit.JSON: %v", err))
	}
	return b
}

// Normalize checks e and returns it in the form stores keep and hash: time in UTC truncated
// to microseconds, JSON fields canonical (compact, sorted keys, "null" as absent). It
// clears Sequence, PrevHash and Hash, which the store assigns.
func Normalize(e Event) (Event, error) {
	for _, f := range []struct {
		name, v  string
		required bool
	}{
		{"id", e.ID, true}, {"organization_id", e.OrganizationID, true},
		{"service", e.Service, true}, {"action", e.Action, true},
		{"actor.subject", e.Actor.Subject, false}, {"actor.kind", e.Actor.Kind, false},
		{"resource.type", e.Resource.Type, false}, {"resource.id", e.Resource.ID, false},
		{"trace_id", e.TraceID, false},
	} {
		switch {
		case f.required && f.v == "":
			return Event{}, &ValidationError{f.name, "is required"}
		case len(f.v) > MaxIDLen:
			return Event{}, &ValidationError{f.name, fmt.Sprintf("is longer than %d bytes", MaxIDLen)}
		case !utf8.ValidString(f.v):
			return Event{}, &ValidationError{f.name, "is not valid UTF-8"}
		}
	}
	if e.Time.IsZero() {
		return Event{}, &ValidationError{"time", "is required"}
	}
	e.Time = e.Time.UTC().Truncate(time.Microsecond)
	var err error
	if e.Before, err = canonicalJSON("before", e.Before); err != nil {
		return Event{}, err
	}
	if e.After, err = canonicalJSON("after", e.After); err != nil {
		return Event{}, err
	}
	if e.Details, err = canonicalJSON("details", e.Details); err != nil {
		return Event{}, err
	}
	e.Sequence, e.PrevHash, e.Hash = 0, nil, nil
	return e, nil
}

func canonicalJSON(field string, raw json.RawMessage) (json.RawMessage, error) {
	if len(raw) > MaxJSONLen {
		return nil, &ValidationError{field, fmt.Sprintf("is larger than %d bytes", MaxJSONLen)}
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber() // numbers stay as written: no float rounding of large integers
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, &ValidationError{field, "is not valid JSON"}
	}
	if dec.More() {
		return nil, &ValidationError{field, "holds more than one JSON value"}
	}
	if v == nil {
		return nil, nil
	}
	// encoding/json writes map keys sorted and compact; json.Number verbatim.
	out, err := json.Marshal(v)
	if err != nil {
		return nil, &ValidationError{field, "is not valid JSON"}
	}
	return out, nil
}

const domain = "fmgate.audit.v1\n"

// ComputeHash returns the hash of e as the package documentation defines it, from e's
// fields, Sequence and PrevHash. e must be normalised.
func ComputeHash(e Event) Hash {
	h := sha256.New()
	h.Write([]byte(domain))
	var n [8]byte
	field := func(b []byte) {
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	u64 := func(v uint64) []byte {
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], v)
		return b[:]
	}
	field(e.PrevHash)
	field(u64(uint64(e.Sequence)))
	field([]byte(e.ID))
	field([]byte(e.OrganizationID))
	field([]byte(e.Service))
	field(u64(uint64(e.Time.UnixMicro())))
	field([]byte(e.Actor.Subject))
	field([]byte(e.Actor.Kind))
	field([]byte(e.Action))
	field([]byte(e.Resource.Type))
	field([]byte(e.Resource.ID))
	field(e.Before)
	field(e.After)
	field(e.Details)
	field([]byte(e.TraceID))
	return h.Sum(nil)
}

// Link makes normalised e the record after (prevSeq, prevHash) in its chain: it sets
// Sequence, PrevHash and Hash. Stores call it while they hold their chain's lock.
func Link(e Event, prevSeq int64, prevHash Hash) Event {
	e.Sequence = prevSeq + 1
	e.PrevHash = append(Hash(nil), prevHash...)
	e.Hash = ComputeHash(e)
	return e
}

// Filter selects records of one organization for List. Empty fields match everything.
type Filter struct {
	OrganizationID string // required
	Service        string
	Action         string
	ActorSubject   string
	From, To       time.Time // From inclusive, To exclusive; zero means unbounded
}

// Page asks for one page of a List: at most Size records (DefaultPageSize when 0, capped at
// MaxPageSize) after the position Token encodes ("" for the first page).
type Page struct {
	Size  int
	Token string
}

// Page sizes of List.
const (
	DefaultPageSize = 100
	MaxPageSize     = 1000
)

// Limit returns the effective page size.
func (p Page) Limit() int {
	switch {
	case p.Size <= 0:
		return DefaultPageSize
	case p.Size > MaxPageSize:
		return MaxPageSize
	}
	return p.Size
}

// Cursor is a position in List order: (time, service, sequence), unique within an
// organization.
type Cursor struct {
	Time     time.Time
	Service  string
	Sequence int64
}

// Less reports whether c comes before d in List order.
func (c Cursor) Less(d Cursor) bool {
	if !c.Time.Equal(d.Time) {
		return c.Time.Before(d.Time)
	}
	if c.Service != d.Service {
		return c.Service < d.Service
	}
	return c.Sequence < d.Sequence
}

// CursorOf returns the List position of e.
func CursorOf(e Event) Cursor { return Cursor{e.Time, e.Service, e.Sequence} }

// Verification is the result of Verify.
type Verification struct {
	// Records counts the records checked before the first break (all of them when OK).
	Records int64
	// Head is the last record's sequence and hash when the chain is intact.
	HeadSequence int64
	HeadHash     Hash
	// Broken is the sequence number of the first record that does not verify, 0 when the
	// chain is intact; Reason says why.
	Broken int64
	Reason string
}

// OK reports whether the chain verified.
func (v Verification) OK() bool { return v.Broken == 0 }

// Store keeps audit chains. Implementations are safe for concurrent use.
type Store interface {
	// Append normalises each event, skips those whose ID their chain already holds (also
	// within one call), and appends the rest to their chains in argument order, assigning
	// sequence numbers and hashes. It is atomic: all events are appended or, on error,
	// none. Concurrent appends to one chain are serialised, so a chain never forks. An
	// invalid event fails the whole call with a *ValidationError.
	Append(ctx context.Context, events ...Event) error
	// List returns one page of the records matching f in (time, service, sequence) order,
	// and the token of the next page ("" after the last). It never returns records of
	// another organization. A token List did not issue gives ErrInvalidPageToken.
	List(ctx context.Context, f Filter, p Page) ([]Event, string, error)
	// Verify walks the chain of (org, service) from sequence 1 and checks that sequence
	// numbers have no gap, each record's previous hash is the hash of the record before,
	// each record's hash matches its content, and the chain ends where the chain head
	// says. An empty chain verifies. A broken chain is reported in the Verification, not
	// as an error.
	Verify(ctx context.Context, org, service string) (Verification, error)
}

// Verifier checks records one by one in sequence order; stores share it for Verify.
type Verifier struct {
	v        Verification
	prevHash Hash
}

// Next checks e, the next record read. It returns false once the chain is broken.
func (w *Verifier) Next(e Event) bool {
	if w.v.Broken != 0 {
		return false
	}
	want := w.v.HeadSequence + 1
	switch {
	case e.Sequence != want:
		w.fail(want, fmt.Sprintf("record %d is missing (next record is %d)", want, e.Sequence))
	case !bytes.Equal(e.PrevHash, w.prevHash):
		w.fail(e.Sequence, "previous hash does not match the record before it")
	case !bytes.Equal(ComputeHash(e), e.Hash):
		w.fail(e.Sequence, "hash does not match the record's content")
	default:
		w.v.Records++
		w.v.HeadSequence, w.prevHash = e.Sequence, e.Hash
		return true
	}
	return false
}

// End finishes the walk against the chain head the store recorded at its last append
// (headSeq 0 when it has none) and returns the result.
func (w *Verifier) End(headSeq int64, headHash Hash) Verification {
	if w.v.Broken == 0 {
		switch {
		case headSeq > w.v.HeadSequence:
			w.fail(w.v.HeadSequence+1, fmt.Sprintf("records %d to %d are missing", w.v.HeadSequence+1, headSeq))
		case headSeq < w.v.HeadSequence || !bytes.Equal(headHash, w.prevHash):
			w.fail(headSeq+1, "chain head does not match the last record")
		}
	}
	if w.v.Broken == 0 {
		w.v.HeadHash = w.prevHash
	} else {
		w.v.HeadSequence = 0
	}
	return w.v
}

func (w *Verifier) fail(seq int64, reason string) {
	w.v.Broken, w.v.Reason = seq, reason
}
