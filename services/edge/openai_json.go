package edge

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// maxJSONDepth bounds the nesting of an OpenAI-dialect request body. A JSON Schema of tool
// parameters is the deepest thing a real request carries, and 64 levels leave it ample room.
const maxJSONDepth = 64

// forbiddenKeys are request keys that would pick an upstream, a vendor or a credential in
// other gateways and vendor SDKs. fmgate takes upstreams and credentials only from the
// registry, so a request carrying one is refused with 400 naming the key rather than having
// it ignored (the flaw behind several gateway SSRF and key-exfiltration CVEs). Compared
// case-insensitively, because encoding/json matches field names that way.
var forbiddenKeys = map[string]bool{
	"api_base": true, "base_url": true, "api_key": true, "api_version": true,
	"azure_endpoint": true, "azure_deployment": true, "custom_llm_provider": true,
	"aws_access_key_id": true, "aws_secret_access_key": true, "aws_session_token": true, "aws_region_name": true,
	"vertex_credentials": true, "vertex_project": true,
	"extra_headers": true, "extra_body": true, "headers": true,
	"credential": true, "credential_name": true, "credentials": true,
}

// freeFormPaths are the subtrees whose keys are the caller's own data, not parameters, and
// are therefore not searched for forbidden keys: a tool's JSON Schema may well have a
// property called "headers" or "api_key", and so may a response schema. Message content is
// the caller's text (its parts are still decoded strictly, so no unknown key passes there
// either). "*" stands for any array index.
var freeFormPaths = [][]string{
	{"tools", "*", "function", "parameters"},
	{"response_format", "json_schema", "schema"},
	{"messages", "*", "content"},
}

// requestError is a problem with an OpenAI-dialect request found before it reaches the
// gateway: always a 400, naming the parameter at fault.
type requestError struct {
	param   string
	code    string // OpenAI's error code, such as "unknown_parameter"; "" for null
	message string
}

func (e *requestError) Error() string { return e.message }

func badParam(param, code, format string, args ...any) *requestError {
	return &requestError{param: param, code: code, message: fmt.Sprintf(format, args...)}
}

// pathSegment is one step into a JSON document: an object key, or an array index.
type pathSegment struct {
	key   string
	index int // -1 for object keys
}

func formatPath(path []pathSegment) string {
	var b strings.Builder
	for _, s := range path {
		if s.index >= 0 {
			b.WriteString("[" + strconv.Itoa(s.index) + "]")
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(s.key)
	}
	return b.String()
}

// jsonScanner walks a JSON document once, without building it, checking its depth and its
// keys. It does not fully validate the document (a scalar such as "tru" passes); the strict
// decoder that runs after it does.
type jsonScanner struct {
	data []byte
	pos  int
	path []pathSegment
}

var errNotJSON = &requestError{message: "the request body is not valid JSON"}

// scanRequest checks that data nests at most maxJSONDepth deep and carries no forbidden key
// outside freeFormPaths.
func scanRequest(data []byte) error {
	s := &jsonScanner{data: data}
	if err := s.value(0, true); err != nil {
		return err
	}
	s.skipSpace()
	if s.pos != len(s.data) {
		return errNotJSON
	}
	return nil
}

func (s *jsonScanner) skipSpace() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

func (s *jsonScanner) value(depth int, checkKeys bool) error {
	s.skipSpace()
	if s.pos >= len(s.data) {
		return errNotJSON
	}
	switch s.data[s.pos] {
	case '{':
		if depth >= maxJSONDepth {
			return badParam(formatPath(s.path), "", "the request nests deeper than %d levels", maxJSONDepth)
		}
		return s.object(depth+1, checkKeys)
	case '[':
		if depth >= maxJSONDepth {
			return badParam(formatPath(s.path), "", "the request nests deeper than %d levels", maxJSONDepth)
		}
		return s.array(depth+1, checkKeys)
	case '"':
		_, err := s.str()
		return err
	default:
		start := s.pos
		for s.pos < len(s.data) && !strings.ContainsRune(",]} \t\r\n:{[\"", rune(s.data[s.pos])) {
			s.pos++
		}
		if s.pos == start {
			return errNotJSON
		}
		return nil
	}
}

func (s *jsonScanner) object(depth int, checkKeys bool) error {
	s.pos++ // '{'
	s.skipSpace()
	if s.pos < len(s.data) && s.data[s.pos] == '}' {
		s.pos++
		return nil
	}
	for {
		s.skipSpace()
		key, err := s.str()
		if err != nil {
			return err
		}
		if checkKeys && forbiddenKeys[strings.ToLower(key)] {
			param := formatPath(append(s.path, pathSegment{key: key, index: -1}))
			return badParam(param, "forbidden_parameter",
				"%s is not accepted: fmgate sends requests only to the endpoints and credentials of its registry", param)
		}
		s.skipSpace()
		if s.pos >= len(s.data) || s.data[s.pos] != ':' {
			return errNotJSON
		}
		s.pos++
		s.path = append(s.path, pathSegment{key: key, index: -1})
		err = s.value(depth, checkKeys && !s.freeForm())
		s.path = s.path[:len(s.path)-1]
		if err != nil {
			return err
		}
		s.skipSpace()
		if s.pos >= len(s.data) {
			return errNotJSON
		}
		switch s.data[s.pos] {
		case ',':
			s.pos++
		case '}':
			s.pos++
			return nil
		default:
			return errNotJSON
		}
	}
}

func (s *jsonScanner) array(depth int, checkKeys bool) error {
	s.pos++ // '['
	s.skipSpace()
	if s.pos < len(s.data) && s.data[s.pos] == ']' {
		s.pos++
		return nil
	}
	for i := 0; ; i++ {
		s.path = append(s.path, pathSegment{index: i})
		err := s.value(depth, checkKeys && !s.freeForm())
		s.path = s.path[:len(s.path)-1]
		if err != nil {
			return err
		}
		s.skipSpace()
		if s.pos >= len(s.data) {
			return errNotJSON
		}
		switch s.data[s.pos] {
		case ',':
			s.pos++
		case ']':
			s.pos++
			return nil
		default:
			return errNotJSON
		}
	}
}

// str consumes a string and returns its value, unescaped when it has escapes (so that
// "api\u005fbase" is recognised).
func (s *jsonScanner) str() (string, error) {
	if s.pos >= len(s.data) || s.data[s.pos] != '"' {
		return "", errNotJSON
	}
	start := s.pos
	s.pos++
	escaped := false
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case '\\':
			escaped = true
			s.pos += 2
			continue
		case '"':
			s.pos++
			raw := s.data[start:s.pos]
			if !escaped {
				return string(raw[1 : len(raw)-1]), nil
			}
			var v string
			if err := json.Unmarshal(raw, &v); err != nil {
				return "", errNotJSON
			}
			return v, nil
		}
		s.pos++
	}
	return "", errNotJSON
}

// freeForm reports whether the current path is one of freeFormPaths.
func (s *jsonScanner) freeForm() bool {
	for _, p := range freeFormPaths {
		if len(p) != len(s.path) {
			continue
		}
		match := true
		for i, seg := range s.path {
			if p[i] == "*" {
				match = seg.index >= 0
			} else {
				match = seg.index < 0 && seg.key == p[i]
			}
			if !match {
				break
			}
		}
		if match {
			return true
		}
	}
	return false
}

// decodeRequest checks body with scanRequest, then decodes it into v rejecting unknown
// fields, so that a parameter fmgate does not support is refused by name instead of being
// dropped silently.
func decodeRequest(body []byte, v any) error {
	if err := scanRequest(body); err != nil {
		return err
	}
	return decodeStrict(body, "", v)
}

// decodeStrict decodes one JSON value into v, rejecting unknown fields and trailing data;
// prefix names the value in errors ("" for the whole body).
func decodeStrict(data []byte, prefix string, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(prefix, err)
	}
	if _, err := dec.Token(); err == nil {
		return &requestError{param: prefix, message: "unexpected data after the JSON value"}
	}
	return nil
}

func jsonError(prefix string, err error) error {
	join := func(field string) string {
		switch {
		case prefix == "":
			return field
		case field == "":
			return prefix
		}
		return prefix + "." + field
	}
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &typeErr):
		param := join(typeErr.Field)
		return badParam(param, "invalid_type", "%s: expected %s, got %s", param, jsonKindName(typeErr.Type.Kind().String()), typeErr.Value)
	case errors.As(err, &syntaxErr):
		return &requestError{param: prefix, message: fmt.Sprintf("the request body is not valid JSON (at byte %d)", syntaxErr.Offset)}
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name, uerr := strconv.Unquote(strings.TrimPrefix(err.Error(), "json: unknown field "))
		if uerr != nil {
			name = strings.TrimPrefix(err.Error(), "json: unknown field ")
		}
		param := join(name)
		return badParam(param, "unknown_parameter", "unknown parameter: '%s' is not supported by fmgate", param)
	}
	return &requestError{param: prefix, message: "the request body is not valid JSON"}
}

// jsonKind names a Go kind the way a JSON user thinks of it.
func jsonKindName(kind string) string {
	switch {
	case strings.HasPrefix(kind, "int"), strings.HasPrefix(kind, "uint"), strings.HasPrefix(kind, "float"):
		return "a number"
	case kind == "string":
		return "a string"
	case kind == "bool":
		return "a boolean"
	case kind == "slice", kind == "array":
		return "an array"
	case kind == "struct", kind == "map":
		return "an object"
	}
	return kind
}
