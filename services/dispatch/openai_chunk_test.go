package dispatch

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// chunkSeeds are chat.completion.chunk events as vendors send them, and documents that only
// look like them: decodeOpenAIChunk must agree with json.Unmarshal on every one.
var chunkSeeds = []string{
	`{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1764252000,"model":"demo","system_fingerprint":"fp","choices":[{"index":0,"delta":{"content":"growth "},"logprobs":null,"finish_reason":null}]}`,
	`{"id":"c","model":"gpt-4o","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"finish_reason":null}]}`,
	`{"model":"m","choices":[{"delta":{"content":"line one\nline \"two\" \u00e9\ud83d\ude00 \u2028"}}]}`,
	`{"model":"m","choices":[{"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"get_weather","arguments":""}}]}}]}`,
	`{"model":"m","choices":[{"delta":{"tool_calls":[{"index":1,"function":{"arguments":"{\"city\": \"Par"}},{"index":2,"type":"custom"}]}}]}`,
	`{"model":"m","choices":[{"delta":{},"finish_reason":"stop"}],"usage":null}`,
	`{"model":"m","choices":[],"usage":{"prompt_tokens":14,"completion_tokens":60,"total_tokens":74,"prompt_tokens_details":{"cached_tokens":0}}}`,
	`{"error":{"message":"overloaded","type":"server_error"}}`,
	`{"error":null}`,
	`{"Model":"upper","CHOICES":[{"Delta":{"Content":"folded"}}]}`,
	`{"model":"first","model":"last"}`,
	` { "model" : "spaced" , "choices" : [ { "delta" : { "content" : "x" } , "finish_reason" : "length" } ] } `,
	`{"model":"m","choices":null}`,
	`{"model":"m","choices":[null,{"delta":null}]}`,
	`{"model":"bad utf8 \xff\xfe here"}`,
	`{"mod\u0065l":"escaped key"}`,
	`null`,
	// Refused by json.Unmarshal, so by decodeOpenAIChunk too.
	`{"model":5}`,
	`{"model":"m","choices":{}}`,
	`{"model":"m","choices":[5]}`,
	`{"choices":[{"delta":[]}]}`,
	`{"choices":[{"delta":{"content":true}}]}`,
	`{"choices":[{"delta":{"tool_calls":[{"index":1.5}]}}]}`,
	`{"choices":[{"delta":{"tool_calls":[{"index":"1"}]}}]}`,
	`{"usage":{"total_tokens":1e3}}`,
	`{"usage":{"total_tokens":99999999999999999999}}`,
	`{"usage":[]}`,
	`[]`,
	`"text"`,
	`{"model":"m"`,
	`{"model":"m"} {}`,
	``,
	`{"model":"m",}`,
}

func TestDecodeOpenAIChunkMatchesEncodingJSON(t *testing.T) {
	for _, seed := range chunkSeeds {
		checkChunkDecode(t, []byte(seed))
	}
}

func FuzzDecodeOpenAIChunk(f *testing.F) {
	for _, seed := range chunkSeeds {
		f.Add([]byte(seed))
	}
	f.Fuzz(checkChunkDecode)
}

func checkChunkDecode(t *testing.T, data []byte) {
	var want, got openAIChunk
	wantErr := json.Unmarshal(data, &want)
	gotErr := decodeOpenAIChunk(data, &got)
	require.Equal(t, wantErr == nil, gotErr == nil, "%s: json.Unmarshal says %v, decodeOpenAIChunk %v", data, wantErr, gotErr)
	if wantErr == nil {
		assert.Equal(t, want, got, "%s", data)
	}
}
