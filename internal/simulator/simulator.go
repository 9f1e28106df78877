// Package simulator is a model provider that speaks vendors' wire formats over HTTP and answers
// deterministically, so that the embedded default (`fmgate serve` answers model "demo"),
// benchmarks and tests need no network and no vendor account.
//
// Each vendor dialect lives in its own file (openai.go today; Anthropic, Bedrock and Gemini
// slot in beside it). What the dialects share lives here: configuration, faults, the answer,
// token counting, pacing and statistics.
//
// # Answers and tokens
//
// The answer depends only on the requested model and the prompt, so a test can see what
// reached the vendor:
//
//	Simulated answer from <model>. You said: <text of the last user message>
//
// A token is a run of non-space characters (strings.Fields). Prompt tokens are the words of
// the text of every message; completion tokens are the words of the answer. The answer's words
// are joined by single spaces, and a streamed answer sends one token per chunk (the word plus
// the space that follows it), so the chunks concatenate to the non-streamed content. Each
// image in a prompt adds 85 prompt tokens (OpenAI's price of a low-detail image).
//
// # Stop sequences, response formats and length
//
// The answer is cut before the first occurrence of any stop sequence (finish reason stop),
// then to the request's maximum of output tokens (finish reason length). A JSON-object
// response format answers {"answer": <the text above>}; a JSON-schema format answers a
// document valid against the schema (see schemaValue): every declared and required
// property, strings carrying the text above. Stop sequences and the length limit apply to
// the JSON too, as they would with a real model.
//
// # Tools
//
// When a request offers tools and its tool choice is not "none", the answer is one call to
// a tool, with finish reason tool_calls, if:
//
//   - the tool choice names a tool: that tool;
//   - the last message is not a tool result and the last user message contains a tool's
//     name: the first such tool in the request's order;
//   - the tool choice is "required": the first tool;
//   - the last message is not a tool result and the last user message has the word "call"
//     (any case): the first tool.
//
// Otherwise the answer is text; after a tool result it quotes the result:
//
//	Simulated answer from <model>. Tool <name> returned: <text of the tool result>
//
// The call's arguments are a JSON object valid against the tool's parameters schema,
// derived from the last user message as for a JSON-schema response format; a tool without
// parameters gets {}. Its output tokens are the tokens of the tool's name and arguments. A
// streamed call sends its id and name in the first chunk and its arguments in pieces of at
// most eight bytes.
//
// # Embeddings
//
// An embedding is a unit vector derived from the input text alone (a hash-seeded
// pseudo-random sequence, normalised), of Config.EmbeddingDimensions values (default 8) or
// the requested dimensions; shorter vectors are rescaled prefixes of longer ones. Its prompt
// tokens are the tokens of the inputs.
//
// # Azure OpenAI
//
// The Azure OpenAI dialect serves the OpenAI bodies under
// /openai/deployments/{deployment}/..., authenticated by the api-key header and requiring
// the api-version query parameter; the deployment name stands for the model.
package simulator

import (
	"bytes"
	"context"
	"encoding/json"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"
)

// DefaultModels are the models a zero Config lists.
var DefaultModels = []string{"demo"}

// MaxBodyBytes bounds a request body; larger bodies get 413.
const MaxBodyBytes = 4 << 20

// Config configures a Simulator. The zero value serves DefaultModels without authentication,
// latency or faults.
type Config struct {
	// APIKey, when set, must be presented by every request as the vendor expects it
	// (OpenAI: "Authorization: Bearer <APIKey>"; Azure OpenAI: "api-key: <APIKey>"); other
	// requests get 401.
	APIKey string
	// EmbeddingDimensions is the length of embeddings when a request does not ask for one.
	// Default DefaultEmbeddingDimensions.
	EmbeddingDimensions int
	// Latency is waited before the response, or before the first chunk of a stream.
	Latency time.Duration
	// ChunkDelay is waited between streamed chunks.
	ChunkDelay time.Duration
	// Models are the model names listed by the model-list endpoints. Any model name is
	// accepted in generations.
	Models []string
	// Faults are injected for requests naming the model that keys them.
	Faults map[string]Fault
}

// FaultKind says how a Fault misbehaves.
type FaultKind int

const (
	// FaultNone answers normally.
	FaultNone FaultKind = iota
	// FaultStatus answers with an HTTP error status in the vendor's error shape.
	FaultStatus
	// FaultCut drops the connection after some chunks of a stream, without the stream's
	// end marker. A non-streaming request is dropped before any response.
	FaultCut
	// FaultHang never answers; the request ends when the client goes away.
	FaultHang
)

// Fault is a failure injected for one model. Build one with FailWith, CutAfter or Hang.
type Fault struct {
	Kind FaultKind
	// Status is the HTTP status of a FaultStatus (429, 500, 503...).
	Status int
	// RetryAfter, when positive, is sent as Retry-After in whole seconds (rounded up) with a
	// FaultStatus.
	RetryAfter time.Duration
	// Chunks is the number of content chunks a FaultCut sends before dropping the connection.
	Chunks int
}

// FailWith returns a fault answering with status and, when retryAfter is positive, a
// Retry-After header.
func FailWith(status int, retryAfter time.Duration) Fault {
	return Fault{Kind: FaultStatus, Status: status, RetryAfter: retryAfter}
}

// CutAfter returns a fault dropping a stream's connection after n content chunks.
func CutAfter(n int) Fault { return Fault{Kind: FaultCut, Chunks: n} }

// Hang returns a fault that never answers.
func Hang() Fault { return Fault{Kind: FaultHang} }

// Stats counts what a Simulator has seen.
type Stats struct {
	// Requests is the number of generation requests received (after authentication).
	Requests int64
	// Canceled is the number of requests that ended because the client went away before
	// the answer was complete.
	Canceled int64
}

// Simulator is an http.Handler answering like a model vendor. It is safe for concurrent use.
type Simulator struct {
	cfg      Config
	mux      *http.ServeMux
	ids      atomic.Uint64
	requests atomic.Int64
	canceled atomic.Int64
}

// New returns a Simulator for cfg.
func New(cfg Config) *Simulator {
	if len(cfg.Models) == 0 {
		cfg.Models = DefaultModels
	}
	s := &Simulator{cfg: cfg, mux: http.NewServeMux()}
	s.registerOpenAI(s.mux)
	s.registerGemini(s.mux)
	s.registerBedrock(s.mux)
	s.registerAzure(s.mux)
	s.registerAnthropic(s.mux)
	return s
}

// ServeHTTP implements http.Handler.
func (s *Simulator) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Stats returns the counts so far.
func (s *Simulator) Stats() Stats {
	return Stats{Requests: s.requests.Load(), Canceled: s.canceled.Load()}
}

func (s *Simulator) fault(model string) Fault { return s.cfg.Faults[model] }

// wait waits d, or until ctx ends; it reports whether the wait completed. A request whose
// client went away is counted once, here or by the caller through clientGone.
func (s *Simulator) wait(ctx context.Context, d time.Duration) bool {
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

func (s *Simulator) clientGone() { s.canceled.Add(1) }

// answer is the deterministic reply of model to the last user text, as tokens.
func answer(model, lastUser string) []string {
	words := make([]string, 0, 8+countTokens(lastUser))
	words = append(words, "Simulated", "answer", "from")
	if model == "" {
		model = "unknown"
	}
	words = append(words, strings.Fields(model+".")...)
	if lastUser != "" {
		words = append(words, "You", "said:")
		words = append(words, strings.Fields(lastUser)...)
	}
	return words
}

// countTokens counts the runs of non-space characters of s, as strings.Fields splits them,
// without allocating.
func countTokens(s string) int {
	n, in := 0, false
	for _, r := range s {
		space := unicode.IsSpace(r)
		if space {
			in = false
		} else if !in {
			in = true
			n++
		}
	}
	return n
}

// truncate keeps at most max tokens (max <= 0 keeps all) and reports whether it cut.
func truncate(tokens []string, max int64) ([]string, bool) {
	if max > 0 && int64(len(tokens)) > max {
		return tokens[:max], true
	}
	return tokens, false
}

// What follows is shared by the dialects that support tools, structured output, stop
// sequences and embeddings, so that each behaves the same whatever the vendor's wire format.

// DefaultEmbeddingDimensions is the length of an embedding when neither the request nor
// Config.EmbeddingDimensions says otherwise.
const DefaultEmbeddingDimensions = 8

// MaxEmbeddingDimensions bounds a requested embedding length, as vendors' largest models do.
const MaxEmbeddingDimensions = 3072

// imageTokens is what one image adds to the prompt tokens: OpenAI's price of a low-detail
// image. The simulator never fetches an image, so it cannot price one by its size.
const imageTokens = 85

// toolMode is how a request lets the model use its tools.
type toolMode int

const (
	toolAuto     toolMode = iota // the model decides (the default)
	toolNone                     // no tool call
	toolRequired                 // some tool must be called
	toolNamed                    // the named tool must be called
)

// offeredTool is a tool a request offers, whatever the dialect.
type offeredTool struct {
	name   string
	schema json.RawMessage // JSON Schema of the arguments; may be empty
}

// pickTool applies the tool rule of the package doc and returns the index of the tool to
// call, or -1 for a text answer. named must be the name of one of tools when mode is
// toolNamed.
func pickTool(tools []offeredTool, mode toolMode, named, lastUser string, afterToolResult bool) int {
	if len(tools) == 0 || mode == toolNone {
		return -1
	}
	if mode == toolNamed {
		for i, t := range tools {
			if t.name == named {
				return i
			}
		}
		return -1
	}
	mentioned := -1
	if !afterToolResult {
		for i, t := range tools {
			if strings.Contains(lastUser, t.name) {
				mentioned = i
				break
			}
		}
	}
	switch {
	case mentioned >= 0:
		return mentioned
	case mode == toolRequired:
		return 0
	case afterToolResult:
		return -1
	case hasWord(lastUser, "call"):
		return 0
	}
	return -1
}

// hasWord reports whether s has word as a whole word, in any case.
func hasWord(s, word string) bool {
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) }) {
		if strings.EqualFold(f, word) {
			return true
		}
	}
	return false
}

// toolArguments returns the JSON arguments of a call to a tool whose parameters follow
// schema, derived from the prompt (see schemaValue).
func toolArguments(schema json.RawMessage, lastUser string) string {
	var s map[string]any
	if len(bytes.TrimSpace(schema)) == 0 || json.Unmarshal(schema, &s) != nil {
		return "{}"
	}
	v, ok := schemaValue(s, s, lastUser, 0).(map[string]any)
	if !ok {
		return "{}"
	}
	return marshalCompact(v)
}

// toolResultAnswer is the answer of model after a tool returned result.
func toolResultAnswer(model, tool, result string) []string {
	words := []string{"Simulated", "answer", "from"}
	if model == "" {
		model = "unknown"
	}
	words = append(words, strings.Fields(model+".")...)
	if tool != "" {
		words = append(words, "Tool", tool, "returned:")
	} else {
		words = append(words, "The", "tool", "returned:")
	}
	return append(words, strings.Fields(result)...)
}

// jsonObjectAnswer wraps a text answer in a JSON object, for a JSON-object response format.
func jsonObjectAnswer(text string) string { return marshalCompact(map[string]any{"answer": text}) }

// jsonSchemaAnswer returns a JSON document valid against schema (in the subset schemaValue
// understands), with text in its strings.
func jsonSchemaAnswer(schema map[string]any, text string) string {
	return marshalCompact(schemaValue(schema, schema, text, 0))
}

// maxSchemaDepth bounds the nesting schemaValue follows, so that recursive schemas end.
const maxSchemaDepth = 8

// schemaValue returns a value valid against schema: const or the first enum value when
// given; the first alternative of anyOf, oneOf and allOf; local $refs (#/$defs/..,
// #/definitions/..) resolved against root; for an object, every declared property (and
// every required one) recursively; for an array, minItems (at least one) copies of its
// item; for a string, text (or a sample of its format, cut to maxLength); for an integer or
// a number, the token count of text within minimum and maximum; true for a boolean.
func schemaValue(schema, root map[string]any, text string, depth int) any {
	if depth > maxSchemaDepth || schema == nil {
		return nil
	}
	if c, ok := schema["const"]; ok {
		return c
	}
	if e, ok := schema["enum"].([]any); ok && len(e) > 0 {
		return e[0]
	}
	if ref, ok := schema["$ref"].(string); ok {
		for _, prefix := range []string{"#/$defs/", "#/definitions/"} {
			if name, ok := strings.CutPrefix(ref, prefix); ok {
				defs, _ := root[strings.Trim(prefix[1:], "/")].(map[string]any)
				def, _ := defs[name].(map[string]any)
				return schemaValue(def, root, text, depth+1)
			}
		}
		return nil
	}
	for _, k := range []string{"anyOf", "oneOf", "allOf"} {
		if alts, ok := schema[k].([]any); ok && len(alts) > 0 {
			alt, _ := alts[0].(map[string]any)
			return schemaValue(alt, root, text, depth+1)
		}
	}
	typ := ""
	switch t := schema["type"].(type) {
	case string:
		typ = t
	case []any:
		for _, x := range t {
			if s, ok := x.(string); ok && s != "null" {
				typ = s
				break
			}
		}
		if typ == "" && len(t) > 0 {
			typ = "null"
		}
	}
	if typ == "" {
		if _, ok := schema["properties"]; ok {
			typ = "object"
		} else if _, ok := schema["items"]; ok {
			typ = "array"
		}
	}
	switch typ {
	case "object":
		obj := map[string]any{}
		props, _ := schema["properties"].(map[string]any)
		for name, p := range props {
			ps, _ := p.(map[string]any)
			obj[name] = schemaValue(ps, root, text, depth+1)
		}
		req, _ := schema["required"].([]any)
		for _, r := range req {
			if name, ok := r.(string); ok {
				if _, ok := obj[name]; !ok {
					obj[name] = text
				}
			}
		}
		return obj
	case "array":
		items, _ := schema["items"].(map[string]any)
		n := 1
		if m, ok := schema["minItems"].(float64); ok && m > 1 {
			n = int(min(m, 8))
		}
		arr := make([]any, n)
		for i := range arr {
			arr[i] = schemaValue(items, root, text, depth+1)
		}
		return arr
	case "integer", "number":
		n := float64(countTokens(text))
		if lo, ok := schema["minimum"].(float64); ok && n < lo {
			n = math.Ceil(lo)
		}
		if hi, ok := schema["maximum"].(float64); ok && n > hi {
			n = math.Floor(hi)
		}
		return n
	case "boolean":
		return true
	case "null":
		return nil
	}
	s := text
	switch schema["format"] {
	case "date-time":
		s = "2024-01-01T00:00:00Z"
	case "date":
		s = "2024-01-01"
	case "time":
		s = "00:00:00Z"
	case "email":
		s = "user@example.com"
	case "uri":
		s = "https://example.com/"
	case "uuid":
		s = "00000000-0000-4000-8000-000000000000"
	}
	if m, ok := schema["maxLength"].(float64); ok && float64(utf8.RuneCountInString(s)) > m {
		s = string([]rune(s)[:int(m)])
	}
	return s
}

// marshalCompact encodes v (maps, slices and scalars from JSON) without HTML escaping; maps
// come out with sorted keys, so the result is deterministic.
func marshalCompact(v any) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return "null" // only JSON-decoded values reach here
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// applyStop cuts content before the earliest occurrence of any stop sequence and reports
// whether it cut.
func applyStop(content string, stops []string) (string, bool) {
	cut := -1
	for _, s := range stops {
		if s == "" {
			continue
		}
		if i := strings.Index(content, s); i >= 0 && (cut < 0 || i < cut) {
			cut = i
		}
	}
	if cut < 0 {
		return content, false
	}
	return content[:cut], true
}

// pieces splits content into the chunks of a stream: each token with the spaces that
// follow it, so the chunks concatenate to content.
func pieces(content string) []string {
	out := make([]string, 0, countTokens(content))
	start, inSpace, token := 0, false, false
	for i, r := range content {
		space := unicode.IsSpace(r)
		if !space && inSpace && token {
			out = append(out, content[start:i])
			start = i
		}
		token = token || !space
		inSpace = space
	}
	if start < len(content) {
		out = append(out, content[start:])
	}
	return out
}

// limitTokens keeps the first max tokens of content (max <= 0 keeps all) and reports whether
// it cut.
func limitTokens(content string, max int64) (string, bool) {
	if max <= 0 || int64(countTokens(content)) <= max {
		return content, false
	}
	p := pieces(content)
	// pieces starts with leading space, if any, glued to the first token.
	return strings.TrimRightFunc(strings.Join(p[:max], ""), unicode.IsSpace), true
}

// embedding returns the deterministic unit vector of text with dims values. The values are
// the first dims of one pseudo-random sequence seeded by text, normalised, so a shorter
// vector is the prefix of a longer one rescaled, as with OpenAI's text-embedding-3 models.
func embedding(text string, dims int) []float32 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(text))
	seed := h.Sum64()
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	raw := make([]float64, dims)
	var norm float64
	for i := range raw {
		raw[i] = rng.NormFloat64()
		norm += raw[i] * raw[i]
	}
	norm = math.Sqrt(norm)
	v := make([]float32, dims)
	for i, x := range raw {
		v[i] = float32(x / norm)
	}
	return v
}
