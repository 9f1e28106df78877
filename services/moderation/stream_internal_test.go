package moderation

import (
	"testing"
)

// Screening a text in the pieces safeCut releases gives what screening it whole gives.
func FuzzSafeCutScreensLikeWhole(f *testing.F) {
	f.Add("Write to bob@example.com or pay with 4111 1111 1111 1111 today.", uint8(3))
	f.Add("key sk-abc123def456ghi789jkl012mno345 here", uint8(1))
	f.Add("-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----\n", uint8(7))
	f.Add("4111 1111 1111 1111", uint8(2))
	f.Add("-----BEGIN PRIVATE KEY-------END0", uint8(0)) // an END marker whose line is not complete
	rules := BuiltinProfiles()[ProfileDefault].Output
	f.Fuzz(func(t *testing.T, text string, size uint8) {
		if len(text) > maxHeldBack/2 {
			return
		}
		whole := Screen(rules, text)
		step := int(size%16) + 1
		var out, held string
		blocked := false
		for i := 0; i < len(text) && !blocked; i += step {
			held += text[i:min(i+step, len(text))]
			cut := len(held)
			if i+step < len(text) {
				cut = safeCut(held)
			}
			res := Screen(rules, held[:cut])
			blocked = res.Blocked
			out += res.Text
			held = held[cut:]
		}
		if whole.Blocked != blocked {
			t.Fatalf("blocked whole=%v streamed=%v for %q", whole.Blocked, blocked, text)
		}
		if !blocked && out != whole.Text {
			t.Fatalf("streamed %q, whole %q", out, whole.Text)
		}
	})
}
