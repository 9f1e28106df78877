// Package moderation screens prompts and answers: detectors find sensitive text (e-mail
// addresses, payment card numbers, credentials) and a profile says, per detector, whether to
// mask it, block the exchange or only log it.
package moderation

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Span is the byte range [Start, End) of text that a detector found.
type Span struct {
	Start, End int
}

// Detector finds one kind of sensitive text. Find returns spans sorted by Start, not
// overlapping and within text, in time linear in len(text) (prompts are untrusted input).
// Detectors are safe for concurrent use.
type Detector interface {
	// Name identifies the detector in profiles and findings, such as "pii.email".
	Name() string
	Find(text string) []Span
}

// Placeholder is implemented by detectors that name what they mask, such as "[EMAIL]".
// Others are masked with DefaultPlaceholder.
type Placeholder interface {
	Placeholder() string
}

// DefaultPlaceholder replaces what a detector without a Placeholder finds.
const DefaultPlaceholder = "[REDACTED]"

func placeholder(d Detector) string {
	if p, ok := d.(Placeholder); ok {
		return p.Placeholder()
	}
	return DefaultPlaceholder
}

// Action is what a rule does with what its detector finds.
type Action int

const (
	// ActionLog records a finding and changes nothing.
	ActionLog Action = iota + 1
	// ActionMask replaces each span with the detector's placeholder.
	ActionMask
	// ActionBlock stops the exchange.
	ActionBlock
)

func (a Action) String() string {
	switch a {
	case ActionLog:
		return "log"
	case ActionMask:
		return "mask"
	case ActionBlock:
		return "block"
	}
	return fmt.Sprintf("Action(%d)", int(a))
}

// Rule applies Action to what Detector finds.
type Rule struct {
	Detector Detector
	Action   Action
}

// Profile is a named set of rules for prompts (Input) and for answers (Output).
type Profile struct {
	Name   string
	Input  []Rule
	Output []Rule
}

// Validate reports every problem with p at once.
func (p Profile) Validate() error {
	var errs []error
	if p.Name == "" {
		errs = append(errs, errors.New("profile name is required"))
	}
	for _, dir := range []struct {
		name  string
		rules []Rule
	}{{"input", p.Input}, {"output", p.Output}} {
		seen := map[string]bool{}
		for i, r := range dir.rules {
			switch {
			case r.Detector == nil:
				errs = append(errs, fmt.Errorf("profile %s: %s rule %d: detector is required", p.Name, dir.name, i))
				continue
			case r.Action < ActionLog || r.Action > ActionBlock:
				errs = append(errs, fmt.Errorf("profile %s: %s rule %d: unknown action %v", p.Name, dir.name, i, r.Action))
			case seen[r.Detector.Name()]:
				errs = append(errs, fmt.Errorf("profile %s: %s: detector %s appears twice", p.Name, dir.name, r.Detector.Name()))
			}
			seen[r.Detector.Name()] = true
		}
	}
	return errors.Join(errs...)
}

// Names of the built-in profiles.
const (
	// ProfileDefault masks e-mail addresses and card numbers and blocks credentials.
	ProfileDefault = "default"
	// ProfileStrict blocks whatever any detector finds.
	ProfileStrict = "strict"
	// ProfilePermissive only logs what detectors find.
	ProfilePermissive = "permissive"
)

// BuiltinProfiles returns the profiles every deployment has, keyed by name. Each call
// returns a new map, which the caller may extend with its own profiles.
func BuiltinProfiles() map[string]Profile {
	email, card, secret := EmailDetector{}, CardDetector{}, SecretDetector{}
	all := func(a Action) []Rule {
		return []Rule{{email, a}, {card, a}, {secret, a}}
	}
	def := []Rule{{email, ActionMask}, {card, ActionMask}, {secret, ActionBlock}}
	return map[string]Profile{
		ProfileDefault:    {Name: ProfileDefault, Input: def, Output: slices.Clone(def)},
		ProfileStrict:     {Name: ProfileStrict, Input: all(ActionBlock), Output: all(ActionBlock)},
		ProfilePermissive: {Name: ProfilePermissive, Input: all(ActionLog), Output: all(ActionLog)},
	}
}

// Hit counts what one rule's detector found in a text.
type Hit struct {
	Detector string
	Action   Action
	Count    int
}

// Result is the outcome of screening one text.
type Result struct {
	// Text is the screened text: the input with every masked span replaced.
	Text string
	// Modified reports that something was masked.
	Modified bool
	// Blocked reports that a blocking rule found something.
	Blocked bool
	// Hits has one entry per rule that found something, in rule order. It never carries
	// the text found.
	Hits []Hit
}

// maxPasses bounds the masking passes of Screen. Placeholders contain nothing a detector
// finds, so each pass after the first finds only text that earlier masking joined together
// (such as digits that became a card number once a neighbouring address was masked), and
// every pass consumes original characters; one or two passes are the norm.
const maxPasses = 8

// Screen applies rules to text. Every detector runs on the original text; what masking rules
// found is masked, and masking repeats until no masking or blocking rule finds anything in
// the result, so the returned Text never contains a span that a masking rule detects. If that
// does not settle within maxPasses, the text is reported Blocked: moderation fails closed.
func Screen(rules []Rule, text string) Result {
	res := Result{Text: text}
	var counts [8]int
	count := counts[:0]
	if len(rules) > len(counts) {
		count = make([]int, 0, len(rules))
	}
	count = count[:len(rules)]

	var masks []labeledSpan
	for i, r := range rules {
		spans := r.Detector.Find(text)
		count[i] = len(spans)
		if len(spans) == 0 {
			continue
		}
		switch r.Action {
		case ActionBlock:
			res.Blocked = true
		case ActionMask:
			masks = appendLabeled(masks, spans, placeholder(r.Detector))
		}
	}
	for pass := 1; len(masks) > 0; pass++ {
		if pass > maxPasses {
			res.Blocked = true
			break
		}
		res.Text = mask(res.Text, masks)
		res.Modified = true
		masks = masks[:0]
		for i, r := range rules {
			if r.Action == ActionLog {
				continue
			}
			spans := r.Detector.Find(res.Text)
			if len(spans) == 0 {
				continue
			}
			if r.Action == ActionBlock {
				res.Blocked = true
				count[i] = max(count[i], len(spans))
				continue
			}
			count[i] += len(spans)
			masks = appendLabeled(masks, spans, placeholder(r.Detector))
		}
	}
	for i, r := range rules {
		if count[i] > 0 {
			res.Hits = append(res.Hits, Hit{Detector: r.Detector.Name(), Action: r.Action, Count: count[i]})
		}
	}
	return res
}

type labeledSpan struct {
	Span
	placeholder string
}

func appendLabeled(dst []labeledSpan, spans []Span, placeholder string) []labeledSpan {
	for _, s := range spans {
		dst = append(dst, labeledSpan{s, placeholder})
	}
	return dst
}

// mask replaces each span of text with its placeholder. Overlapping spans (from different
// detectors) are masked as one, with the placeholder of the one that starts first. Spans
// outside text are clipped. mask sorts spans in place.
func mask(text string, spans []labeledSpan) string {
	slices.SortFunc(spans, func(a, b labeledSpan) int {
		return cmp.Or(cmp.Compare(a.Start, b.Start), cmp.Compare(b.End, a.End))
	})
	var b strings.Builder
	b.Grow(len(text))
	pos := 0
	for i := 0; i < len(spans); {
		start, end, ph := max(spans[i].Start, pos), min(spans[i].End, len(text)), spans[i].placeholder
		i++
		if start >= end {
			continue
		}
		for i < len(spans) && spans[i].Start < end {
			end = max(end, min(spans[i].End, len(text)))
			i++
		}
		b.WriteString(text[pos:start])
		b.WriteString(ph)
		pos = end
	}
	b.WriteString(text[pos:])
	return b.String()
}

// Mask replaces each span of text with placeholder, overlapping spans as one, and clips
// spans to text. It is Screen's masking step, for callers that run detectors themselves.
func Mask(text string, spans []Span, placeholder string) string {
	return mask(text, appendLabeled(nil, spans, placeholder))
}
