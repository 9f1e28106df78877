package dispatch

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fmgate/fmgate/internal/apierr"
)

// failure says why one attempt on one endpoint failed, and so whether the next endpoint may
// be tried and which status the caller sees if it was the last attempt.
type failure int

const (
	failUnavailable   failure = iota // vendor 5xx, connection error, malformed answer
	failRateLimited                  // vendor 429
	failTimeout                      // an attempt timeout elapsed (connect, total, first chunk, idle)
	failInterrupted                  // a stream ended without its end marker
	failBadRequest                   // vendor 400, 413, 422: the request itself is at fault
	failRejected                     // another vendor 4xx
	failCredential                   // vendor 401/403: our credential is wrong
	failNotFound                     // the registry has no such endpoint
	failMisconfigured                // endpoint unusable: credential, URL or provider kind
	failRegistry                     // the registry could not be reached
	failUnsupported                  // the vendor cannot do what the request asks (embeddings, a parameter)
	failCircuitOpen                  // the endpoint's circuit breaker is open: skipped without a call
)

var failureNames = [...]string{
	failUnavailable:   "unavailable",
	failRateLimited:   "rate_limited",
	failTimeout:       "timeout",
	failInterrupted:   "interrupted",
	failBadRequest:    "bad_request",
	failRejected:      "rejected",
	failCredential:    "credential_rejected",
	failNotFound:      "endpoint_not_found",
	failMisconfigured: "endpoint_misconfigured",
	failRegistry:      "registry_unavailable",
	failUnsupported:   "unsupported",
	failCircuitOpen:   "circuit_open",
}

func (f failure) String() string { return failureNames[f] }

// retryable reports whether another endpoint may succeed where this one failed. Failures of
// the request itself (bad request, other 4xx) would fail anywhere. Failures of one endpoint's
// configuration (unknown endpoint, bad credential) are worth a fallback: the request is not at
// fault and the next endpoint may be configured well.
func (f failure) retryable() bool {
	return f != failBadRequest && f != failRejected
}

// retrySameEndpoint reports whether the same endpoint may succeed on another attempt: a
// transient failure of the vendor (5xx, connection error, 429, timeout, a stream cut before its
// first chunk). A rejected credential or a misconfigured endpoint fails the same way again.
func (f failure) retrySameEndpoint() bool {
	switch f {
	case failUnavailable, failRateLimited, failTimeout, failInterrupted:
		return true
	}
	return false
}

// breakerOutcome says how a failure counts for the endpoint's circuit breaker: as a sign the
// endpoint is unhealthy (the transient failures, and a rejected credential, which fails every
// request until someone fixes it), as a sign it is healthy (the vendor answered, rejecting the
// request itself), or not at all (nothing reached the vendor).
func (f failure) breakerOutcome() breakerOutcome {
	switch f {
	case failUnavailable, failRateLimited, failTimeout, failInterrupted, failCredential:
		return outcomeFailure
	case failBadRequest, failRejected:
		return outcomeSuccess
	}
	return outcomeIgnored
}

// attemptError is the failure of one attempt. Its text is safe to log and to put in spans:
// it never contains the credential (vendor text is redacted) nor the prompt.
type attemptError struct {
	kind       failure
	endpointID string
	httpStatus int
	retryAfter time.Duration
	// detail is what went wrong, for logs and spans.
	detail string
	// vendorMessage is the vendor's own explanation, shown to the caller for bad requests.
	vendorMessage string
}

func (e *attemptError) Error() string {
	s := "endpoint " + e.endpointID + ": " + e.kind.String()
	if e.httpStatus != 0 {
		s += " (HTTP " + strconv.Itoa(e.httpStatus) + ")"
	}
	if e.detail != "" {
		s += ": " + e.detail
	}
	return s
}

// defaultRetryAfter is the RetryInfo delay when a vendor's 429 carries no Retry-After.
const defaultRetryAfter = time.Second

// toStatus is the one place where a dispatch failure becomes what the caller sees.
func (e *attemptError) toStatus() error {
	switch e.kind {
	case failRateLimited:
		d := e.retryAfter
		if d <= 0 {
			d = defaultRetryAfter
		}
		return apierr.ResourceExhausted("vendor rate limit reached", "endpoint/"+e.endpointID, d)
	case failTimeout:
		return status.Error(codes.DeadlineExceeded, "vendor did not answer in time")
	case failInterrupted:
		return apierr.WithReason(codes.Unavailable, "UPSTREAM_STREAM_INTERRUPTED", "upstream stream interrupted")
	case failBadRequest:
		msg := "vendor rejected the request"
		if e.vendorMessage != "" {
			msg += ": " + e.vendorMessage
		}
		return apierr.WithReason(codes.InvalidArgument, "VENDOR_REJECTED_REQUEST", msg)
	case failRejected:
		msg := "vendor rejected the request with HTTP " + strconv.Itoa(e.httpStatus)
		if e.vendorMessage != "" {
			msg += ": " + e.vendorMessage
		}
		return apierr.WithReason(codes.FailedPrecondition, "VENDOR_REJECTED_REQUEST", msg)
	case failUnsupported:
		return apierr.WithReason(codes.InvalidArgument, "UNSUPPORTED_BY_VENDOR", "no endpoint of the model supports this request: "+e.detail)
	case failCredential:
		return apierr.WithReason(codes.Unavailable, "ENDPOINT_CREDENTIAL_REJECTED", "endpoint credential rejected by vendor")
	case failNotFound:
		return apierr.WithReason(codes.FailedPrecondition, "ENDPOINT_NOT_FOUND", "endpoint "+e.endpointID+" not found")
	case failMisconfigured:
		return apierr.WithReason(codes.FailedPrecondition, "ENDPOINT_MISCONFIGURED", "endpoint "+e.endpointID+" is misconfigured")
	case failRegistry:
		return status.Error(codes.Unavailable, "endpoint registry unavailable")
	case failCircuitOpen:
		return apierr.WithReason(codes.Unavailable, "ENDPOINT_CIRCUIT_OPEN", "vendor unavailable: endpoint circuit open")
	default:
		msg := "vendor unavailable"
		if e.httpStatus != 0 {
			msg += ": HTTP " + strconv.Itoa(e.httpStatus)
		}
		return status.Error(codes.Unavailable, msg)
	}
}

// classifyHTTP returns the failure kind of a vendor HTTP status.
func classifyHTTP(code int) failure {
	switch {
	case code == http.StatusTooManyRequests:
		return failRateLimited
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		return failCredential
	case code == http.StatusBadRequest || code == http.StatusRequestEntityTooLarge || code == http.StatusUnprocessableEntity:
		return failBadRequest
	case code == http.StatusRequestTimeout:
		return failTimeout
	case code >= 500:
		return failUnavailable
	case code >= 400:
		return failRejected
	default: // a redirect or another status a vendor API does not answer with
		return failMisconfigured
	}
}

// parseRetryAfter reads Retry-After (seconds or an HTTP date) or OpenAI's retry-after-ms.
func parseRetryAfter(h http.Header, now time.Time) time.Duration {
	if h == nil {
		return 0
	}
	if v := h.Get("Retry-After-Ms"); v != "" {
		if ms, err := strconv.ParseFloat(v, 64); err == nil && ms > 0 {
			return time.Duration(ms * float64(time.Millisecond))
		}
	}
	v := h.Get("Retry-After")
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseFloat(v, 64); err == nil && secs > 0 {
		return time.Duration(secs * float64(time.Second))
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// Cancellation causes of an attempt that ran out of time.
var (
	errVendorTimeout     = errors.New("vendor call timed out")           // Config.Timeout
	errFirstChunkTimeout = errors.New("no first chunk in time")          // Config.FirstTokenTimeout
	errStreamIdleTimeout = errors.New("no chunk in time between chunks") // Config.StreamIdleTimeout
)

// contextStatus returns the status of a request whose own context ended.
func contextStatus(ctx context.Context) error {
	return status.FromContextError(ctx.Err()).Err()
}
