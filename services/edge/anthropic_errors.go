package edge

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fmgate/fmgate/internal/apierr"
)

// anthropicError is an error of the Anthropic dialect with its HTTP status and Anthropic's
// error type, found before the gateway was called or translated from its status.
type anthropicError struct {
	status  int
	typ     string
	message string
}

func (e *anthropicError) Error() string { return e.message }

func anthropicInvalid(format string, args ...any) *anthropicError {
	return &anthropicError{status: http.StatusBadRequest, typ: "invalid_request_error", message: fmt.Sprintf(format, args...)}
}

func errAnthropicNotFound(r *http.Request) *anthropicError {
	return &anthropicError{status: http.StatusNotFound, typ: "not_found_error", message: "no such endpoint: " + r.Method + " " + r.URL.Path}
}

// anthropicErrorBody is Anthropic's error shape, which the SDKs turn into typed errors.
type anthropicErrorBody struct {
	Type  string               `json:"type"` // "error"
	Error anthropicErrorDetail `json:"error"`
}

type anthropicErrorDetail struct {
	Type    string `json:"type"`
	Message string `json:"message"`
}

// statusOverloaded is Anthropic's status for a temporarily overloaded API; the SDKs retry it.
const statusOverloaded = 529

// anthropicErrorOf translates err into Anthropic's HTTP status and error type. A gRPC status
// maps by code:
//
//	INVALID_ARGUMENT, FAILED_PRECONDITION, OUT_OF_RANGE, UNIMPLEMENTED  400 invalid_request_error
//	UNAUTHENTICATED      401 authentication_error
//	PERMISSION_DENIED, and FAILED_PRECONDITION with reason LICENSE_NOT_ACCEPTED
//	                     403 permission_error: the caller may not use the model until its
//	                     team accepts the licence, as for a model not granted
//	NOT_FOUND            404 not_found_error
//	RESOURCE_EXHAUSTED   429 rate_limit_error (with retry-after)
//	DEADLINE_EXCEEDED    504 timeout_error
//	UNAVAILABLE          529 overloaded_error: no endpoint of the route could answer now.
//	                     Anthropic documents 529, not 503, for "try again later", and its
//	                     SDKs retry it, so a client behaves as it would with Anthropic.
//	CANCELED             499 (the client has gone; nobody reads it)
//	anything else        500 api_error
func anthropicErrorOf(err error) *anthropicError {
	if ae := (*anthropicError)(nil); errors.As(err, &ae) {
		return ae
	}
	if re := (*requestError)(nil); errors.As(err, &re) {
		return &anthropicError{status: http.StatusBadRequest, typ: "invalid_request_error", message: re.message}
	}
	st := status.Convert(err)
	e := &anthropicError{message: st.Message()}
	switch st.Code() {
	case codes.FailedPrecondition:
		e.status, e.typ = http.StatusBadRequest, "invalid_request_error"
		if reasonOf(err) == ReasonLicenseNotAccepted {
			e.status, e.typ = LicenseNotAcceptedHTTPStatus, "permission_error"
		}
	case codes.InvalidArgument, codes.OutOfRange, codes.Unimplemented:
		e.status, e.typ = http.StatusBadRequest, "invalid_request_error"
	case codes.Unauthenticated:
		e.status, e.typ = http.StatusUnauthorized, "authentication_error"
	case codes.PermissionDenied:
		e.status, e.typ = http.StatusForbidden, "permission_error"
	case codes.NotFound:
		e.status, e.typ = http.StatusNotFound, "not_found_error"
	case codes.ResourceExhausted:
		e.status, e.typ = http.StatusTooManyRequests, "rate_limit_error"
	case codes.DeadlineExceeded:
		e.status, e.typ = http.StatusGatewayTimeout, "timeout_error"
	case codes.Unavailable:
		e.status, e.typ = statusOverloaded, "overloaded_error"
	case codes.Canceled:
		e.status, e.typ = 499, "api_error"
	default:
		e.status, e.typ = http.StatusInternalServerError, "api_error"
	}
	return e
}

// writeAnthropicError answers err in Anthropic's error shape, with retry-after (whole
// seconds, at least 1) when the error carries RetryInfo.
func writeAnthropicError(w http.ResponseWriter, err error) {
	e := anthropicErrorOf(err)
	if delay, ok := apierr.RetryAfter(err); ok {
		secs := int64((delay + time.Second - 1) / time.Second)
		w.Header().Set("Retry-After", strconv.FormatInt(max(secs, 1), 10))
	}
	writeAnthropicJSON(w, e.status, anthropicErrorBodyOf(e))
}

func anthropicErrorBodyOf(e *anthropicError) anthropicErrorBody {
	return anthropicErrorBody{Type: "error", Error: anthropicErrorDetail{Type: e.typ, Message: e.message}}
}
