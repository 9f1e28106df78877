package moderation

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// found returns the texts d finds in text.
func found(d Detector, text string) []string {
	var out []string
	for _, s := range d.Find(text) {
		out = append(out, text[s.Start:s.End])
	}
	return out
}

type detectorCase struct {
	name string
	text string
	want []string // nil: nothing found
}

func runDetectorCases(t *testing.T, d Detector, tests []detectorCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, found(d, tt.text))
			checkSpans(t, d, tt.text)
		})
	}
}

func TestEmailDetector(t *testing.T) {
	runDetectorCases(t, EmailDetector{}, []detectorCase{
		{"plain", "user@example.com", []string{"user@example.com"}},
		{"plus, dots, subdomains", "a.b+c@sub.example.co.uk", []string{"a.b+c@sub.example.co.uk"}},
		{"in a sentence", "Write to Jane.Doe@corp.example.org, or call.", []string{"Jane.Doe@corp.example.org"}},
		{"trailing period", "mail me at bob@example.com.", []string{"bob@example.com"}},
		{"in brackets", "<alice_99@mail.example.io>", []string{"alice_99@mail.example.io"}},
		{"mailto", "mailto:ops%team@example.net", []string{"ops%team@example.net"}},
		{"hyphenated domain", "x@my-host.example.com", []string{"x@my-host.example.com"}},
		{"several", "a@b.cd e@f.gh", []string{"a@b.cd", "e@f.gh"}},
		{"leading dots dropped", "...john@example.com", []string{"john@example.com"}},
		{"numeric tail dropped", "user@example.com.123", []string{"user@example.com"}},
		{"spaces around @", "not an email @ foo", nil},
		{"no local part", "@example.com", nil},
		{"no domain", "user@", nil},
		{"single label", "user@localhost", nil},
		{"numeric tld", "root@10.0.0.1", nil},
		{"one-letter tld", "user@example.c", nil},
		{"hyphen edge", "user@-example.com", nil},
		{"handle", "follow @fmgate on social", nil},
		{"double @", "a@@b.com", nil},
		{"empty", "", nil},
	})
}

func TestCardDetector(t *testing.T) {
	runDetectorCases(t, CardDetector{}, []detectorCase{
		{"visa", "4111111111111111", []string{"4111111111111111"}},
		{"visa spaced", "card 4111 1111 1111 1111 exp", []string{"4111 1111 1111 1111"}},
		{"mastercard dashed", "5555-5555-5555-4444.", []string{"5555-5555-5555-4444"}},
		{"amex 4-6-5", "amex 3782 822463 10005", []string{"3782 822463 10005"}},
		{"visa 13 digits", "4222222222222", []string{"4222222222222"}},
		{"discover 19 digits", "6011 1111 1111 1111 110", []string{"6011 1111 1111 1111 110"}},
		{"mastercard 2-series", "2223003122003222", []string{"2223003122003222"}},
		{"two cards", "4111111111111111 5555555555554444", []string{"4111111111111111", "5555555555554444"}},
		{"two grouped cards", "4111 1111 1111 1111, 5555 5555 5555 4444", []string{"4111 1111 1111 1111", "5555 5555 5555 4444"}},
		{"luhn invalid", "4111111111111112", nil},
		{"luhn invalid spaced", "4111 1111 1111 1112", nil},
		{"too short", "411111111111", nil},
		{"too long", "41111111111111111111", nil},
		{"not a network", "7992739871312345674", nil},
		{"glued to letters", "id4111111111111111", nil},
		{"glued after", "4111111111111111x", nil},
		{"phone", "call +1 555-123-4567 or 020 7946 0958", nil},
		{"e164 phone luhn-valid", "+441234567890126", nil},
		{"date", "on 2024-01-05 at 10:30", nil},
		{"dates", "from 2024-01-05 2024-02-06 to 2024-03-07", nil},
		{"order and zip", "order 12345678 shipped to 94107", nil},
		{"mixed separators", "4111-1111 1111-1111", nil},
		{"double space", "4111  1111  1111  1111", nil},
		{"uuid digits", "123e4567-e89b-12d3-a456-426614174000", nil},
		{"version", "v4.111.1111.1111.1111", nil},
	})
}

func TestCardDetectorRandomNumbers(t *testing.T) {
	// One random number in ten passes Luhn, so the detector must also require a card's
	// shape. The digits of each of these pass Luhn, yet none is a card.
	for _, text := range []string{
		"0000000000000000",                // no network starts with 0
		"1234567812345670",                // nor with 1
		"9999 9999 9999 9995",             // nor with 9
		"12 34 56 78 12 34 56 70",         // groups of two
		"4 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1", // single digits
	} {
		var digits []byte
		for _, c := range []byte(text) {
			if isDigit(c) {
				digits = append(digits, c-'0')
			}
		}
		require.True(t, luhn(digits), text)
		assert.Empty(t, found(CardDetector{}, text), text)
	}
}

func TestLuhn(t *testing.T) {
	digits := func(s string) []byte {
		b := []byte(s)
		for i := range b {
			b[i] -= '0'
		}
		return b
	}
	assert.True(t, luhn(digits("79927398713")))
	assert.False(t, luhn(digits("79927398710")))
	assert.True(t, luhn(digits("4111111111111111")))
	assert.True(t, luhn(digits("0")))
}

func TestSecretDetector(t *testing.T) {
	fmgKey := "fmg_" + strings.Repeat("Ab1-_", 9)[:43]
	pem := "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\nabc\n-----END RSA PRIVATE KEY-----"
	runDetectorCases(t, SecretDetector{}, []detectorCase{
		{"openai", "key=sk-proj-AbC123dEf456GhI789jKl0", []string{"sk-proj-AbC123dEf456GhI789jKl0"}},
		{"anthropic", "sk-ant-api03-abcDEF123456ghiJKL789-xyz", []string{"sk-ant-api03-abcDEF123456ghiJKL789-xyz"}},
		{"aws access key id", "aws_access_key_id = AKIAIOSFODNN7EXAMPLE\n", []string{"AKIAIOSFODNN7EXAMPLE"}},
		{"aws session key id", "ASIAY34FZKBOKMUTVV7A", []string{"ASIAY34FZKBOKMUTVV7A"}},
		{"fmgate key", "Authorization: Bearer " + fmgKey, []string{fmgKey}},
		{"github token", "ghp_" + strings.Repeat("a1B2", 9), []string{"ghp_" + strings.Repeat("a1B2", 9)}},
		{"slack token", "xoxb-123456789012-abcdefghij", []string{"xoxb-123456789012-abcdefghij"}},
		{"google api key", "AIza" + strings.Repeat("Sy9_-", 7), []string{"AIza" + strings.Repeat("Sy9_-", 7)}},
		{"pem block", "here:\n" + pem + "\nthanks", []string{pem}},
		{"pem without end", "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg", []string{"-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg"}},
		{"openssh pem", "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Bl\n-----END OPENSSH PRIVATE KEY-----",
			[]string{"-----BEGIN OPENSSH PRIVATE KEY-----\nb3Bl\n-----END OPENSSH PRIVATE KEY-----"}},
		{"public key", "-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----", nil},
		{"certificate", "-----BEGIN CERTIFICATE-----\nMIIB", nil},
		{"short sk", "sk-12345", nil},
		{"sk prose", "sk-this-is-just-some-long-hyphenated-prose", nil},
		{"sk inside a word", "task-1234567890abcdefghij1234", nil},
		{"akia too long", "AKIAIOSFODNN7EXAMPLEX", nil},
		{"akia lower case", "AKIAiosfodnn7example", nil},
		{"akia glued", "XAKIAIOSFODNN7EXAMPLE", nil},
		{"fmg short", "fmg_short", nil},
		{"plain prose", "Ask the team for a key; do not paste it here.", nil},
	})
}

// checkSpans asserts the Detector contract: spans sorted, not overlapping, not empty and
// within text.
func checkSpans(t *testing.T, d Detector, text string) {
	t.Helper()
	prev := 0
	for _, s := range d.Find(text) {
		if !assert.True(t, s.Start >= prev && s.Start < s.End && s.End <= len(text),
			"%s: bad span %+v after %d in %q", d.Name(), s, prev, text) {
			return
		}
		prev = s.End
	}
}
