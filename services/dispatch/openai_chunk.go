package dispatch

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"unicode/utf8"
)

// decodeOpenAIChunk fills c from one chat.completion.chunk event, as json.Unmarshal(data, c)
// would: the same fields, null leaving a field empty, keys matched case-insensitively, the
// last of duplicate keys winning, and an error for anything json.Unmarshal refuses (malformed
// JSON, a value of the wrong type, a non-integer count). c.Error aliases data.
//
// Why not json.Unmarshal: a gateway decodes every chunk of every streamed answer, and the
// reflection-driven decoder was the largest single cost of a stream (about 12% of the
// process's CPU in BenchmarkClosedLoopStream, 12 allocations a chunk). This walks the
// document once after json.Valid has checked it, and allocates only the strings it keeps
// (BenchmarkOpenAIChunkDecode).
func decodeOpenAIChunk(data []byte, c *openAIChunk) error {
	if !json.Valid(data) {
		return errMalformedJSON
	}
	w := jsonWalker{b: data}
	return w.object(func(key []byte) error {
		var err error
		switch {
		case keyIs(key, "model"):
			c.Model, err = w.str()
		case keyIs(key, "choices"):
			c.Choices = c.Choices[:0]
			err = w.array(func() error {
				c.Choices = append(c.Choices, openAIChunkChoice{})
				return w.chunkChoice(&c.Choices[len(c.Choices)-1])
			})
			switch {
			case w.wasNull:
				c.Choices = nil
			case c.Choices == nil:
				c.Choices = []openAIChunkChoice{}
			}
		case keyIs(key, "usage"):
			if w.null() {
				c.Usage = nil
				return nil
			}
			if c.Usage == nil {
				c.Usage = &openAIUsage{}
			}
			u := c.Usage
			err = w.object(func(key []byte) error {
				var err error
				switch {
				case keyIs(key, "prompt_tokens"):
					err = w.int64(&u.PromptTokens)
				case keyIs(key, "completion_tokens"):
					err = w.int64(&u.CompletionTokens)
				case keyIs(key, "total_tokens"):
					err = w.int64(&u.TotalTokens)
				default:
					w.skip()
				}
				return err
			})
		case keyIs(key, "error"):
			// json.RawMessage takes any value, null included.
			c.Error = w.value()
		default:
			w.skip()
		}
		return err
	})
}

func (w *jsonWalker) chunkChoice(ch *openAIChunkChoice) error {
	return w.object(func(key []byte) error {
		var err error
		switch {
		case keyIs(key, "delta"):
			d := &ch.Delta
			err = w.object(func(key []byte) error {
				var err error
				switch {
				case keyIs(key, "content"):
					d.Content, err = w.str()
				case keyIs(key, "refusal"):
					d.Refusal, err = w.str()
				case keyIs(key, "tool_calls"):
					d.ToolCalls = d.ToolCalls[:0]
					err = w.array(func() error {
						d.ToolCalls = append(d.ToolCalls, openAIChunkToolCall{})
						return w.chunkToolCall(&d.ToolCalls[len(d.ToolCalls)-1])
					})
					switch {
					case w.wasNull:
						d.ToolCalls = nil
					case d.ToolCalls == nil:
						d.ToolCalls = []openAIChunkToolCall{}
					}
				default:
					w.skip()
				}
				return err
			})
		case keyIs(key, "finish_reason"):
			ch.FinishReason, err = w.str()
		default:
			w.skip()
		}
		return err
	})
}

func (w *jsonWalker) chunkToolCall(tc *openAIChunkToolCall) error {
	return w.object(func(key []byte) error {
		var err error
		switch {
		case keyIs(key, "index"):
			err = w.int64(&tc.Index)
		case keyIs(key, "id"):
			tc.ID, err = w.str()
		case keyIs(key, "type"):
			tc.Type, err = w.str()
		case keyIs(key, "function"):
			err = w.object(func(key []byte) error {
				var err error
				switch {
				case keyIs(key, "name"):
					tc.Function.Name, err = w.str()
				case keyIs(key, "arguments"):
					tc.Function.Arguments, err = w.str()
				default:
					w.skip()
				}
				return err
			})
		default:
			w.skip()
		}
		return err
	})
}

var (
	errMalformedJSON = errors.New("malformed JSON")
	errJSONType      = errors.New("JSON value of the wrong type")
)

// jsonWalker reads a JSON document that json.Valid accepted, one value at a time. Because the
// document is valid, it checks only what validity leaves open: the type of each value.
type jsonWalker struct {
	b []byte
	i int
	// wasNull reports whether the last object or array read was null.
	wasNull bool
}

func (w *jsonWalker) space() {
	for w.i < len(w.b) {
		switch w.b[w.i] {
		case ' ', '\t', '\n', '\r':
			w.i++
		default:
			return
		}
	}
}

// null consumes a null and reports whether there was one.
func (w *jsonWalker) null() bool {
	w.space()
	if w.i < len(w.b) && w.b[w.i] == 'n' {
		w.i += len("null")
		return true
	}
	return false
}

// object calls member for each member of an object, with the member's key (raw, unquoted);
// member must consume the value. A null is an object without members.
func (w *jsonWalker) object(member func(key []byte) error) error {
	if w.null() {
		w.wasNull = true
		return nil
	}
	if w.b[w.i] != '{' {
		w.skip()
		return errJSONType
	}
	w.i++
	for {
		w.space()
		switch w.b[w.i] {
		case '}':
			w.i++
			w.wasNull = false
			return nil
		case ',':
			w.i++
			w.space()
		}
		key := w.value() // a string: the document is valid
		w.space()
		w.i++ // ':'
		if err := member(key[1 : len(key)-1]); err != nil {
			return err
		}
	}
}

// array calls elem for each element of an array; elem must consume the element. A null is an
// array without elements.
func (w *jsonWalker) array(elem func() error) error {
	if w.null() {
		w.wasNull = true
		return nil
	}
	if w.b[w.i] != '[' {
		w.skip()
		return errJSONType
	}
	w.i++
	for {
		w.space()
		switch w.b[w.i] {
		case ']':
			w.i++
			w.wasNull = false
			return nil
		case ',':
			w.i++
		}
		if err := elem(); err != nil {
			return err
		}
	}
}

// str reads a string; null is "".
func (w *jsonWalker) str() (string, error) {
	if w.null() {
		return "", nil
	}
	if w.b[w.i] != '"' {
		w.skip()
		return "", errJSONType
	}
	raw := w.value()
	inner := raw[1 : len(raw)-1]
	if bytes.IndexByte(inner, '\\') < 0 && utf8.Valid(inner) {
		return string(inner), nil
	}
	// Escapes and invalid UTF-8 (replaced by U+FFFD) are rare: json.Unmarshal's rules apply.
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", err
	}
	return s, nil
}

// int64 reads an integer into v; null leaves v as it is.
func (w *jsonWalker) int64(v *int64) error {
	if w.null() {
		return nil
	}
	c := w.b[w.i]
	if c != '-' && (c < '0' || c > '9') {
		w.skip()
		return errJSONType
	}
	n, err := strconv.ParseInt(string(w.value()), 10, 64)
	if err != nil {
		return errJSONType
	}
	*v = n
	return nil
}

func (w *jsonWalker) skip() { w.value() }

// value consumes the next value and returns it raw.
func (w *jsonWalker) value() []byte {
	w.space()
	start := w.i
	switch w.b[w.i] {
	case '"':
		w.i++
		for w.b[w.i] != '"' {
			if w.b[w.i] == '\\' {
				w.i++
			}
			w.i++
		}
		w.i++
	case '{', '[':
		for depth := 0; ; {
			switch w.b[w.i] {
			case '{', '[':
				depth++
			case '}', ']':
				depth--
			case '"':
				w.value()
				continue
			}
			w.i++
			if depth == 0 {
				return w.b[start:w.i]
			}
		}
	default: // number, true, false, null
		for w.i < len(w.b) {
			switch w.b[w.i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return w.b[start:w.i]
			}
			w.i++
		}
	}
	return w.b[start:w.i]
}

// keyIs reports whether a raw key names field, as encoding/json matches keys: exactly, or
// else without regard to ASCII case. A key with escapes is decoded first.
func keyIs(key []byte, field string) bool {
	if bytes.IndexByte(key, '\\') >= 0 {
		var k string
		if json.Unmarshal(append(append([]byte{'"'}, key...), '"'), &k) != nil {
			return false
		}
		return bytes.EqualFold([]byte(k), []byte(field))
	}
	return string(key) == field || bytes.EqualFold(key, []byte(field))
}
