package edge

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fmgate/fmgate/internal/apierr"
)

// openAIError is the body of every error of the OpenAI-compatible API, in OpenAI's shape, so
// that the official SDKs raise their typed errors with the message, type, param and code.
type openAIError struct {
	Error openAIErrorDetail `json:"error"`
}

type openAIErrorDetail struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

func nullableString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// openAIErrorOf translates an error into OpenAI's status and body. A *requestError found
// while parsing is a 400; a gRPC status from the gateway maps by code. paramOf maps a field
// named by google.rpc.BadRequest (the native contract's name) to the OpenAI parameter.
func openAIErrorOf(err error, paramOf func(string) string) (int, openAIErrorDetail) {
	if re, ok := err.(*requestError); ok {
		return http.StatusBadRequest, openAIErrorDetail{
			Message: re.message, Type: "invalid_request_error", Param: nullableString(re.param), Code: nullableString(re.code),
		}
	}
	st := status.Convert(err)
	d := openAIErrorDetail{Message: st.Message(), Type: "invalid_request_error"}
	reason := ""
	for _, detail := range st.Details() {
		switch x := detail.(type) {
		case *errdetails.ErrorInfo:
			reason = strings.ToLower(x.GetReason())
		case *errdetails.BadRequest:
			if v := x.GetFieldViolations(); len(v) > 0 && d.Param == nil {
				d.Param = nullableString(paramOf(v[0].GetField()))
			}
		}
	}
	code := func(fallback string) *string {
		if reason != "" {
			return &reason
		}
		return nullableString(fallback)
	}
	switch st.Code() {
	case codes.InvalidArgument, codes.OutOfRange:
		d.Code = code("")
		return http.StatusBadRequest, d
	case codes.FailedPrecondition:
		d.Code = code("model_not_available")
		switch reason {
		case "model_retired":
			return http.StatusGone, d
		case "license_not_accepted":
			// The caller may not use the model until its team accepts the licence: the
			// SDKs raise their permission-denied error, as for a model not granted.
			d.Type = "permission_denied"
			return LicenseNotAcceptedHTTPStatus, d
		}
		return http.StatusBadRequest, d
	case codes.Unauthenticated:
		d.Code = nullableString("invalid_api_key")
		return http.StatusUnauthorized, d
	case codes.PermissionDenied:
		d.Type, d.Code = "permission_denied", nullableString("permission_denied")
		return http.StatusForbidden, d
	case codes.NotFound:
		d.Param, d.Code = nullableString("model"), nullableString("model_not_found")
		return http.StatusNotFound, d
	case codes.ResourceExhausted:
		d.Type, d.Code = "rate_limit_error", nullableString("rate_limit_exceeded")
		return http.StatusTooManyRequests, d
	case codes.AlreadyExists, codes.Aborted:
		d.Code = code("conflict")
		return http.StatusConflict, d
	case codes.Unimplemented:
		d.Code = code("not_implemented")
		return http.StatusNotImplemented, d
	case codes.Canceled:
		// The client has gone; nobody reads this. 499 is what proxies log for it.
		d.Code = nullableString("canceled")
		return 499, d
	case codes.DeadlineExceeded:
		d.Type, d.Code = "server_error", nullableString("timeout")
		return http.StatusGatewayTimeout, d
	case codes.Unavailable:
		d.Type, d.Code = "server_error", code("service_unavailable")
		return http.StatusServiceUnavailable, d
	default:
		d.Type, d.Code = "server_error", nullableString("internal_error")
		return http.StatusInternalServerError, d
	}
}

// writeOpenAIError answers err in OpenAI's error shape, with Retry-After (seconds, and
// Retry-After-Ms, which the official SDKs read first) when the error carries RetryInfo.
func writeOpenAIError(w http.ResponseWriter, err error, paramOf func(string) string) {
	code, d := openAIErrorOf(err, paramOf)
	if delay, ok := apierr.RetryAfter(err); ok {
		secs := int64((delay + time.Second - 1) / time.Second)
		w.Header().Set("Retry-After", strconv.FormatInt(max(secs, 1), 10))
		w.Header().Set("Retry-After-Ms", strconv.FormatInt(max(delay.Milliseconds(), 1), 10))
	}
	if code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="fmgate"`)
	}
	writeOpenAIJSON(w, code, openAIError{Error: d})
}

func writeOpenAIJSON(w http.ResponseWriter, code int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		code, body = http.StatusInternalServerError, []byte(`{"error":{"message":"internal error","type":"server_error","param":null,"code":null}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(append(body, '\n'))
}

// paramRules translate the native contract's field names (as google.rpc.BadRequest names
// them) into OpenAI's parameter names. The first matching rule applies; fields that no rule
// matches (messages[0].role, model, ...) are spelled the same in both.
var paramRules = []struct {
	re   *regexp.Regexp
	repl string
}{
	{regexp.MustCompile(`^params\.tools\[(\d+)\]\.name$`), "tools[$1].function.name"},
	{regexp.MustCompile(`^params\.tools\[(\d+)\]\.parameters_json$`), "tools[$1].function.parameters"},
	{regexp.MustCompile(`^params\.tool_choice(\..*)?$`), "tool_choice"},
	{regexp.MustCompile(`^params\.response_format\.schema_json$`), "response_format.json_schema.schema"},
	{regexp.MustCompile(`^params\.response_format\.schema_name$`), "response_format.json_schema.name"},
	{regexp.MustCompile(`^params\.response_format(\..*)?$`), "response_format"},
	{regexp.MustCompile(`^params\.end_user_id$`), "user"},
	{regexp.MustCompile(`^params\.(.*)$`), "$1"},
	{regexp.MustCompile(`^messages\[(\d+)\]\.tool_calls\[(\d+)\]\.name$`), "messages[$1].tool_calls[$2].function.name"},
	{regexp.MustCompile(`^messages\[(\d+)\]\.content\[(\d+)\]\.image\.url$`), "messages[$1].content[$2].image_url.url"},
	{regexp.MustCompile(`^inputs(.*)$`), "input$1"},
	{regexp.MustCompile(`^end_user_id$`), "user"},
}

// openAIParam maps a native field name to the OpenAI parameter; maxTokens is the name the
// caller used for the output limit (max_tokens or max_completion_tokens).
func openAIParam(field, maxTokens string) string {
	if field == "params.max_output_tokens" {
		return maxTokens
	}
	for _, r := range paramRules {
		if r.re.MatchString(field) {
			return r.re.ReplaceAllString(field, r.repl)
		}
	}
	return field
}
