package edge

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func nested(depth int) string {
	return strings.Repeat(`[`, depth) + strings.Repeat(`]`, depth)
}

func TestScanRequest(t *testing.T) {
	cases := []struct {
		name  string
		body  string
		param string
		fails bool
	}{
		{name: "plain", body: `{"model":"demo","messages":[{"role":"user","content":"hi"}]}`},
		{name: "64 levels", body: nested(64)},
		{name: "65 levels", body: nested(65), fails: true, param: strings.Repeat("[0]", 64)},
		{name: "top level", body: `{"api_base":"x"}`, fails: true, param: "api_base"},
		{name: "any case", body: `{"Api_Key":"x"}`, fails: true, param: "Api_Key"},
		{name: "escaped", body: `{"cred\u0065ntials":"x"}`, fails: true, param: "credentials"},
		{name: "deep", body: `{"a":[{"b":{"c":[1,{"aws_secret_access_key":"x"}]}}]}`, fails: true, param: "a[0].b.c[1].aws_secret_access_key"},
		{name: "in a message", body: `{"messages":[{"role":"user","headers":{}}]}`, fails: true, param: "messages[0].headers"},
		{name: "key inside a string is text", body: `{"model":"{\"api_base\":1}"}`},
		{name: "tool schema is the caller's data", body: `{"tools":[{"function":{"parameters":{"properties":{"headers":{},"api_key":{}}}}}]}`},
		{name: "tool function itself is not", body: `{"tools":[{"function":{"api_base":"x","parameters":{}}}]}`, fails: true, param: "tools[0].function.api_base"},
		{name: "response schema is the caller's data", body: `{"response_format":{"json_schema":{"schema":{"properties":{"base_url":{}}}}}}`},
		{name: "json_schema itself is not", body: `{"response_format":{"json_schema":{"base_url":"x"}}}`, fails: true, param: "response_format.json_schema.base_url"},
		{name: "message content is the caller's data", body: `{"messages":[{"content":[{"type":"text","api_key":"x"}]}]}`},
		{name: "free-form only at its own path", body: `{"x":{"tools":[{"function":{"parameters":{"api_key":1}}}]}}`, fails: true, param: "x.tools[0].function.parameters.api_key"},
		{name: "unterminated", body: `{"a":`, fails: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := scanRequest([]byte(tc.body))
			if !tc.fails {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			re, ok := err.(*requestError)
			require.True(t, ok)
			assert.Equal(t, tc.param, re.param)
		})
	}
}

func TestDecodeStrictNamesTheParameter(t *testing.T) {
	var v struct {
		A struct {
			B int `json:"b"`
		} `json:"a"`
	}
	for body, param := range map[string]string{
		`{"a":{"b":"x"}}`:  "a.b",
		`{"a":{"c":1}}`:    "c",
		`{"a":{"b":1}} {}`: "",
		`{"a":`:            "",
	} {
		err := decodeStrict([]byte(body), "", &v)
		require.Error(t, err, body)
		assert.Equal(t, param, err.(*requestError).param, body)
	}
	require.NoError(t, decodeStrict([]byte(` {"a":{"b":1}} `), "", &v))
}

// FuzzOpenAIParse feeds arbitrary bodies to the parsers of both endpoints: they must never panic,
// and whatever they accept carries no forbidden key outside the caller's own data.
func FuzzOpenAIParse(f *testing.F) {
	for _, seed := range []string{
		`{"model":"demo","messages":[{"role":"user","content":"hi"}]}`,
		`{"model":"demo","messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"image_url","image_url":{"url":"u"}}]}],"stream":true,"stream_options":{"include_usage":true}}`,
		`{"model":"d","messages":[{"role":"assistant","tool_calls":[{"id":"1","type":"function","function":{"name":"f","arguments":"{}"}}]}],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}],"tool_choice":{"type":"function","function":{"name":"f"}}}`,
		`{"response_format":{"type":"json_schema","json_schema":{"name":"n","schema":{"headers":1}}},"stop":["a"]}`,
		`{"model":"e","input":["a","b"],"encoding_format":"base64","dimensions":3}`,
		`{"api_base":"x"}`, `{"a\u005fb":1}`, `[[[[[[[`, `{"a":"\`, `"\u00"`, ``, `{}`, nested(70),
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		_, chatErr := parseChat(body)
		_, _, embedErr := parseEmbeddings(body)
		if chatErr == nil || embedErr == nil {
			// Accepted bodies passed the scan.
			require.NoError(t, scanRequest(body))
		}
	})
}
