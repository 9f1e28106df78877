package registry

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fmgate/fmgate/internal/grpctest"
)

func TestToStatus(t *testing.T) {
	raw := errors.New("connection reset")
	tests := []struct {
		name    string
		err     error
		code    codes.Code
		reason  string
		field   string
		message string
	}{
		{"nil", nil, codes.OK, "", "", ""},
		{"model not found", fmt.Errorf("wrapped: %w", &NotFoundError{Resource: ResourceModel, Name: "m"}),
			codes.NotFound, "MODEL_NOT_FOUND", "", `model "m" not found`},
		{"endpoint not found", &NotFoundError{Resource: ResourceEndpoint, Name: "e"},
			codes.NotFound, "ENDPOINT_NOT_FOUND", "", `endpoint "e" not found`},
		{"not routable", &RouteError{Failure: FailureNotRoutable, Model: "m", State: LifecycleEvaluating},
			codes.FailedPrecondition, "MODEL_NOT_ROUTABLE", "", `model "m" is evaluating; only approved or deprecated models can be used`},
		{"retired", &RouteError{Failure: FailureRetired, Model: "m", State: LifecycleRetired},
			codes.FailedPrecondition, "MODEL_RETIRED", "", `model "m" is retired`},
		{"no endpoint", &RouteError{Failure: FailureNoEndpoint, Model: "m", State: LifecycleApproved},
			codes.FailedPrecondition, "NO_ENDPOINT", "", `model "m" has no endpoint`},
		{"page token", fmt.Errorf("list: %w", ErrInvalidPageToken), codes.InvalidArgument, "", "page_token", "invalid page_token"},
		{"validation", &ValidationError{Violations: []Violation{{Field: "base_url", Description: "bad"}}},
			codes.InvalidArgument, "", "base_url", "invalid base_url: bad"},
		{"canceled", fmt.Errorf("get: %w", context.Canceled), codes.Canceled, "", "", ""},
		{"deadline", fmt.Errorf("get: %w", context.DeadlineExceeded), codes.DeadlineExceeded, "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := toStatus(tt.err)
			assert.Equal(t, tt.code, status.Code(err))
			assert.Contains(t, status.Convert(err).Message(), tt.message)
			info := grpctest.ErrorInfo(err)
			if info != nil {
				assert.Equal(t, "fmgate.dev", info.GetDomain())
			}
			assert.Equal(t, tt.reason, info.GetReason())
			fields := append(grpctest.BadRequestFields(err), "") // the first field, or ""
			assert.Equal(t, tt.field, fields[0])
		})
	}
	t.Run("unknown", func(t *testing.T) {
		// Unknown errors reach the last interceptor untouched, which hides and logs them.
		assert.Same(t, raw, toStatus(raw))
	})
}

func TestValidateEndpointURLsAndCredentials(t *testing.T) {
	base := Endpoint{OrganizationID: "o", ID: "e", Provider: ProviderOpenAI, BaseURL: "https://api.openai.com/v1", UpstreamModel: "gpt-4o"}
	for _, tt := range []struct {
		url, cred string
		bad       string
	}{
		{"https://api.openai.com/v1", "", ""},
		{"http://127.0.0.1:8000", "env:OPENAI_API_KEY", ""},
		{"https://h", "file:/run/secrets/key", ""},
		{"api.openai.com/v1", "", "base_url"},
		{"/v1", "", "base_url"},
		{"https://", "", "base_url"},
		{"https://user:pw@host/v1", "", "base_url"},
		{"https://host/v1?api-key=x", "", "base_url"},
		{"file:///etc/passwd", "", "base_url"},
		{"https://h", "sk-abc", "credential_ref"},
		{"https://h", "env:", "credential_ref"},
		{"https://h", "env:A-B", "credential_ref"},
		{"https://h", "file:relative", "credential_ref"},
		{"https://h", "file:/a/../etc", "credential_ref"},
	} {
		e := base
		e.BaseURL, e.CredentialRef = tt.url, tt.cred
		err := e.Validate()
		if tt.bad == "" {
			assert.NoError(t, err, "%s %s", tt.url, tt.cred)
			continue
		}
		var ve *ValidationError
		if assert.ErrorAs(t, err, &ve, "%s %s", tt.url, tt.cred) {
			assert.Equal(t, tt.bad, ve.Violations[0].Field)
		}
	}
}

func TestPageTokenRoundTrip(t *testing.T) {
	for _, key := range []string{"a", "meta/llama:8b", "ü"} {
		got, err := DecodePageToken(EncodePageToken(key))
		assert.NoError(t, err)
		assert.Equal(t, key, got)
	}
	assert.Equal(t, 50, Page{}.Limit())
	assert.Equal(t, 1000, Page{Size: 1001}.Limit())
}

func FuzzDecodePageToken(f *testing.F) {
	f.Add(EncodePageToken("gpt-4o"))
	f.Add("")
	f.Add("cjE6")
	f.Add("!!")
	f.Fuzz(func(t *testing.T, token string) {
		key, err := DecodePageToken(token)
		if err != nil {
			return
		}
		if token != "" {
			// Whatever a client sends that decodes names a key that encodes back the same.
			again, err := DecodePageToken(EncodePageToken(key))
			if err != nil || again != key {
				t.Fatalf("key %q does not round-trip", key)
			}
		}
	})
}
