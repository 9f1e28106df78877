// Package apierr builds gRPC status errors that carry google.rpc details, so that every
// service reports bad fields, exhausted quotas and machine-readable reasons the same way.
package apierr

import (
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Domain is the ErrorInfo domain of every fmgate error.
const Domain = "fmgate.dev"

// FieldViolation names one invalid field of a request and says what is wrong with it.
type FieldViolation struct {
	Field       string
	Description string
}

// InvalidArgument returns an INVALID_ARGUMENT status with a BadRequest detail listing every
// violation. The message names the first field so that clients that show only the message
// still learn which field is wrong.
func InvalidArgument(violations ...FieldViolation) error {
	msg := "invalid request"
	if len(violations) > 0 {
		msg = "invalid " + violations[0].Field + ": " + violations[0].Description
	}
	br := &errdetails.BadRequest{}
	for _, v := range violations {
		br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{
			Field: v.Field, Description: v.Description,
		})
	}
	return withDetails(status.New(codes.InvalidArgument, msg), br)
}

// Field is a shorthand for InvalidArgument with one violation.
func Field(field, description string) error {
	return InvalidArgument(FieldViolation{Field: field, Description: description})
}

// ResourceExhausted returns a RESOURCE_EXHAUSTED status with RetryInfo (so REST clients get
// Retry-After) and a QuotaFailure naming the limit.
func ResourceExhausted(msg, limit string, retryAfter time.Duration) error {
	return withDetails(status.New(codes.ResourceExhausted, msg),
		&errdetails.RetryInfo{RetryDelay: durationpb.New(retryAfter)},
		&errdetails.QuotaFailure{Violations: []*errdetails.QuotaFailure_Violation{{
			Subject: limit, Description: msg,
		}}},
	)
}

// WithReason returns a status with an ErrorInfo carrying a stable, machine-readable reason
// (UPPER_SNAKE_CASE), such as MODEL_NOT_GRANTED.
func WithReason(code codes.Code, reason, msg string) error {
	return withDetails(status.New(code, msg), &errdetails.ErrorInfo{Reason: reason, Domain: Domain})
}

// RetryAfter returns the RetryInfo delay carried by err, if any.
func RetryAfter(err error) (time.Duration, bool) {
	st, ok := status.FromError(err)
	if !ok {
		return 0, false
	}
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay() != nil {
			return ri.GetRetryDelay().AsDuration(), true
		}
	}
	return 0, false
}

func withDetails(st *status.Status, details ...protoadapt.MessageV1) error {
	withD, err := st.WithDetails(details...)
	if err != nil {
		// Only a detail that cannot be marshalled fails here, and ours are fixed types.
		return st.Err()
	}
	return withD.Err()
}
