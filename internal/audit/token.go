package audit

import (
	"encoding/base64"
	"encoding/json"
	"time"
)

const tokenPrefix = "a1:"

type tokenBody struct {
	T int64  `json:"t"` // Unix microseconds
	S string `json:"s"`
	Q int64  `json:"q"`
}

// EncodePageToken returns the opaque token of the page that starts after c. Stores share it
// so that tokens mean the same everywhere.
func EncodePageToken(c Cursor) string {
	b, _ := json.Marshal(tokenBody{T: c.Time.UnixMicro(), S: c.Service, Q: c.Sequence})
	return base64.RawURLEncoding.EncodeToString(append([]byte(tokenPrefix), b...))
}

// DecodePageToken returns the cursor a token from EncodePageToken starts after; ok is false
// for "". A token it cannot read gives ErrInvalidPageToken.
func DecodePageToken(token string) (c Cursor, ok bool, err error) {
	if token == "" {
		return Cursor{}, false, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(b) <= len(tokenPrefix) || string(b[:len(tokenPrefix)]) != tokenPrefix {
		return Cursor{}, false, ErrInvalidPageToken
	}
	var body tokenBody
	if err := json.Unmarshal(b[len(tokenPrefix):], &body); err != nil || body.S == "" || body.Q <= 0 {
		return Cursor{}, false, ErrInvalidPageToken
	}
	return Cursor{Time: time.UnixMicro(body.T).UTC(), Service: body.S, Sequence: body.Q}, true, nil
}
