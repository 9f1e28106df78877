package audit

import (
	"bufio"
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"
)

// RecorderConfig tunes a Recorder. Its zero value works (without a spool).
type RecorderConfig struct {
	// QueueSize bounds the events waiting to be written (default 4096).
	QueueSize int
	// BatchSize bounds the events written in one Append (default 256).
	BatchSize int
	// EnqueueTimeout is how long Record waits for room in a full queue before it gives up
	// with ErrQueueFull (default 1s).
	EnqueueTimeout time.Duration
	// MaxRetries is how many times a failed write is retried, with exponential backoff
	// from MinBackoff to MaxBackoff, before its events go to the spool (default 5).
	// Without a spool, writes are retried until they succeed or the Recorder stops.
	MaxRetries             int
	MinBackoff, MaxBackoff time.Duration // defaults 100ms and 30s
	// AttemptTimeout bounds one Append (default 10s).
	AttemptTimeout time.Duration
	// SpoolDir, when set, holds the spool: events the store did not take within MaxRetries,
	// as JSON lines, replayed before anything newer at the next chance, including the next
	// start. Each process needs its own directory.
	SpoolDir string
	// FlushTimeout bounds the flush at shutdown (default 10s).
	FlushTimeout time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Log receives write failures (default slog.Default()).
	Log *slog.Logger
}

func (c *RecorderConfig) defaults() {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defd := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.QueueSize, 4096)
	def(&c.BatchSize, 256)
	def(&c.MaxRetries, 5)
	defd(&c.EnqueueTimeout, time.Second)
	defd(&c.MinBackoff, 100*time.Millisecond)
	defd(&c.MaxBackoff, 30*time.Second)
	defd(&c.AttemptTimeout, 10*time.Second)
	defd(&c.FlushTimeout, 10*time.Second)
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
}

// Stats counts what a Recorder did.
type Stats struct {
	Recorded int64 // events accepted by Record
	Rejected int64 // events Record refused because the queue stayed full or the caller gave up
	Written  int64 // events written to the store from the queue
	Spooled  int64 // events written to the spool
	Replayed int64 // spooled events written to the store
	Lost     int64 // events neither written nor spooled (store and spool both failed at shutdown, or a corrupt spool line)
	Failures int64 // failed store writes (each retry counts)
	Queued   int   // events waiting now
}

// Recorder is the outbox through which a service records audit events without waiting for
// the store: Record puts an event on a bounded queue, and Run writes the queue to the store
// in order, retrying with backoff while the store fails.
//
// Durability: an event is safe once the store or the spool holds it. Events still in the
// in-memory queue when the process crashes are lost; the spool only protects events the
// store refused, and events pending at a graceful shutdown. A record that must survive a
// crash must be written synchronously: in the service's own database transaction with the
// change it records (auditpg.Store.AppendTx), or with Store.Append before answering.
//
// Record never drops an event silently: it either queues the event or returns an error,
// and Stats counts every outcome.
type Recorder struct {
	store   Store
	service string
	cfg     RecorderConfig
	spool   string

	queue   chan Event
	mu      sync.RWMutex // held for reading while sending on queue; for writing to close it
	closed  bool
	closing atomic.Bool
	started atomic.Bool

	recorded, rejected, written, spooled, replayed, lost, failures atomic.Int64
}

var serviceName = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,62}$`)

// NewRecorder returns a Recorder that writes the events of service to store. It creates
// cfg.SpoolDir when set.
func NewRecorder(store Store, service string, cfg RecorderConfig) (*Recorder, error) {
	if !serviceName.MatchString(service) {
		return nil, fmt.Errorf("audit recorder: invalid service name %q", service)
	}
	cfg.defaults()
	r := &Recorder{store: store, service: service, cfg: cfg, queue: make(chan Event, cfg.QueueSize)}
	if cfg.SpoolDir != "" {
		if err := os.MkdirAll(cfg.SpoolDir, 0o700); err != nil {
			return nil, fmt.Errorf("audit recorder: spool: %w", err)
		}
		r.spool = filepath.Join(cfg.SpoolDir, "audit-"+service+".jsonl")
	}
	return r, nil
}

// Record queues e for writing. It fills what e leaves empty: ID (random), Service (the
// Recorder's), Time (now) and TraceID (from ctx's span). An invalid event gives a
// *ValidationError at once (check); the event is queued as given, and the store's Append
// normalises it, off the caller's path. When the queue is full, Record waits up to EnqueueTimeout, or
// until ctx ends, then returns ErrQueueFull (or ctx's error). After shutdown it returns
// ErrClosed. Safe for concurrent use.
func (r *Recorder) Record(ctx context.Context, e Event) error {
	if r.closing.Load() {
		return ErrClosed
	}
	if e.ID == "" {
		e.ID = crand.Text()
	}
	if e.Service == "" {
		e.Service = r.service
	} else if e.Service != r.service {
		return &ValidationError{"service", fmt.Sprintf("is %q, not the recorder's %q", e.Service, r.service)}
	}
	if e.Time.IsZero() {
		e.Time = r.cfg.Now()
	}
	if sc := trace.SpanContextFromContext(ctx); e.TraceID == "" && sc.HasTraceID() {
		e.TraceID = sc.TraceID().String()
	}
	if err := check(e); err != nil {
		return err
	}

	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.closed {
		return ErrClosed
	}
	select {
	case r.queue <- e:
		r.recorded.Add(1)
		return nil
	default:
	}
	timer := time.NewTimer(r.cfg.EnqueueTimeout)
	defer timer.Stop()
	select {
	case r.queue <- e:
		r.recorded.Add(1)
		return nil
	case <-timer.C:
		r.rejected.Add(1)
		r.cfg.Log.WarnContext(ctx, "audit event rejected: queue full", "action", e.Action, "organization_id", e.OrganizationID)
		return fmt.Errorf("record audit event %s: %w", e.Action, ErrQueueFull)
	case <-ctx.Done():
		r.rejected.Add(1)
		return fmt.Errorf("record audit event %s: %w", e.Action, ctx.Err())
	}
}

// check reports what Normalize would find wrong with e, without building the canonical JSON
// that Normalize returns: validating JSON costs no allocation, while canonicalising it decodes
// it into maps and encodes it again, which the store does anyway (Store.Append normalises).
func check(e Event) error {
	raw := [...]struct {
		field string
		json  json.RawMessage
	}{{"before", e.Before}, {"after", e.After}, {"details", e.Details}}
	e.Before, e.After, e.Details = nil, nil, nil
	if _, err := Normalize(e); err != nil {
		return err
	}
	for _, r := range raw {
		if len(r.json) > MaxJSONLen || !json.Valid(r.json) && len(bytes.TrimSpace(r.json)) > 0 {
			// The error Normalize gives, or none for what json.Valid is stricter about.
			if _, err := canonicalJSON(r.field, r.json); err != nil {
				return err
			}
		}
	}
	return nil
}

// Stats returns the counters.
func (r *Recorder) Stats() Stats {
	return Stats{
		Recorded: r.recorded.Load(), Rejected: r.rejected.Load(), Written: r.written.Load(),
		Spooled: r.spooled.Load(), Replayed: r.replayed.Load(), Lost: r.lost.Load(),
		Failures: r.failures.Load(), Queued: len(r.queue),
	}
}

// Run writes queued events until ctx ends, then stops accepting events and flushes the
// queue within FlushTimeout: to the store, or else to the spool. It first replays any
// spool a previous run left. It returns an error only when events were lost at shutdown.
// Call it once.
func (r *Recorder) Run(ctx context.Context) error {
	if !r.started.CompareAndSwap(false, true) {
		return errors.New("audit recorder: Run called twice")
	}
	spooling := r.spoolHasEvents()
	var (
		attempt int     // failed attempts in a row, for the backoff
		pending []Event // the batch being written
		wait    <-chan time.Time
		timer   *time.Timer
	)
	stopTimer := func() {
		if timer != nil {
			timer.Stop()
		}
	}
	defer stopTimer()
	for {
		if wait == nil {
			switch {
			case spooling:
				// While a spool exists, everything goes through it, so order is kept.
				if err := r.replay(ctx); err != nil {
					r.failed(ctx, "replay audit spool", err, attempt)
					break
				}
				spooling, attempt = false, 0
				continue
			case len(pending) > 0:
				if err := r.write(ctx, pending); err != nil {
					r.failed(ctx, "write audit events", err, attempt)
					if attempt >= r.cfg.MaxRetries && r.spool != "" {
						if err := r.toSpool(pending); err != nil {
							r.cfg.Log.ErrorContext(ctx, "spool audit events", "error", err, "events", len(pending))
						} else {
							pending, spooling, attempt = nil, true, 0
						}
					}
					break
				}
				r.written.Add(int64(len(pending)))
				pending, attempt = nil, 0
				continue
			}
		}
		if (spooling || len(pending) > 0) && wait == nil {
			timer = time.NewTimer(r.backoff(attempt))
			wait = timer.C
			attempt++
		}
		// A batch that waits for a retry takes nothing new from the queue; while spooling,
		// new events join the spool behind the older ones.
		var queue <-chan Event
		if len(pending) == 0 {
			queue = r.queue
		}
		select {
		case <-ctx.Done():
			stopTimer()
			return r.shutdown(ctx, pending, spooling)
		case <-wait:
			wait = nil
		case e := <-queue:
			pending = r.fill(append(pending, e))
			if spooling {
				if err := r.toSpool(pending); err != nil {
					r.cfg.Log.ErrorContext(ctx, "spool audit events", "error", err, "events", len(pending))
					continue // pending stays, and is retried as a store write after the replay
				}
				pending = nil
			}
		}
	}
}

// fill adds queued events to batch without waiting, up to BatchSize.
func (r *Recorder) fill(batch []Event) []Event {
	for len(batch) < r.cfg.BatchSize {
		select {
		case e := <-r.queue:
			batch = append(batch, e)
		default:
			return batch
		}
	}
	return batch
}

func (r *Recorder) failed(ctx context.Context, what string, err error, attempt int) {
	r.failures.Add(1)
	r.cfg.Log.WarnContext(ctx, what, "error", err, "attempt", attempt+1)
}

func (r *Recorder) backoff(attempt int) time.Duration {
	d := r.cfg.MinBackoff << min(attempt, 30)
	if d <= 0 || d > r.cfg.MaxBackoff {
		d = r.cfg.MaxBackoff
	}
	// Equal jitter: replicas that failed together do not retry together.
	return d/2 + rand.N(d/2+1)
}

func (r *Recorder) write(ctx context.Context, events []Event) error {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.AttemptTimeout)
	defer cancel()
	return r.store.Append(ctx, events...)
}

// shutdown closes the queue and flushes what it holds, with pending, within FlushTimeout.
func (r *Recorder) shutdown(ctx context.Context, pending []Event, spooling bool) error {
	r.closing.Store(true)
	// Record calls already past the closing check hold the read lock while they wait for
	// room: keep draining until they are done, then close.
	for !r.mu.TryLock() {
		select {
		case e := <-r.queue:
			pending = append(pending, e)
		case <-time.After(time.Millisecond):
		}
	}
	r.closed = true
	r.mu.Unlock()
	for {
		select {
		case e := <-r.queue:
			pending = append(pending, e)
			continue
		default:
		}
		break
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.FlushTimeout)
	defer cancel()
	if spooling {
		if err := r.replay(ctx); err == nil {
			spooling = false
		}
	}
	for !spooling && len(pending) > 0 {
		n := min(len(pending), r.cfg.BatchSize)
		if err := r.write(ctx, pending[:n]); err != nil {
			r.failures.Add(1)
			r.cfg.Log.WarnContext(ctx, "flush audit events", "error", err)
			break // after the first failure the flush deadline leaves no time for backoff
		}
		r.written.Add(int64(n))
		pending = pending[n:]
	}
	if len(pending) == 0 {
		return nil
	}
	if r.spool != "" {
		if err := r.toSpool(pending); err == nil {
			return nil
		}
	}
	r.lost.Add(int64(len(pending)))
	return fmt.Errorf("audit recorder: %d events lost at shutdown: store unavailable and no spool", len(pending))
}

// toSpool appends events to the spool file and syncs it.
func (r *Recorder) toSpool(events []Event) error {
	if r.spool == "" {
		return errors.New("no spool configured")
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for _, e := range events {
		if err := enc.Encode(e); err != nil {
			return err
		}
	}
	_, statErr := os.Stat(r.spool)
	f, err := os.OpenFile(r.spool, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(buf.Bytes()); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if errors.Is(statErr, os.ErrNotExist) {
		syncDir(filepath.Dir(r.spool))
	}
	r.spooled.Add(int64(len(events)))
	return nil
}

func (r *Recorder) spoolHasEvents() bool {
	if r.spool == "" {
		return false
	}
	fi, err := os.Stat(r.spool)
	return err == nil && fi.Size() > 0
}

// replay writes the spool to the store in order, then removes it. The store skips events
// it already holds, so a replay interrupted after some writes is simply repeated.
func (r *Recorder) replay(ctx context.Context) error {
	f, err := os.Open(r.spool)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	br := bufio.NewReader(f)
	var batch []Event
	var total int64
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := r.write(ctx, batch); err != nil {
			return err
		}
		total += int64(len(batch))
		batch = batch[:0]
		return nil
	}
	for line := 1; ; line++ {
		b, err := br.ReadBytes('\n')
		if errors.Is(err, io.EOF) {
			if len(bytes.TrimSpace(b)) > 0 {
				// A write cut short by a crash: that event was never acknowledged as spooled.
				r.lost.Add(1)
				r.cfg.Log.ErrorContext(ctx, "audit spool ends in a partial line; skipped", "line", line)
			}
			break
		}
		if err != nil {
			return err
		}
		var e Event
		if err := json.Unmarshal(b, &e); err != nil {
			r.lost.Add(1)
			r.cfg.Log.ErrorContext(ctx, "corrupt audit spool line; skipped", "line", line, "error", err)
			continue
		}
		if batch = append(batch, e); len(batch) == r.cfg.BatchSize {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	if err := os.Remove(r.spool); err != nil {
		return err
	}
	syncDir(filepath.Dir(r.spool))
	r.replayed.Add(total)
	return nil
}

// syncDir makes a file's creation or removal durable; failures only weaken durability.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
}
