package simulator_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/fmgate/fmgate/internal/simulator"
)

// BenchmarkChatCompletion measures the handler alone, without a network.
func BenchmarkChatCompletion(b *testing.B) {
	for name, body := range map[string]string{
		"plain":  `{"model":"demo","messages":[{"role":"user","content":"a short question for the benchmark"}]}`,
		"stream": `{"model":"demo","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"a short question for the benchmark"}]}`,
	} {
		b.Run(name, func(b *testing.B) {
			sim := simulator.New(simulator.Config{})
			b.ReportAllocs()
			for b.Loop() {
				rec := httptest.NewRecorder()
				sim.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/chat/completions", strings.NewReader(body)))
				if rec.Code != http.StatusOK {
					b.Fatal(rec.Code)
				}
			}
		})
	}
}
