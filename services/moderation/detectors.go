package moderation

import (
	"slices"
	"strings"
)

// Names of the built-in detectors.
const (
	DetectorEmail      = "pii.email"
	DetectorCreditCard = "pii.credit_card"
	DetectorSecret     = "secret.api_key"
)

func isDigit(c byte) bool { return '0' <= c && c <= '9' }
func isAlpha(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
func isAlnum(c byte) bool { return isDigit(c) || isAlpha(c) }

// isWord reports an ASCII word character (as in \w).
func isWord(c byte) bool { return isAlnum(c) || c == '_' }

// EmailDetector finds e-mail addresses such as "a.b+c@sub.example.co.uk": a local part of
// letters, digits and ._%+-, an "@", and a domain of at least two dot-separated labels whose
// last is a top-level domain of letters. It is a hand-written scanner that visits each byte
// at most twice, whatever the input. Internationalised addresses are not recognised.
type EmailDetector struct{}

func (EmailDetector) Name() string        { return DetectorEmail }
func (EmailDetector) Placeholder() string { return "[EMAIL]" }

func isLocal(c byte) bool {
	return isAlnum(c) || c == '.' || c == '_' || c == '%' || c == '+' || c == '-'
}

// Find implements Detector.
func (EmailDetector) Find(text string) []Span {
	var spans []Span
	floor := 0 // the end of the last match: a local part cannot reach back into it
	for from := 0; from < len(text); {
		i := strings.IndexByte(text[from:], '@')
		if i < 0 {
			break
		}
		at := from + i
		from = at + 1
		// '@' is not a local character, so this stops at the previous '@' at the latest.
		start := at
		for start > floor && isLocal(text[start-1]) {
			start--
		}
		for start < at && text[start] == '.' {
			start++
		}
		if start == at {
			continue
		}
		end := domainEnd(text, at+1)
		if end < 0 {
			continue
		}
		spans = append(spans, Span{start, end})
		floor, from = end, end
	}
	return spans
}

// domainEnd returns the end of the longest domain name starting at text[from:] that has at
// least two labels and ends with an alphabetic top-level domain, or -1. Labels hold letters,
// digits and inner hyphens, up to 63 bytes. It stops at the next '@' at the latest.
func domainEnd(text string, from int) int {
	end, labels := -1, 0
	for i := from; ; {
		start, alpha := i, true
		for i < len(text) && (isAlnum(text[i]) || text[i] == '-') {
			alpha = alpha && isAlpha(text[i])
			i++
		}
		n := i - start
		if n == 0 || n > 63 || text[start] == '-' || text[i-1] == '-' {
			return end
		}
		labels++
		if labels >= 2 && alpha && n >= 2 {
			end = i
		}
		if i+1 < len(text) && text[i] == '.' && isAlnum(text[i+1]) {
			i++
			continue
		}
		return end
	}
}

// CardDetector finds payment card numbers: 13 to 19 digits, either unbroken or in groups
// separated by single spaces or dashes (the first group of four digits, the others of three
// to six, one separator throughout, as cards are printed), beginning with a digit a card
// network issues (2 to 6) and valid by the Luhn checksum. Numbers glued to letters, or after
// a '+' (phone numbers), are not cards. Dates, phone numbers and other numbers fail the
// grouping, the length or the checksum.
type CardDetector struct{}

func (CardDetector) Name() string        { return DetectorCreditCard }
func (CardDetector) Placeholder() string { return "[CARD]" }

const maxGroups = 19 // no run that could hold a card has more groups than digits

type digitGroup struct{ start, end int }

// Find implements Detector.
func (CardDetector) Find(text string) []Span {
	var spans []Span
	var groups [maxGroups + 1]digitGroup
	var seps [maxGroups + 1]byte
	for i := 0; i < len(text); {
		if !isDigit(text[i]) {
			i++
			continue
		}
		// A run: digit groups joined by single separators. Parse it in windows of
		// maxGroups groups; a longer run is not a single card but may hold several.
		leftOK := i == 0 || !(isWord(text[i-1]) || text[i-1] == '+')
		n := 0
		for {
			s := i
			for i < len(text) && isDigit(text[i]) {
				i++
			}
			groups[n] = digitGroup{s, i}
			n++
			if n == len(groups) || i+1 >= len(text) || (text[i] != ' ' && text[i] != '-') || !isDigit(text[i+1]) {
				break
			}
			seps[n-1] = text[i]
			i++
		}
		rightOK := i == len(text) || !isWord(text[i])
		spans = findCards(text, groups[:n], seps[:n], leftOK, rightOK, spans)
	}
	return spans
}

// findCards appends the cards found in one run of digit groups.
func findCards(text string, groups []digitGroup, seps []byte, leftOK, rightOK bool, spans []Span) []Span {
	n := len(groups)
	usable := func(g int) bool { return (g > 0 || leftOK) && (g < n-1 || rightOK) }
	for a := 0; a < n; {
		if !usable(a) {
			a++
			continue
		}
		if l := groups[a].end - groups[a].start; l >= 13 && l <= 19 {
			if validCard(text, groups[a:a+1]) {
				spans = append(spans, Span{groups[a].start, groups[a].end})
			}
			a++
			continue
		}
		best := -1
		if groups[a].end-groups[a].start == 4 {
			total := 4
			for b := a + 1; b < n && usable(b) && seps[b-1] == seps[a]; b++ {
				l := groups[b].end - groups[b].start
				total += l
				if l < 3 || l > 6 || total > 19 {
					break
				}
				if total >= 13 && validCard(text, groups[a:b+1]) {
					best = b
				}
			}
		}
		if best < 0 {
			a++
			continue
		}
		spans = append(spans, Span{groups[a].start, groups[best].end})
		a = best + 1
	}
	return spans
}

// validCard reports whether the digits of groups form a card number: 13 to 19 digits, a
// network's leading digit, and a valid Luhn checksum.
func validCard(text string, groups []digitGroup) bool {
	var digits [19]byte
	n := 0
	for _, g := range groups {
		for i := g.start; i < g.end; i++ {
			if n == len(digits) {
				return false
			}
			digits[n] = text[i] - '0'
			n++
		}
	}
	if n < 13 || digits[0] < 2 || digits[0] > 6 {
		return false
	}
	return luhn(digits[:n])
}

// luhn reports whether digits (values 0-9) pass the Luhn checksum.
func luhn(digits []byte) bool {
	sum := 0
	for i := range digits {
		d := int(digits[len(digits)-1-i])
		if i%2 == 1 {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	return sum%10 == 0
}

// SecretDetector finds credentials in common shapes: OpenAI-style "sk-" keys, AWS access
// key ids (AKIA/ASIA and 16 upper-case letters or digits), fmgate "fmg_" keys, GitHub and
// Slack tokens, Google API keys, and PEM private keys (from the BEGIN line to the END line,
// or to the end of the text when the END line is missing, so the key material is found too).
type SecretDetector struct{}

func (SecretDetector) Name() string        { return DetectorSecret }
func (SecretDetector) Placeholder() string { return "[SECRET]" }

type charset func(byte) bool

func tokenChar(c byte) bool { return isWord(c) || c == '-' }
func upperOrDigit(c byte) bool {
	return isDigit(c) || 'A' <= c && c <= 'Z'
}
func alnumHyphen(c byte) bool { return isAlnum(c) || c == '-' }

// tokenShape is one credential shape: a literal prefix, then between minLen and maxLen
// (0: no limit) bytes of body. A token glued to the end of a word is not one.
type tokenShape struct {
	prefix         string
	body           charset
	minLen, maxLen int
	needDigit      bool // the body must hold a digit (it tells "sk-" keys from prose)
}

var tokenShapes = []tokenShape{
	{prefix: "sk-", body: tokenChar, minLen: 20, needDigit: true},
	{prefix: "AKIA", body: upperOrDigit, minLen: 16, maxLen: 16},
	{prefix: "ASIA", body: upperOrDigit, minLen: 16, maxLen: 16},
	{prefix: "fmg_", body: tokenChar, minLen: 32},
	{prefix: "ghp_", body: isAlnum, minLen: 36},
	{prefix: "gho_", body: isAlnum, minLen: 36},
	{prefix: "ghu_", body: isAlnum, minLen: 36},
	{prefix: "ghs_", body: isAlnum, minLen: 36},
	{prefix: "ghr_", body: isAlnum, minLen: 36},
	{prefix: "github_pat_", body: isWord, minLen: 22},
	{prefix: "xoxb-", body: alnumHyphen, minLen: 10, needDigit: true},
	{prefix: "xoxp-", body: alnumHyphen, minLen: 10, needDigit: true},
	{prefix: "xoxa-", body: alnumHyphen, minLen: 10, needDigit: true},
	{prefix: "AIza", body: tokenChar, minLen: 35},
}

// Find implements Detector.
func (SecretDetector) Find(text string) []Span {
	var spans []Span
	for _, sh := range tokenShapes {
		for from := 0; from < len(text); {
			i := strings.Index(text[from:], sh.prefix)
			if i < 0 {
				break
			}
			start := from + i
			end := start + len(sh.prefix)
			from = end
			if start > 0 && tokenChar(text[start-1]) {
				continue
			}
			digit := false
			for end < len(text) && sh.body(text[end]) {
				digit = digit || isDigit(text[end])
				end++
			}
			n := end - start - len(sh.prefix)
			if n < sh.minLen || sh.maxLen > 0 && n > sh.maxLen || sh.needDigit && !digit {
				continue
			}
			if sh.maxLen > 0 && end < len(text) && isAlnum(text[end]) {
				continue
			}
			spans = append(spans, Span{start, end})
			from = end
		}
	}
	spans = appendPEM(text, spans)
	return mergeSpans(spans)
}

const (
	pemBegin = "-----BEGIN "
	pemEnd   = "-----END "
	pemKey   = "PRIVATE KEY-----"
	// maxPEMLabel bounds the label between "-----BEGIN " and "PRIVATE KEY-----"
	// ("ENCRYPTED ", "OPENSSH ", "RSA "...).
	maxPEMLabel = 24
)

// appendPEM appends the spans of PEM private keys.
func appendPEM(text string, spans []Span) []Span {
	for from := 0; from < len(text); {
		i := strings.Index(text[from:], pemBegin)
		if i < 0 {
			break
		}
		start := from + i
		from = start + len(pemBegin)
		label := text[from:min(len(text), from+maxPEMLabel+len(pemKey))]
		k := strings.Index(label, pemKey)
		if k < 0 || strings.ContainsAny(label[:k], "\r\n-") {
			continue
		}
		end := len(text)
		body := from + k + len(pemKey)
		if j := strings.Index(text[body:], pemEnd); j >= 0 {
			if e := strings.Index(text[body+j:], pemKey); e >= 0 {
				end = body + j + e + len(pemKey)
			}
		}
		spans = append(spans, Span{start, end})
		from = end
	}
	return spans
}

// mergeSpans sorts spans and merges those that overlap.
func mergeSpans(spans []Span) []Span {
	if len(spans) < 2 {
		return spans
	}
	slices.SortFunc(spans, func(a, b Span) int { return a.Start - b.Start })
	out := spans[:1]
	for _, s := range spans[1:] {
		last := &out[len(out)-1]
		if s.Start < last.End {
			last.End = max(last.End, s.End)
			continue
		}
		out = append(out, s)
	}
	return out
}
