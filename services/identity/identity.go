// Package identity says who callers are and what they may do. It turns a presented API key
// (stored only as its SHA-256), or an OIDC bearer token from a configured issuer, into the
// principal it belongs to: organisation, team, roles, attributes, the permissions those
// roles grant (organisation-wide, and within the team only) and the model licences the team
// has accepted.
//
// It administers the records principals come from: organisation records, teams (whose
// attributes, such as jurisdiction or handles_phi, their members inherit), users and
// service accounts (Account: a team, roles and attributes, and a disabled flag), custom
// roles next to the built-in ones (roles.go), API keys held by users and service accounts,
// and licence acceptances per team. An API key acts with its owner's team, roles and
// attributes as they are when it is used; a key whose owner is not stored (seeded from a
// resources file) acts with its own. Deleting an account revokes its keys; disabling it
// makes them refused.
//
// Every administrative RPC validates its request (naming each bad field), scopes every read
// and write by organisation and, where the request has a team field, by team, checks etags
// on updates and deletes, and answers changes with the record before and after, which the
// admin layer in front of it (internal/adminauth) records as the audit event. Revocations
// are streamed (WatchRevocations) so that caches of principals on other replicas drop a
// revoked key within a second.
package identity

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"
)

var (
	// ErrNotFound reports that no record matches, in the caller's organisation.
	ErrNotFound = errors.New("not found")
	// ErrAlreadyExists reports that the record exists already (or, for an API key, that
	// another key has the same hash).
	ErrAlreadyExists = errors.New("already exists")
)

// KeyPrefix starts every API key that NewKey generates, so that secret scanners (and
// fmgate's own moderation) recognise one.
const KeyPrefix = "fmg_"

// PrefixLen is the length of the visible prefix of a secret, kept in clear to let people
// tell their keys apart. With KeyPrefix it reveals 8 of the 43 random characters: 48 of 256
// bits, leaving 208 unknown.
const PrefixLen = 12

const (
	minSecretLen = 32
	// maxSecretLen bounds what Authenticate hashes; no real key comes near it.
	maxSecretLen = 1024
)

// NewKey returns a new API key secret: KeyPrefix followed by 256 bits from crypto/rand,
// base64url-encoded without padding (47 characters in all).
func NewKey() (secret string, err error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generate api key: %w", err)
	}
	return KeyPrefix + base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// HashKey returns the SHA-256 of secret, the only form in which keys are stored.
func HashKey(secret string) [32]byte { return sha256.Sum256([]byte(secret)) }

// Prefix returns the visible prefix of secret: its first PrefixLen bytes.
func Prefix(secret string) string {
	if len(secret) <= PrefixLen {
		return secret
	}
	return secret[:PrefixLen]
}

// ValidateSecret accepts a secret that is at least 32 characters of printable ASCII with no
// whitespace. Keys from NewKey pass, and so do keys that operators supply themselves (the
// demo key of FMGATE_DEMO_API_KEY, for one). The error never contains the secret.
func ValidateSecret(secret string) error {
	if len(secret) < minSecretLen {
		return fmt.Errorf("api key must be at least %d characters", minSecretLen)
	}
	if len(secret) > maxSecretLen {
		return fmt.Errorf("api key must be at most %d characters", maxSecretLen)
	}
	for i := 0; i < len(secret); i++ {
		if c := secret[i]; c <= ' ' || c > '~' {
			return errors.New("api key must be printable ASCII without whitespace")
		}
	}
	return nil
}

// Kind says what kind of caller holds a key.
type Kind string

const (
	KindUser           Kind = "user"
	KindServiceAccount Kind = "service_account"
)

// OwnerID is the id of the key's user or service account: its Subject without the "user:"
// or "svc:" prefix of its Kind.
func (k APIKey) OwnerID() string { return strings.TrimPrefix(k.Subject, subjectPrefix[k.Kind]) }

// Valid reports whether k is one of the known kinds.
func (k Kind) Valid() bool { return k == KindUser || k == KindServiceAccount }

// APIKey is a stored API key: who holds it and what they may be, never the secret itself.
type APIKey struct {
	ID             string
	OrganizationID string
	DisplayName    string
	// Subject is the holder's stable id in the organisation, such as "svc:billing-bot".
	Subject    string
	Kind       Kind
	TeamID     string
	Roles      []string
	Attributes map[string]string
	// Scopes narrow what the key may do; the zero value does not narrow.
	Scopes Scopes
	// Prefix is the visible prefix of the secret (see Prefix).
	Prefix string
	Hash   [32]byte
	// ExpireTime is when the key stops working; zero means never.
	ExpireTime time.Time
	// RevokeTime is when the key was revoked; zero means it is not.
	RevokeTime time.Time
	CreateTime time.Time
}

// ValidationError names one invalid field of an APIKey.
type ValidationError struct {
	Field   string
	Problem string
}

func (e *ValidationError) Error() string { return e.Field + ": " + e.Problem }

const maxIDLen = 128

// Validate reports every problem with k at once, as *ValidationError values joined.
func (k APIKey) Validate() error {
	var errs []error
	bad := func(field, problem string) { errs = append(errs, &ValidationError{Field: field, Problem: problem}) }
	requireID := func(field, v string) {
		switch {
		case v == "":
			bad(field, "is required")
		case len(v) > maxIDLen:
			bad(field, fmt.Sprintf("must be at most %d characters", maxIDLen))
		}
	}
	requireID("id", k.ID)
	requireID("organization_id", k.OrganizationID)
	requireID("subject", k.Subject)
	if len(k.TeamID) > maxIDLen {
		bad("team_id", fmt.Sprintf("must be at most %d characters", maxIDLen))
	}
	if !k.Kind.Valid() {
		bad("kind", fmt.Sprintf("must be %q or %q", KindUser, KindServiceAccount))
	}
	for _, r := range k.Roles {
		if r == "" {
			bad("roles", "must not contain an empty role")
			break
		}
	}
	for name := range k.Attributes {
		if name == "" {
			bad("attributes", "must not have an empty name")
			break
		}
	}
	errs = append(errs, k.Scopes.Validate()...)
	if k.Prefix == "" || len(k.Prefix) > PrefixLen {
		bad("prefix", fmt.Sprintf("must be 1 to %d characters", PrefixLen))
	}
	if k.Hash == ([32]byte{}) {
		bad("hash", "is required")
	}
	if k.CreateTime.IsZero() {
		bad("create_time", "is required")
	}
	return errors.Join(errs...)
}

// Store persists identity's records. Every method but GetCredential is scoped to one
// organisation: a record of another organisation is reported as not found, never read or
// changed. Not-found errors match ErrNotFound (*NotFoundError), duplicates ErrAlreadyExists
// (*AlreadyExistsError), invalid records *ValidationError. Update methods run fn on the
// current record and store what it returns, atomically (fn's error aborts the update and is
// returned); Delete methods run check likewise before deleting. Implementations pass
// identitytest.TestStore and are safe for concurrent use.
type Store interface {
	// PutAPIKey creates the key, or replaces the key with the same (OrganizationID, ID):
	// applying the same key twice is harmless. It keeps the CreateTime first stored, and a
	// revocation once stored is never undone (the earlier RevokeTime wins), so re-applying a
	// resources file cannot bring a revoked key back. When the key's owner is stored, the key
	// takes the owner's team. ErrAlreadyExists when another key has the same Hash.
	PutAPIKey(ctx context.Context, k APIKey) error
	// GetCredential returns the key whose hash is hash, in whichever organisation it is,
	// with its owner when stored and the grants of its holder (see Credential), in one read:
	// the key is what tells the caller's organisation, so this is the one lookup not scoped
	// by organisation. Only Authenticate should call it. ErrNotFound.
	GetCredential(ctx context.Context, hash [32]byte) (Credential, error)
	// Grants returns the custom roles among roles, and the attributes and licence
	// acceptances of team (none when team is empty), in organisation org.
	Grants(ctx context.Context, org, team string, roles []string) (Grants, error)
	// GetAPIKey returns the key id of organisation org. ErrNotFound.
	GetAPIKey(ctx context.Context, org, id string) (APIKey, error)
	// ListAPIKeys returns a page of the keys of organisation org, revoked ones included, by
	// ID; only those of team when team is set.
	ListAPIKeys(ctx context.Context, org, team string, page Page) ([]APIKey, error)
	// CreateAPIKey creates the key. ErrAlreadyExists when the organisation has a key with
	// the same ID, or any key has the same Hash. When requireOwner is set, the key's owner
	// (Kind, OwnerID) must be stored, not disabled and, when k.TeamID is set, in that team
	// (*OwnerError otherwise), and the key takes the owner's team: checked in one
	// transaction with the insert, so an owner deleted meanwhile either refuses the key or
	// revokes it.
	CreateAPIKey(ctx context.Context, k APIKey, requireOwner bool) error
	// RevokeAPIKey marks the key id of organisation org revoked from at. Revoking a revoked
	// key keeps the earlier time. ErrNotFound.
	RevokeAPIKey(ctx context.Context, org, id string, at time.Time) error
	// SubscribeRevocations delivers every revocation recorded from the moment it returns
	// until ctx ends, then closes the channel. A revocation is recorded when a key's
	// RevokeTime is set or moved earlier, by RevokeAPIKey, PutAPIKey or DeleteAccount,
	// through this store or any other sharing its data (replicas on one Postgres schema).
	// Events may repeat. The channel is also closed, before ctx ends, when the subscriber
	// falls behind or the store can no longer promise delivery: the subscriber must then
	// assume it missed revocations.
	SubscribeRevocations(ctx context.Context) (<-chan Revocation, error)

	// CreateOrganization stores an organisation's record. ErrAlreadyExists.
	CreateOrganization(ctx context.Context, o Organization) error
	// GetOrganization returns the record of organisation id. ErrNotFound.
	GetOrganization(ctx context.Context, id string) (Organization, error)
	// UpdateOrganization replaces the record with what fn returns. ErrNotFound.
	UpdateOrganization(ctx context.Context, id string, fn func(Organization) (Organization, error)) (before, after Organization, err error)

	// CreateTeam stores a team. ErrAlreadyExists.
	CreateTeam(ctx context.Context, t Team) error
	// GetTeam returns a team. ErrNotFound.
	GetTeam(ctx context.Context, org, id string) (Team, error)
	// ListTeams returns a page of an organisation's teams, by ID.
	ListTeams(ctx context.Context, org string, page Page) ([]Team, error)
	// UpdateTeam replaces a team with what fn returns. ErrNotFound.
	UpdateTeam(ctx context.Context, org, id string, fn func(Team) (Team, error)) (before, after Team, err error)
	// DeleteTeam deletes a team. *InUseError while accounts belong to it. ErrNotFound.
	DeleteTeam(ctx context.Context, org, id string, check func(Team) error) (Team, error)

	// CreateAccount stores a user or service account. Its team and custom roles must be
	// stored (a *ValidationError naming team_id or roles[i] otherwise), checked atomically
	// with the write. ErrAlreadyExists.
	CreateAccount(ctx context.Context, a Account) error
	// GetAccount returns an account of kind kind. ErrNotFound.
	GetAccount(ctx context.Context, org string, kind Kind, id string) (Account, error)
	// ListAccounts returns a page of an organisation's accounts of kind kind, by ID.
	ListAccounts(ctx context.Context, org string, kind Kind, page Page) ([]Account, error)
	// UpdateAccount replaces an account with what fn returns, with CreateAccount's checks of
	// team and roles. The account's API keys take its new team. ErrNotFound.
	UpdateAccount(ctx context.Context, org string, kind Kind, id string, fn func(Account) (Account, error)) (before, after Account, err error)
	// DeleteAccount deletes an account and revokes its API keys from at. ErrNotFound.
	DeleteAccount(ctx context.Context, org string, kind Kind, id string, at time.Time, check func(Account) error) (Account, error)

	// CreateRole stores a custom role. ErrAlreadyExists.
	CreateRole(ctx context.Context, r Role) error
	// GetRole returns a custom role (never a built-in one). ErrNotFound.
	GetRole(ctx context.Context, org, id string) (Role, error)
	// ListRoles returns a page of an organisation's custom roles, by ID.
	ListRoles(ctx context.Context, org string, page Page) ([]Role, error)
	// UpdateRole replaces a custom role with what fn returns. ErrNotFound.
	UpdateRole(ctx context.Context, org, id string, fn func(Role) (Role, error)) (before, after Role, err error)
	// DeleteRole deletes a custom role. *InUseError while accounts hold it. ErrNotFound.
	DeleteRole(ctx context.Context, org, id string, check func(Role) error) (Role, error)

	// AcceptLicense stores an acceptance unless the same one (LicenseAcceptance.Key) is
	// stored, and returns what is stored and whether it was already.
	AcceptLicense(ctx context.Context, a LicenseAcceptance) (stored LicenseAcceptance, existed bool, err error)
	// ListLicenseAcceptances returns a page of an organisation's acceptances, by key.
	ListLicenseAcceptances(ctx context.Context, org string, page LicensePage) ([]LicenseAcceptance, error)
	// RevokeLicenseAcceptance deletes an acceptance and returns it. ErrNotFound.
	RevokeLicenseAcceptance(ctx context.Context, org string, key LicenseKey) (LicenseAcceptance, error)
}

// Revocation says that the key KeyID of OrganizationID is refused from RevokeTime on.
type Revocation struct {
	OrganizationID string
	KeyID          string
	RevokeTime     time.Time
}

// Operation is a kind of gateway call that an API key may be scoped to.
type Operation string

const (
	OperationGenerate   Operation = "generate"
	OperationEmbed      Operation = "embed"
	OperationListModels Operation = "list_models"
)

// Operations lists every known Operation.
var Operations = []Operation{OperationGenerate, OperationEmbed, OperationListModels}

// Scopes narrow what an API key may do, below what its holder's roles and the policies
// allow. An empty list does not narrow.
type Scopes struct {
	// Models are model name patterns in path.Match syntax: "gpt-4o", "claude-*", "*".
	Models     []string
	Operations []Operation
}

// Validate returns a *ValidationError for each bad pattern or unknown operation.
func (s Scopes) Validate() []error {
	var errs []error
	for _, m := range s.Models {
		if _, err := path.Match(m, ""); m == "" || len(m) > maxIDLen*2 || err != nil {
			errs = append(errs, &ValidationError{Field: "scopes.models", Problem: fmt.Sprintf("%q is not a valid model pattern", m)})
		}
	}
	for _, op := range s.Operations {
		if !slices.Contains(Operations, op) {
			errs = append(errs, &ValidationError{Field: "scopes.operations", Problem: fmt.Sprintf("%q is not a known operation", op)})
		}
	}
	return errs
}

// AllowsModel reports whether the scopes let the key use model.
func (s Scopes) AllowsModel(model string) bool {
	if len(s.Models) == 0 {
		return true
	}
	for _, p := range s.Models {
		if ok, _ := path.Match(p, model); ok {
			return true
		}
	}
	return false
}

// AllowsOperation reports whether the scopes let the key call op.
func (s Scopes) AllowsOperation(op Operation) bool {
	return len(s.Operations) == 0 || slices.Contains(s.Operations, op)
}
