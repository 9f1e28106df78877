package identity

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/mail"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Resource names a kind of record in errors: "team", "user", ...
type Resource string

const (
	ResourceAPIKey            Resource = "api key"
	ResourceOrganization      Resource = "organization"
	ResourceTeam              Resource = "team"
	ResourceUser              Resource = "user"
	ResourceServiceAccount    Resource = "service account"
	ResourceRole              Resource = "role"
	ResourceLicenseAcceptance Resource = "license acceptance"
)

// NotFoundError reports that an organisation has no record of that id. It matches
// ErrNotFound.
type NotFoundError struct {
	Resource Resource
	ID       string
}

func (e *NotFoundError) Error() string { return fmt.Sprintf("%s %q not found", e.Resource, e.ID) }

// Is makes errors.Is(err, ErrNotFound) true.
func (e *NotFoundError) Is(target error) bool { return target == ErrNotFound }

// AlreadyExistsError reports that an organisation already has a record of that id. It
// matches ErrAlreadyExists.
type AlreadyExistsError struct {
	Resource Resource
	ID       string
}

func (e *AlreadyExistsError) Error() string {
	return fmt.Sprintf("%s %q already exists", e.Resource, e.ID)
}

// Is makes errors.Is(err, ErrAlreadyExists) true.
func (e *AlreadyExistsError) Is(target error) bool { return target == ErrAlreadyExists }

// InUseError reports that a record cannot be deleted while others refer to it: a role held
// by users or service accounts, a team with members. HeldBy names them ("user:alice",
// "svc:billing"), sorted, at most maxHolders of them.
type InUseError struct {
	Resource Resource
	ID       string
	HeldBy   []string
}

// MaxHolders bounds how many holders an InUseError names.
const MaxHolders = 20

func (e *InUseError) Error() string {
	verb := "held by"
	if e.Resource == ResourceTeam {
		verb = "has members"
	}
	return fmt.Sprintf("%s %q is in use, %s %s", e.Resource, e.ID, verb, strings.Join(e.HeldBy, ", "))
}

// OwnerError reports that an API key cannot be created for its owner: the user or service
// account is not stored, is disabled, or is not in the team the key is confined to.
type OwnerError struct {
	Kind     Kind
	ID       string
	Disabled bool
	// TeamID is the team the owner was required to be in, when that was the problem.
	TeamID string
}

func (e *OwnerError) Error() string {
	switch {
	case e.Disabled:
		return fmt.Sprintf("%s %q is disabled", AccountResource(e.Kind), e.ID)
	case e.TeamID != "":
		return fmt.Sprintf("%s %q not found in team %q", AccountResource(e.Kind), e.ID, e.TeamID)
	}
	return fmt.Sprintf("%s %q not found", AccountResource(e.Kind), e.ID)
}

// AccountResource is the Resource of accounts of kind k.
func AccountResource(k Kind) Resource {
	if k == KindServiceAccount {
		return ResourceServiceAccount
	}
	return ResourceUser
}

// MissingRefs is what a store found missing of an account's references: its team, and the
// custom roles at these indexes of its Roles.
type MissingRefs struct {
	Team  bool
	Roles []int
}

// Err returns a *ValidationError for each missing reference of a, joined, or nil.
func (m MissingRefs) Err(a Account) error {
	var v violationList
	if m.Team {
		v.add("team_id", fmt.Sprintf("team %q does not exist", a.TeamID))
	}
	for _, i := range m.Roles {
		v.add(fmt.Sprintf("roles[%d]", i), fmt.Sprintf("role %q does not exist", a.Roles[i]))
	}
	return errors.Join(v...)
}

// ErrEtagMismatch reports an update or delete whose etag no longer matches the record: it
// changed since the caller read it.
var ErrEtagMismatch = errors.New("etag mismatch")

// ErrBuiltinRole reports an attempt to change or delete a built-in role.
var ErrBuiltinRole = errors.New("built-in roles cannot change")

// Page selects one page of a list ordered by id: at most Limit records whose id sorts
// after After (byte order). Limit must be positive.
type Page struct {
	After string
	Limit int
}

// Organization is the record of an organisation. Other records name their organisation
// whether or not its record is stored.
type Organization struct {
	ID          string
	DisplayName string
	CreateTime  time.Time
	UpdateTime  time.Time
}

// Team groups accounts. Its attributes are its members' principal attributes unless a
// member's own override them.
type Team struct {
	OrganizationID string
	ID             string
	DisplayName    string
	Attributes     map[string]string
	CreateTime     time.Time
	UpdateTime     time.Time
}

// Account is a user or a service account: who holds API keys, with a team, roles and
// attributes that the keys act with.
type Account struct {
	OrganizationID string
	Kind           Kind
	ID             string
	// Email is for users only; optional.
	Email       string
	DisplayName string
	// TeamID is a stored team of the organisation, or empty.
	TeamID string
	// Roles are built-in role ids or stored custom roles of the organisation.
	Roles      []string
	Attributes map[string]string
	// Disabled accounts' keys are refused.
	Disabled   bool
	CreateTime time.Time
	UpdateTime time.Time
}

// Subject is the principal subject of the account: "user:<id>" or "svc:<id>".
func (a Account) Subject() string { return subjectPrefix[a.Kind] + a.ID }

// RoleScope says where a role's permissions apply.
type RoleScope string

const (
	// ScopeOrganization roles grant their permissions across the organisation.
	ScopeOrganization RoleScope = "organization"
	// ScopeTeam roles grant their permissions within the holder's team only.
	ScopeTeam RoleScope = "team"
)

// Role is a named set of permissions: built in, or a custom role of an organisation.
type Role struct {
	OrganizationID string
	ID             string
	DisplayName    string
	Permissions    []Permission
	Scope          RoleScope
	Builtin        bool
	CreateTime     time.Time
	UpdateTime     time.Time
}

// LicenseAcceptance records that a team accepted a model's licence at one version. The team,
// model, licence name and version identify it within the organisation.
type LicenseAcceptance struct {
	OrganizationID string
	TeamID         string
	Model          string
	LicenseName    string
	LicenseVersion string
	AcceptedBy     string
	AcceptTime     time.Time
}

// LicenseKey identifies a licence acceptance within its organisation; lists order by it.
type LicenseKey struct {
	TeamID, Model, LicenseName, LicenseVersion string
}

// Key returns what identifies a.
func (a LicenseAcceptance) Key() LicenseKey {
	return LicenseKey{a.TeamID, a.Model, a.LicenseName, a.LicenseVersion}
}

// String names the key in messages: "team/model/name@version".
func (k LicenseKey) String() string {
	return k.TeamID + "/" + k.Model + "/" + k.LicenseName + "@" + k.LicenseVersion
}

// Compare orders keys by team, model, licence name and version, bytewise.
func (k LicenseKey) Compare(o LicenseKey) int {
	for _, c := range [][2]string{{k.TeamID, o.TeamID}, {k.Model, o.Model},
		{k.LicenseName, o.LicenseName}, {k.LicenseVersion, o.LicenseVersion}} {
		if n := strings.Compare(c[0], c[1]); n != 0 {
			return n
		}
	}
	return 0
}

// LicensePage selects one page of licence acceptances: at most Limit of them whose key sorts
// after After (nil for the first page), of TeamID only when it is set.
type LicensePage struct {
	TeamID string
	After  *LicenseKey
	Limit  int
}

// Grants are what a principal's roles and team give it beyond its own record: the custom
// roles its roles name, its team's attributes and its team's licence acceptances.
type Grants struct {
	// CustomRoles are the organisation's stored roles among the principal's roles.
	CustomRoles []Role
	// TeamAttributes are the stored team's attributes; nil when the team is not stored.
	TeamAttributes map[string]string
	Licenses       []LicenseAcceptance
}

// Credential is an API key with what Authenticate needs of its holder, read at once.
type Credential struct {
	Key APIKey
	// Owner is the key's user or service account when it is stored, else nil.
	Owner *Account
	// Grants are for the owner's roles and team when the owner is stored, else the key's.
	Grants Grants
}

// Bounds of resource fields.
const (
	maxDisplayName    = 256
	maxAttributes     = 64
	maxAttributeName  = 64
	maxAttributeValue = 256
	maxRoles          = 64
	maxLicenseField   = 256
)

// idPattern is what resource ids that callers choose may look like.
var idPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,127}$`)

const idRule = "must be 1 to 128 characters of a-z, 0-9, '.', '_' and '-', starting with a letter or digit"

// violations accumulates *ValidationError values.
type violationList []error

func (v *violationList) add(field, problem string) {
	*v = append(*v, &ValidationError{Field: field, Problem: problem})
}

func (v *violationList) id(field, id string) {
	if !idPattern.MatchString(id) {
		v.add(field, idRule)
	}
}

func (v *violationList) optionalID(field, id string) {
	if id != "" {
		v.id(field, id)
	}
}

func (v *violationList) displayName(name string) {
	if len(name) > maxDisplayName {
		v.add("display_name", fmt.Sprintf("must be at most %d bytes", maxDisplayName))
	}
}

func (v *violationList) attributes(attrs map[string]string) {
	if len(attrs) > maxAttributes {
		v.add("attributes", fmt.Sprintf("must have at most %d entries", maxAttributes))
	}
	for _, name := range slices.Sorted(maps.Keys(attrs)) {
		switch {
		case name == "" || len(name) > maxAttributeName:
			v.add("attributes", fmt.Sprintf("names must be 1 to %d bytes", maxAttributeName))
			return
		case len(attrs[name]) > maxAttributeValue:
			v.add("attributes", fmt.Sprintf("value of %q must be at most %d bytes", name, maxAttributeValue))
			return
		}
	}
}

// Validate reports every problem with o at once, as *ValidationError values joined.
func (o Organization) Validate() error {
	var v violationList
	v.id("organization_id", o.ID)
	v.displayName(o.DisplayName)
	return errors.Join(v...)
}

// Validate reports every problem with t at once.
func (t Team) Validate() error {
	var v violationList
	v.id("organization_id", t.OrganizationID)
	v.id("id", t.ID)
	v.displayName(t.DisplayName)
	v.attributes(t.Attributes)
	return errors.Join(v...)
}

// Validate reports every problem with a at once. That its team and custom roles exist is
// the store's to check, atomically with the write.
func (a Account) Validate() error {
	var v violationList
	v.id("organization_id", a.OrganizationID)
	v.id("id", a.ID)
	if !a.Kind.Valid() {
		v.add("kind", fmt.Sprintf("must be %q or %q", KindUser, KindServiceAccount))
	}
	if a.Email != "" {
		if a.Kind != KindUser {
			v.add("email", "is for users only")
		} else if addr, err := mail.ParseAddress(a.Email); err != nil || addr.Address != a.Email || len(a.Email) > maxDisplayName {
			v.add("email", "must be an email address such as alice@example.com")
		}
	}
	v.displayName(a.DisplayName)
	v.optionalID("team_id", a.TeamID)
	if len(a.Roles) > maxRoles {
		v.add("roles", fmt.Sprintf("must have at most %d entries", maxRoles))
	}
	for i, r := range a.Roles {
		field := fmt.Sprintf("roles[%d]", i)
		switch {
		case !idPattern.MatchString(r):
			v.add(field, idRule)
		case slices.Contains(a.Roles[:i], r):
			v.add(field, fmt.Sprintf("%q is repeated", r))
		}
	}
	v.attributes(a.Attributes)
	return errors.Join(v...)
}

// Validate reports every problem with a custom role at once.
func (r Role) Validate() error {
	var v violationList
	v.id("organization_id", r.OrganizationID)
	v.id("id", r.ID)
	if _, ok := BuiltinRoles[r.ID]; ok {
		v.add("id", fmt.Sprintf("%q is a built-in role", r.ID))
	}
	v.displayName(r.DisplayName)
	if r.Scope != ScopeOrganization && r.Scope != ScopeTeam {
		v.add("scope", "must be ROLE_SCOPE_ORGANIZATION or ROLE_SCOPE_TEAM")
	}
	if len(r.Permissions) == 0 {
		v.add("permissions", "must name at least one permission")
	}
	v = append(v, ValidatePermissions(r.Permissions)...)
	if r.Builtin {
		v.add("builtin", "custom roles are not built in")
	}
	return errors.Join(v...)
}

// Validate reports every problem with a at once.
func (a LicenseAcceptance) Validate() error {
	var v violationList
	v.id("organization_id", a.OrganizationID)
	v.id("team_id", a.TeamID)
	for _, f := range []struct{ name, value string }{
		{"model", a.Model}, {"license_name", a.LicenseName}, {"license_version", a.LicenseVersion},
		{"accepted_by", a.AcceptedBy},
	} {
		switch {
		case f.value == "":
			v.add(f.name, "is required")
		case len(f.value) > maxLicenseField:
			v.add(f.name, fmt.Sprintf("must be at most %d bytes", maxLicenseField))
		}
	}
	if a.AcceptTime.IsZero() {
		v.add("accept_time", "is required")
	}
	return errors.Join(v...)
}

// Etag identifies the content of o; it changes with every change of the record. Empty and
// nil lists and maps count alike, and times count to the microsecond, as stores keep them.
func (o Organization) Etag() string {
	o.CreateTime, o.UpdateTime = NormTime(o.CreateTime), NormTime(o.UpdateTime)
	return etagOf(o)
}

// Etag identifies the content of t, as Organization.Etag.
func (t Team) Etag() string {
	t.Attributes = nilIfEmptyMap(t.Attributes)
	t.CreateTime, t.UpdateTime = NormTime(t.CreateTime), NormTime(t.UpdateTime)
	return etagOf(t)
}

// Etag identifies the content of a, as Organization.Etag.
func (a Account) Etag() string {
	a.Roles, a.Attributes = nilIfEmpty(a.Roles), nilIfEmptyMap(a.Attributes)
	a.CreateTime, a.UpdateTime = NormTime(a.CreateTime), NormTime(a.UpdateTime)
	return etagOf(a)
}

// Etag identifies the content of r, as Organization.Etag.
func (r Role) Etag() string {
	r.Permissions = nilIfEmpty(r.Permissions)
	r.CreateTime, r.UpdateTime = NormTime(r.CreateTime), NormTime(r.UpdateTime)
	return etagOf(r)
}

func nilIfEmpty[T any](s []T) []T {
	if len(s) == 0 {
		return nil
	}
	return s
}

func nilIfEmptyMap(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return m
}

// etagOf hashes the JSON of a record. Maps marshal in key order and stores keep times to the
// microsecond in UTC, so both stores give one record one etag.
func etagOf(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		// Records hold strings, bools, times and string maps, which always marshal.
		panic(fmt.Sprintf("identity: etag: %v", err))
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:12])
}

// CheckEtag returns an error matching ErrEtagMismatch when want is set and differs from got.
func CheckEtag(res Resource, id, want, got string) error {
	if want != "" && want != got {
		return fmt.Errorf("%s %q changed since it was read: %w", res, id, ErrEtagMismatch)
	}
	return nil
}

// NormTime keeps what Postgres keeps of a time (UTC, microseconds), so that both stores
// return, and hash, the same values.
func NormTime(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC().Truncate(time.Microsecond)
}
