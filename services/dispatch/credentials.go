package dispatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/fmgate/fmgate/internal/credref"
)

// ErrCredentialUnavailable is wrapped by every CredentialResolver failure. Its messages name
// the reference, never the secret.
var ErrCredentialUnavailable = credref.ErrUnavailable

// CredentialResolver turns an endpoint's credential reference into the secret it names:
// "env:NAME", "file:/path", "store:NAME" (a credential of org, the endpoint's organisation,
// in the credential store; see StoreResolver), or "" for none. Implementations are safe for
// concurrent use; errors wrap ErrCredentialUnavailable and never contain the secret.
type CredentialResolver interface {
	Resolve(ctx context.Context, org, ref string) (Credential, error)
}

// Credential is a vendor secret. It prints and logs as "[REDACTED]", so that it cannot leak
// through a log line, a span or an error by accident; Reveal gives the value to the one place
// that sends it to the vendor.
type Credential struct{ value string }

// NewCredential wraps a secret.
func NewCredential(secret string) Credential { return Credential{value: secret} }

// Reveal returns the secret.
func (c Credential) Reveal() string { return c.value }

// IsZero reports whether there is no secret.
func (c Credential) IsZero() bool { return c.value == "" }

// String implements fmt.Stringer without the secret.
func (c Credential) String() string { return "[REDACTED]" }

// GoString implements fmt.GoStringer without the secret.
func (c Credential) GoString() string { return "[REDACTED]" }

// LogValue implements slog.LogValuer without the secret.
func (c Credential) LogValue() slog.Value { return slog.StringValue("[REDACTED]") }

// redact removes the secret from s, for text that came from elsewhere (a vendor's error
// message, a transport error).
func (c Credential) redact(s string) string {
	if c.value == "" {
		return s
	}
	return strings.ReplaceAll(s, c.value, "[REDACTED]")
}

// EnvFileResolver resolves "env:NAME" from the process environment and "file:/path" from a
// file (surrounding space trimmed, as mounted Kubernetes secrets often end with a newline).
// The empty reference means the endpoint needs no credential. It has no credential store, so
// it refuses "store:NAME" (StoreResolver resolves those).
type EnvFileResolver struct{}

// Resolve implements CredentialResolver. The organisation plays no part: the environment and
// the files are the deployment's, not a tenant's.
func (EnvFileResolver) Resolve(_ context.Context, _, ref string) (Credential, error) {
	if strings.HasPrefix(ref, StorePrefix) {
		return Credential{}, errNoStore
	}
	v, err := credref.Resolve(ref)
	if errors.Is(err, credref.ErrUnsupported) {
		return Credential{}, fmt.Errorf("%w: unsupported reference (want env:NAME, file:/path or store:NAME)", ErrCredentialUnavailable)
	}
	if err != nil {
		return Credential{}, err // wraps credref.ErrUnavailable, which is ErrCredentialUnavailable
	}
	return NewCredential(v), nil
}
