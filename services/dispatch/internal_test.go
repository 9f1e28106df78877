package dispatch

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	typev1 "github.com/fmgate/fmgate/gen/fmgate/type/v1"
)

func TestEnvFileResolver(t *testing.T) {
	t.Setenv("FMGATE_DISPATCH_UNIT_KEY", "sk-env")
	path := filepath.Join(t.TempDir(), "key")
	require.NoError(t, os.WriteFile(path, []byte("  sk-file\n"), 0o600))
	empty := filepath.Join(t.TempDir(), "empty")
	require.NoError(t, os.WriteFile(empty, []byte("\n"), 0o600))

	for _, tc := range []struct{ ref, want string }{
		{"", ""}, {"env:FMGATE_DISPATCH_UNIT_KEY", "sk-env"}, {"file:" + path, "sk-file"},
	} {
		c, err := EnvFileResolver{}.Resolve(t.Context(), "acme", tc.ref)
		require.NoError(t, err, tc.ref)
		assert.Equal(t, tc.want, c.Reveal())
	}
	for _, ref := range []string{"env:FMGATE_DISPATCH_UNIT_UNSET", "env:", "file:" + empty, "file:/does/not/exist", "sk-raw-secret", "vault:x", "store:openai-key"} {
		_, err := EnvFileResolver{}.Resolve(t.Context(), "acme", ref)
		require.ErrorIs(t, err, ErrCredentialUnavailable, ref)
		assert.NotContains(t, err.Error(), "sk-raw-secret")
		assert.Equal(t, 1, strings.Count(err.Error(), "credential unavailable"), "said once: %v", err)
	}
}

func TestCredentialNeverPrints(t *testing.T) {
	c := NewCredential("sk-secret")
	var b strings.Builder
	slog.New(slog.NewTextHandler(&b, nil)).Info("x", "cred", c)
	for _, s := range []string{fmt.Sprint(c), fmt.Sprintf("%v %+v %#v %s %q", c, c, c, c, c), b.String()} {
		assert.NotContains(t, s, "sk-secret")
	}
	assert.Equal(t, "a [REDACTED] b", c.redact("a sk-secret b"))
}

func TestToOpenAIMessages(t *testing.T) {
	text := func(s string) *typev1.ContentPart {
		return &typev1.ContentPart{Part: &typev1.ContentPart_Text{Text: s}}
	}
	msgs := []*typev1.Message{
		{Role: typev1.Role_ROLE_SYSTEM, Content: []*typev1.ContentPart{text("sys")}},
		{Role: typev1.Role_ROLE_DEVELOPER, Content: []*typev1.ContentPart{text("a"), text("b")}},
		{Role: typev1.Role_ROLE_USER, Name: "ann", Content: []*typev1.ContentPart{
			text("look"), {Part: &typev1.ContentPart_Image{Image: &typev1.ImagePart{Url: "https://x/i.png", Detail: "low"}}},
		}},
		{Role: typev1.Role_ROLE_ASSISTANT, ToolCalls: []*typev1.ToolCall{{Id: "call_1", Name: "lookup", ArgumentsJson: `{"q":1}`}}},
		{Role: typev1.Role_ROLE_TOOL, ToolCallId: "call_1", Content: []*typev1.ContentPart{text("42")}},
	}
	b, err := json.Marshal(toOpenAIMessages(msgs))
	require.NoError(t, err)
	assert.JSONEq(t, `[
		{"role":"system","content":"sys"},
		{"role":"developer","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]},
		{"role":"user","name":"ann","content":[{"type":"text","text":"look"},{"type":"image_url","image_url":{"url":"https://x/i.png","detail":"low"}}]},
		{"role":"assistant","tool_calls":[{"id":"call_1","type":"function","function":{"name":"lookup","arguments":"{\"q\":1}"}}]},
		{"role":"tool","tool_call_id":"call_1","content":"42"}
	]`, string(b))
}

func TestFinishReasons(t *testing.T) {
	for in, want := range map[string]typev1.FinishReason{
		"stop": typev1.FinishReason_FINISH_REASON_STOP, "length": typev1.FinishReason_FINISH_REASON_LENGTH,
		"tool_calls": typev1.FinishReason_FINISH_REASON_TOOL_CALLS, "function_call": typev1.FinishReason_FINISH_REASON_TOOL_CALLS,
		"content_filter": typev1.FinishReason_FINISH_REASON_CONTENT_FILTER, "weird": typev1.FinishReason_FINISH_REASON_UNSPECIFIED,
	} {
		assert.Equal(t, want, fromOpenAIFinish(in), in)
	}
}
