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
// the space that follows it), so the chunks concatenate to the non-streamed content.
package simulator

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
	"unicode"
)

// DefaultModels are the models a zero Config lists.
var DefaultModels = []string{"demo"}

// MaxBodyBytes bounds a request body; larger bodies get 413.
const MaxBodyBytes = 4 << 20

// Config configures a Simulator. The zero value serves DefaultModels without authentication,
// latency or faults.
type Config struct {
	// APIKey, when set, must be presented by every request as the vendor expects it
	// (OpenAI: "Authorization: Bearer <APIKey>"); other requests get 401.
	APIKey string
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
