// Package credref resolves the credential references that registry endpoints carry and that
// fmgate keeps outside its own stores: "env:NAME" (an environment variable) and "file:/path"
// (a file, such as a mounted Kubernetes secret). Errors name the reference, never the secret.
package credref

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// ErrUnavailable is wrapped by every resolution failure.
var ErrUnavailable = errors.New("credential unavailable")

// ErrUnsupported is wrapped when the reference is of neither form; the caller may know
// others (dispatch's "store:NAME").
var ErrUnsupported = errors.New("unsupported credential reference")

// Resolve returns the secret an "env:" or "file:" reference names. The empty reference means
// no credential and resolves to "". File contents are trimmed of surrounding space, as
// mounted secrets often end with a newline; an empty value is an error.
func Resolve(ref string) (string, error) {
	switch {
	case ref == "":
		return "", nil
	case strings.HasPrefix(ref, "env:"):
		name := strings.TrimPrefix(ref, "env:")
		v, ok := os.LookupEnv(name)
		if name == "" || !ok || v == "" {
			return "", fmt.Errorf("%w: environment variable %q is not set", ErrUnavailable, name)
		}
		return v, nil
	case strings.HasPrefix(ref, "file:"):
		path := strings.TrimPrefix(ref, "file:")
		b, err := os.ReadFile(path)
		if err != nil {
			// The path is not secret; the file's content never reaches this message.
			return "", fmt.Errorf("%w: read %q: %v", ErrUnavailable, path, errors.Unwrap(err))
		}
		v := strings.TrimSpace(string(b))
		if v == "" {
			return "", fmt.Errorf("%w: file %q is empty", ErrUnavailable, path)
		}
		return v, nil
	}
	// Not echoed: a misconfigured reference may be the secret itself.
	return "", fmt.Errorf("%w: %w", ErrUnavailable, ErrUnsupported)
}
