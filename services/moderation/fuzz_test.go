package moderation

import (
	"strings"
	"testing"
)

var fuzzSeeds = []string{
	"",
	"user@example.com",
	"a.b+c@sub.example.co.uk",
	"not an email @ foo",
	"a@@b.com @@@ x@y.zz.",
	"4111 1111 1111 1111",
	"4111-1111-1111-1111 5555555555554444 3782 822463 10005",
	"+1 555-123-4567 on 2024-01-05",
	"4111 1111 1111 1111 1111x@example.com",
	"sk-proj-AbC123dEf456GhI789jKl0 AKIAIOSFODNN7EXAMPLE",
	"fmg_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
	"-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----",
	"-----BEGIN PRIVATE KEY-----",
	strings.Repeat("a@", 100),
	strings.Repeat("4111 ", 40),
	"é@ü.com №4111111111111111 \x00\xff",
}

// fuzzDetector checks the Detector contract on any input: no panic, spans sorted, not
// overlapping, not empty and within text, and the same answer twice.
func fuzzDetector(f *testing.F, d Detector, check func(t *testing.T, match string)) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		spans := d.Find(text)
		prev := 0
		for _, s := range spans {
			if s.Start < prev || s.Start >= s.End || s.End > len(text) {
				t.Fatalf("%s: bad span %+v after %d in %q", d.Name(), s, prev, text)
			}
			prev = s.End
			if check != nil {
				check(t, text[s.Start:s.End])
			}
		}
		if again := d.Find(text); len(again) != len(spans) {
			t.Fatalf("%s: %d spans, then %d", d.Name(), len(spans), len(again))
		}
	})
}

func FuzzEmailDetector(f *testing.F) {
	fuzzDetector(f, EmailDetector{}, func(t *testing.T, m string) {
		if strings.Count(m, "@") != 1 {
			t.Fatalf("match %q has not exactly one @", m)
		}
	})
}

func FuzzCardDetector(f *testing.F) {
	fuzzDetector(f, CardDetector{}, func(t *testing.T, m string) {
		var digits []byte
		for i := 0; i < len(m); i++ {
			switch c := m[i]; {
			case isDigit(c):
				digits = append(digits, c-'0')
			case c != ' ' && c != '-':
				t.Fatalf("match %q has %q", m, c)
			}
		}
		if len(digits) < 13 || len(digits) > 19 || !luhn(digits) {
			t.Fatalf("match %q is not a card number", m)
		}
	})
}

func FuzzSecretDetector(f *testing.F) {
	fuzzDetector(f, SecretDetector{}, nil)
}

// FuzzMask screens any text with every detector masking, and checks that no detector finds
// anything in the result and that it is never blocked (masking always settles).
func FuzzMask(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	detectors := []Detector{EmailDetector{}, CardDetector{}, SecretDetector{}}
	rules := []Rule{{detectors[0], ActionMask}, {detectors[1], ActionMask}, {detectors[2], ActionMask}}
	f.Fuzz(func(t *testing.T, text string) {
		res := Screen(rules, text)
		if res.Blocked {
			t.Fatalf("masking did not settle on %q", text)
		}
		for _, d := range detectors {
			if spans := d.Find(res.Text); len(spans) > 0 {
				s := spans[0]
				t.Fatalf("%s finds %q in masked %q (from %q)", d.Name(), res.Text[s.Start:s.End], res.Text, text)
			}
		}
		if res.Modified != (res.Text != text) && res.Modified == false {
			t.Fatalf("text changed without Modified")
		}
		if len(res.Hits) == 0 && res.Text != text {
			t.Fatalf("text changed with no hits")
		}
	})
}
