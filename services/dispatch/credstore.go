package dispatch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/fmgate/fmgate/internal/seal"
)

// ErrNotFound is returned by a CredentialStore for a credential it does not hold.
var ErrNotFound = errors.New("credential not found")

// ErrInvalidCredential is returned by a CredentialStore for an empty organisation, a name
// that ValidateCredentialName refuses, or an empty sealed value.
var ErrInvalidCredential = errors.New("invalid credential")

// StorePrefix starts a credential reference naming a credential of the endpoint's
// organisation in the credential store: "store:openai-key".
const StorePrefix = "store:"

// CredentialInfo describes a stored credential. It never carries the value, sealed or not.
type CredentialInfo struct {
	Name       string
	UpdateTime time.Time
}

// CredentialStore holds vendor credentials sealed (encrypted and bound to their organisation
// and name, see SealCredential), one set per organisation. It never sees a plaintext value,
// and offers no way to list values: the only reader is StoreResolver. Every method is scoped
// to one organisation, so a caller of one tenant cannot reach another's credentials.
// Implementations pass dispatchtest.TestCredentialStore and are safe for concurrent use.
type CredentialStore interface {
	// PutSealed creates or replaces org's credential name with sealed, stamped now. It
	// reports whether anything changed: putting the bytes already stored changes nothing
	// (and keeps the update time). Errors: ErrInvalidCredential.
	PutSealed(ctx context.Context, org, name string, sealed []byte, now time.Time) (bool, error)
	// GetSealed returns org's credential name as stored. Errors: ErrNotFound.
	GetSealed(ctx context.Context, org, name string) ([]byte, error)
	// ListCredentials returns the names and update times of org's credentials, by name.
	ListCredentials(ctx context.Context, org string) ([]CredentialInfo, error)
	// DeleteCredential removes org's credential name. Errors: ErrNotFound.
	DeleteCredential(ctx context.Context, org, name string) error
}

var credentialName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// ValidateCredentialName checks a credential's name: 1 to 128 letters, digits, '.', '_' or
// '-', starting with a letter or digit. Errors wrap ErrInvalidCredential.
func ValidateCredentialName(name string) error {
	if !credentialName.MatchString(name) {
		return fmt.Errorf("%w: name must be 1 to 128 letters, digits, '.', '_' or '-', starting with a letter or digit", ErrInvalidCredential)
	}
	return nil
}

// ValidateStoredCredential checks what a CredentialStore stores. Errors wrap
// ErrInvalidCredential and never contain the value.
func ValidateStoredCredential(org, name string, sealed []byte) error {
	var errs []error
	if org == "" || strings.ContainsRune(org, 0) {
		errs = append(errs, fmt.Errorf("%w: organization is required", ErrInvalidCredential))
	}
	if err := ValidateCredentialName(name); err != nil {
		errs = append(errs, err)
	}
	if len(sealed) == 0 {
		errs = append(errs, fmt.Errorf("%w: sealed value is empty", ErrInvalidCredential))
	}
	return errors.Join(errs...)
}

// associatedData binds a sealed credential to its organisation and name, so that a sealed
// value copied onto another record (another tenant's, or another name) does not open. The
// separator cannot occur in either part (ValidateStoredCredential).
func associatedData(org, name string) []byte { return []byte(org + "\x00" + name) }

// SealCredential stores value as org's credential name, sealed with box, unless the store
// already holds a value that opens to it: a seal uses a fresh nonce, so comparing sealed bytes
// would report a change at every start. It reports whether the store changed. A stored value
// that does not open (sealed under another master key) is replaced. Errors never contain
// the value.
func SealCredential(ctx context.Context, store CredentialStore, box *seal.Box, org, name string, value Credential, now time.Time) (bool, error) {
	if value.IsZero() {
		return false, fmt.Errorf("seal credential %s: %w: empty value", name, ErrInvalidCredential)
	}
	if err := ValidateStoredCredential(org, name, []byte{0}); err != nil {
		return false, fmt.Errorf("seal credential: %w", err)
	}
	ad := associatedData(org, name)
	old, err := store.GetSealed(ctx, org, name)
	switch {
	case err == nil:
		if pt, err := box.Open(old, ad); err == nil && bytes.Equal(pt, []byte(value.Reveal())) {
			return false, nil
		}
	case !errors.Is(err, ErrNotFound):
		return false, fmt.Errorf("seal credential %s: %w", name, err)
	}
	sealed, err := box.Seal([]byte(value.Reveal()), ad)
	if err != nil {
		return false, fmt.Errorf("seal credential %s: %w", name, err)
	}
	changed, err := store.PutSealed(ctx, org, name, sealed, now)
	if err != nil {
		return false, fmt.Errorf("seal credential %s: %w", name, err)
	}
	return changed, nil
}

// StoreResolver resolves "store:NAME" to the endpoint organisation's credential NAME in
// Store, opened with Box, and every other reference as EnvFileResolver does. Endpoints are
// resolved again when their cache entry expires (Config.EndpointCacheTTL), so a rotated
// credential is used within that time.
type StoreResolver struct {
	Store CredentialStore
	Box   *seal.Box
}

// Resolve implements CredentialResolver.
func (r StoreResolver) Resolve(ctx context.Context, org, ref string) (Credential, error) {
	name, ok := strings.CutPrefix(ref, StorePrefix)
	if !ok {
		return EnvFileResolver{}.Resolve(ctx, org, ref)
	}
	if r.Store == nil || r.Box == nil {
		return Credential{}, errNoStore
	}
	if err := ValidateCredentialName(name); err != nil {
		return Credential{}, fmt.Errorf("%w: invalid store reference: %v", ErrCredentialUnavailable, err)
	}
	sealed, err := r.Store.GetSealed(ctx, org, name)
	if errors.Is(err, ErrNotFound) {
		return Credential{}, fmt.Errorf("%w: organization %q has no stored credential %q", ErrCredentialUnavailable, org, name)
	}
	if err != nil {
		return Credential{}, fmt.Errorf("%w: read stored credential %q: %v", ErrCredentialUnavailable, name, err)
	}
	pt, err := r.Box.Open(sealed, associatedData(org, name))
	if err != nil {
		return Credential{}, fmt.Errorf("%w: stored credential %q does not open (another master key, or sealed for another record)", ErrCredentialUnavailable, name)
	}
	if len(pt) == 0 {
		return Credential{}, fmt.Errorf("%w: stored credential %q is empty", ErrCredentialUnavailable, name)
	}
	return NewCredential(string(pt)), nil
}

var errNoStore = fmt.Errorf("%w: store references need the credential store, which is not configured (no master key)", ErrCredentialUnavailable)
