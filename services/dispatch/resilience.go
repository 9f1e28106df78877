package dispatch

// The attempt loop shared by Generate, StreamGenerate and Embed: endpoint order, circuit
// breakers, retries with backoff, fallback, and the one status the caller sees.

import (
	"context"
	"errors"
	"log/slog"
	"time"
)

// attemptFunc makes one call to one endpoint and returns nil on success. committed reports
// that part of the answer has reached the caller, after which no other attempt may follow.
type attemptFunc func(ctx context.Context, ep *endpoint, attempt int) (committed bool, err error)

// try runs call on the request's endpoints until one succeeds, and returns nil or the status
// error for the caller.
//
//   - Endpoints come in plan order: priority groups, weighted within a group.
//   - An endpoint whose breaker is open is skipped without a call (failCircuitOpen).
//   - A transient failure (failure.retrySameEndpoint) is retried on the same endpoint after a
//     backoff, up to Config.MaxAttemptsPerEndpoint attempts, while the request's retry budget
//     (Config.MaxRetries) lasts; then the next endpoint is tried. A vendor's Retry-After longer
//     than Config.MaxRetryAfter is not waited for: the next endpoint is tried at once.
//   - A failure of the request itself (failure.retryable false) ends the request.
//   - A committed attempt is never followed by another.
//
// The caller sees the last failure, except that a skipped endpoint (circuit open) does not hide
// the real failure of an endpoint tried before it.
func (s *Server) try(ctx context.Context, org string, ids []string, tiers []int32, call attemptFunc) error {
	p := s.newPlan(org, ids, tiers)
	var last *attemptError
	attempt, retries := 0, 0
	for {
		c, ok := p.nextCandidate(ctx)
		if !ok {
			break
		}
		for n := 1; ; n++ { // n counts the attempts on this endpoint
			attempt++
			committed, err := s.attemptOn(ctx, org, c, attempt, call)
			if err == nil {
				return nil
			}
			if ctx.Err() != nil {
				return contextStatus(ctx)
			}
			var se sendError
			if errors.As(err, &se) {
				return se.err // the caller's stream broke; grpc already knows why
			}
			ae := s.attemptFailed(ctx, c.id, attempt, err)
			if ae.kind != failCircuitOpen || last == nil {
				last = ae
			}
			if committed {
				// Part of the answer has reached the caller: another attempt would start over,
				// and a silent end would pass a truncated answer for a complete one.
				return (&attemptError{kind: failInterrupted, endpointID: c.id}).toStatus()
			}
			if !ae.kind.retryable() {
				return ae.toStatus()
			}
			wait, again := s.retryWait(ctx, ae, n, retries)
			if !again {
				break
			}
			retries++
			if !sleep(ctx, wait) {
				return contextStatus(ctx)
			}
		}
	}
	return last.toStatus()
}

// attemptOn makes one attempt on c, through its circuit breaker.
func (s *Server) attemptOn(ctx context.Context, org string, c candidate, attempt int, call attemptFunc) (bool, error) {
	if c.err != nil {
		return false, c.err
	}
	done, ok := s.breakers.allow(org, c.id)
	if !ok {
		return false, &attemptError{kind: failCircuitOpen, endpointID: c.id, detail: "circuit open"}
	}
	committed, err := call(ctx, c.ep, attempt)
	done(breakerOutcomeOf(ctx, err))
	return committed, err
}

func breakerOutcomeOf(ctx context.Context, err error) breakerOutcome {
	var ae *attemptError
	switch {
	case err == nil:
		return outcomeSuccess
	case ctx.Err() != nil:
		return outcomeIgnored // the caller left; the endpoint may have been fine
	case errors.As(err, &ae):
		return ae.kind.breakerOutcome()
	case errors.As(err, new(sendError)):
		return outcomeIgnored
	default:
		return outcomeFailure // an adapter error without a kind is treated as failUnavailable
	}
}

// retryWait says whether the endpoint that failed with ae on its n-th attempt is tried again,
// and after how long: full jitter (a uniform draw in [0, min(MaxRetryAfter, RetryBackoff·2ⁿ⁻¹))),
// so that clients failing together do not retry together; or the vendor's Retry-After when
// longer. No retry when it could not start before the request's deadline.
func (s *Server) retryWait(ctx context.Context, ae *attemptError, n, retries int) (time.Duration, bool) {
	if !ae.kind.retrySameEndpoint() || n >= s.cfg.MaxAttemptsPerEndpoint || retries >= s.cfg.MaxRetries {
		return 0, false
	}
	if ae.retryAfter > s.cfg.MaxRetryAfter {
		return 0, false
	}
	wait := s.backoff(n)
	if ae.retryAfter > wait {
		wait = ae.retryAfter
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= wait {
		return 0, false
	}
	return wait, true
}

// backoff is the full-jitter wait before attempt n+1 on one endpoint.
func (s *Server) backoff(n int) time.Duration {
	ceiling := s.cfg.MaxRetryAfter
	if shift := n - 1; shift < 30 {
		if d := s.cfg.RetryBackoff << shift; d > 0 && d < ceiling {
			ceiling = d
		}
	}
	if ceiling <= 0 {
		return 0
	}
	return time.Duration(s.rand.int64N(int64(ceiling)))
}

// sleep waits d or until ctx ends, and reports whether the wait completed.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// attemptFailed logs a failed attempt and returns it as an *attemptError.
func (s *Server) attemptFailed(ctx context.Context, id string, attempt int, err error) *attemptError {
	var ae *attemptError
	if !errors.As(err, &ae) {
		ae = &attemptError{kind: failUnavailable, endpointID: id, detail: err.Error()}
	}
	level := slog.LevelWarn
	switch ae.kind {
	case failMisconfigured, failCredential, failNotFound:
		level = slog.LevelError // ours to fix, not the vendor's
	case failCircuitOpen:
		level = slog.LevelDebug // logged once, when the circuit opened
	}
	s.log.Log(ctx, level, "vendor attempt failed",
		slog.String("endpoint_id", id),
		slog.Int("attempt", attempt),
		slog.String("failure", ae.kind.String()),
		slog.Int("http_status", ae.httpStatus),
		slog.String("error", ae.Error()),
	)
	return ae
}
