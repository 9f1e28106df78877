package identitypg

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fmgate/fmgate/internal/pg"
	"github.com/fmgate/fmgate/services/identity"
)

// The administered records: organisations, teams, accounts, custom roles and licence
// acceptances. Every query names the organisation. Updates and deletes lock the row
// (FOR UPDATE) while the caller's function decides; writes of an account lock its team and
// custom roles (FOR SHARE), so that a team or role cannot be deleted between the check that
// it exists and the write that refers to it.

const (
	orgColumns     = `organization_id, display_name, create_time, update_time`
	teamColumns    = `organization_id, id, display_name, attributes, create_time, update_time`
	accountColumns = `organization_id, kind, id, email, display_name, team_id, roles, attributes, disabled,
		create_time, update_time`
	roleColumns    = `organization_id, id, display_name, permissions, scope, create_time, update_time`
	licenseColumns = `organization_id, team_id, model, license_name, license_version, accepted_by, accept_time`
	// holderSubject is an account's principal subject, as identity.Account.Subject.
	holderSubject = `CASE kind WHEN 'user' THEN 'user:' ELSE 'svc:' END || id`
)

type adminQueries struct {
	createOrg, getOrg, lockOrg, updateOrg                                     string
	createTeam, getTeam, listTeams, lockTeam, updateTeam, deleteTeam          string
	shareTeam, teamMembers                                                    string
	createAccount, getAccount, listAccounts, lockAccount, updateAccount       string
	deleteAccount, keysFollowTeam, revokeOwnerKeys                            string
	createRole, getRole, listRoles, lockRole, updateRole, deleteRole          string
	shareRoles, roleHolders                                                   string
	acceptLicense, getLicense, listLicenses, listLicensesAfter, deleteLicense string
}

func newAdminQueries(q func(string) string) adminQueries {
	return adminQueries{
		createOrg: q(`INSERT INTO {schema}.organizations (` + orgColumns + `) VALUES ($1, $2, $3, $4)`),
		getOrg:    q(`SELECT ` + orgColumns + ` FROM {schema}.organizations WHERE organization_id = $1`),
		lockOrg:   q(`SELECT ` + orgColumns + ` FROM {schema}.organizations WHERE organization_id = $1 FOR UPDATE`),
		updateOrg: q(`UPDATE {schema}.organizations SET display_name = $2, update_time = $3 WHERE organization_id = $1`),

		createTeam: q(`INSERT INTO {schema}.teams (` + teamColumns + `) VALUES ($1, $2, $3, $4, $5, $6)`),
		getTeam:    q(`SELECT ` + teamColumns + ` FROM {schema}.teams WHERE organization_id = $1 AND id = $2`),
		listTeams: q(`SELECT ` + teamColumns + ` FROM {schema}.teams WHERE organization_id = $1 AND id > $2
			ORDER BY id LIMIT $3`),
		lockTeam: q(`SELECT ` + teamColumns + ` FROM {schema}.teams WHERE organization_id = $1 AND id = $2 FOR UPDATE`),
		updateTeam: q(`UPDATE {schema}.teams SET display_name = $3, attributes = $4, update_time = $5
			WHERE organization_id = $1 AND id = $2`),
		deleteTeam: q(`DELETE FROM {schema}.teams WHERE organization_id = $1 AND id = $2`),
		shareTeam:  q(`SELECT 1 FROM {schema}.teams WHERE organization_id = $1 AND id = $2 FOR SHARE`),
		teamMembers: q(`SELECT ` + holderSubject + ` AS subject FROM {schema}.accounts
			WHERE organization_id = $1 AND team_id = $2 ORDER BY subject LIMIT $3`),

		createAccount: q(`INSERT INTO {schema}.accounts (` + accountColumns + `)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`),
		getAccount: q(`SELECT ` + accountColumns + ` FROM {schema}.accounts
			WHERE organization_id = $1 AND kind = $2 AND id = $3`),
		listAccounts: q(`SELECT ` + accountColumns + ` FROM {schema}.accounts
			WHERE organization_id = $1 AND kind = $2 AND id > $3 ORDER BY id LIMIT $4`),
		lockAccount: q(`SELECT ` + accountColumns + ` FROM {schema}.accounts
			WHERE organization_id = $1 AND kind = $2 AND id = $3 FOR UPDATE`),
		updateAccount: q(`UPDATE {schema}.accounts SET email = $4, display_name = $5, team_id = $6, roles = $7,
				attributes = $8, disabled = $9, update_time = $10
			WHERE organization_id = $1 AND kind = $2 AND id = $3`),
		deleteAccount: q(`DELETE FROM {schema}.accounts WHERE organization_id = $1 AND kind = $2 AND id = $3`),
		keysFollowTeam: q(`UPDATE {schema}.api_keys SET team_id = $4
			WHERE organization_id = $1 AND kind = $2 AND owner_id = $3 AND team_id <> $4`),
		// LEAST ignores NULL: an unrevoked key is revoked at $4, a revoked one keeps the
		// earlier time. The api_keys_revoked trigger records and announces the change.
		revokeOwnerKeys: q(`UPDATE {schema}.api_keys SET revoke_time = LEAST(revoke_time, $4)
			WHERE organization_id = $1 AND kind = $2 AND owner_id = $3`),

		createRole: q(`INSERT INTO {schema}.roles (` + roleColumns + `) VALUES ($1, $2, $3, $4, $5, $6, $7)`),
		getRole:    q(`SELECT ` + roleColumns + ` FROM {schema}.roles WHERE organization_id = $1 AND id = $2`),
		listRoles: q(`SELECT ` + roleColumns + ` FROM {schema}.roles WHERE organization_id = $1 AND id > $2
			ORDER BY id LIMIT $3`),
		lockRole: q(`SELECT ` + roleColumns + ` FROM {schema}.roles WHERE organization_id = $1 AND id = $2 FOR UPDATE`),
		updateRole: q(`UPDATE {schema}.roles SET display_name = $3, permissions = $4, scope = $5, update_time = $6
			WHERE organization_id = $1 AND id = $2`),
		deleteRole: q(`DELETE FROM {schema}.roles WHERE organization_id = $1 AND id = $2`),
		shareRoles: q(`SELECT id FROM {schema}.roles WHERE organization_id = $1 AND id = ANY($2) FOR SHARE`),
		roleHolders: q(`SELECT ` + holderSubject + ` AS subject FROM {schema}.accounts
			WHERE organization_id = $1 AND roles @> ARRAY[$2::text] ORDER BY subject LIMIT $3`),

		acceptLicense: q(`INSERT INTO {schema}.license_acceptances (` + licenseColumns + `)
			VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING`),
		getLicense: q(`SELECT ` + licenseColumns + ` FROM {schema}.license_acceptances
			WHERE organization_id = $1 AND team_id = $2 AND model = $3 AND license_name = $4 AND license_version = $5`),
		listLicenses: q(`SELECT ` + licenseColumns + ` FROM {schema}.license_acceptances
			WHERE organization_id = $1 AND ($2 = '' OR team_id = $2)
			ORDER BY team_id, model, license_name, license_version LIMIT $3`),
		listLicensesAfter: q(`SELECT ` + licenseColumns + ` FROM {schema}.license_acceptances
			WHERE organization_id = $1 AND ($2 = '' OR team_id = $2)
				AND (team_id, model, license_name, license_version) > ($4, $5, $6, $7)
			ORDER BY team_id, model, license_name, license_version LIMIT $3`),
		deleteLicense: q(`DELETE FROM {schema}.license_acceptances
			WHERE organization_id = $1 AND team_id = $2 AND model = $3 AND license_name = $4 AND license_version = $5
			RETURNING ` + licenseColumns),
	}
}

// one reads one row with scan, reporting no row as a *NotFoundError of res and id.
func one[T any](row pgx.Row, scan func(pgx.Row) (T, error), res identity.Resource, id string) (T, error) {
	v, err := scan(row)
	if errors.Is(err, pgx.ErrNoRows) {
		return v, &identity.NotFoundError{Resource: res, ID: id}
	}
	return v, err
}

// many collects rows with scan.
func many[T any](rows pgx.Rows, err error, scan func(pgx.Row) (T, error)) ([]T, error) {
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (T, error) { return scan(r) })
}

// created turns a unique violation into an *AlreadyExistsError of res and id.
func created(err error, res identity.Resource, id string) error {
	if pg.IsUniqueViolation(err) {
		return &identity.AlreadyExistsError{Resource: res, ID: id}
	}
	if err != nil {
		return fmt.Errorf("create %s %s: %w", res, id, err)
	}
	return nil
}

// CreateOrganization implements identity.Store.
func (s *Store) CreateOrganization(ctx context.Context, o identity.Organization) error {
	if err := o.Validate(); err != nil {
		return fmt.Errorf("create organization: %w", err)
	}
	_, err := s.pool.Exec(ctx, s.q.admin.createOrg, o.ID, o.DisplayName, o.CreateTime, o.UpdateTime)
	return created(err, identity.ResourceOrganization, o.ID)
}

// GetOrganization implements identity.Store.
func (s *Store) GetOrganization(ctx context.Context, id string) (identity.Organization, error) {
	return one(s.pool.QueryRow(ctx, s.q.admin.getOrg, id), scanOrg, identity.ResourceOrganization, id)
}

// UpdateOrganization implements identity.Store.
func (s *Store) UpdateOrganization(ctx context.Context, id string, fn func(identity.Organization) (identity.Organization, error)) (before, after identity.Organization, err error) {
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if before, err = one(tx.QueryRow(ctx, s.q.admin.lockOrg, id), scanOrg, identity.ResourceOrganization, id); err != nil {
			return err
		}
		if after, err = fn(before); err != nil {
			return err
		}
		after.ID = id
		if err := after.Validate(); err != nil {
			return fmt.Errorf("update organization: %w", err)
		}
		after.CreateTime, after.UpdateTime = identity.NormTime(after.CreateTime), identity.NormTime(after.UpdateTime)
		_, err := tx.Exec(ctx, s.q.admin.updateOrg, id, after.DisplayName, after.UpdateTime)
		return err
	})
	return before, after, err
}

// CreateTeam implements identity.Store.
func (s *Store) CreateTeam(ctx context.Context, t identity.Team) error {
	if err := t.Validate(); err != nil {
		return fmt.Errorf("create team: %w", err)
	}
	_, err := s.pool.Exec(ctx, s.q.admin.createTeam, t.OrganizationID, t.ID, t.DisplayName, orEmptyMap(t.Attributes),
		t.CreateTime, t.UpdateTime)
	return created(err, identity.ResourceTeam, t.ID)
}

// GetTeam implements identity.Store.
func (s *Store) GetTeam(ctx context.Context, org, id string) (identity.Team, error) {
	return one(s.pool.QueryRow(ctx, s.q.admin.getTeam, org, id), scanTeam, identity.ResourceTeam, id)
}

// ListTeams implements identity.Store.
func (s *Store) ListTeams(ctx context.Context, org string, page identity.Page) ([]identity.Team, error) {
	rows, err := s.pool.Query(ctx, s.q.admin.listTeams, org, page.After, page.Limit)
	teams, err := many(rows, err, scanTeam)
	if err != nil {
		return nil, fmt.Errorf("list teams: %w", err)
	}
	return teams, nil
}

// UpdateTeam implements identity.Store.
func (s *Store) UpdateTeam(ctx context.Context, org, id string, fn func(identity.Team) (identity.Team, error)) (before, after identity.Team, err error) {
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if before, err = one(tx.QueryRow(ctx, s.q.admin.lockTeam, org, id), scanTeam, identity.ResourceTeam, id); err != nil {
			return err
		}
		if after, err = fn(before); err != nil {
			return err
		}
		after.OrganizationID, after.ID = org, id
		if err := after.Validate(); err != nil {
			return fmt.Errorf("update team: %w", err)
		}
		after.Attributes = nilIfEmptyMap(after.Attributes)
		after.CreateTime, after.UpdateTime = identity.NormTime(after.CreateTime), identity.NormTime(after.UpdateTime)
		_, err := tx.Exec(ctx, s.q.admin.updateTeam, org, id, after.DisplayName, orEmptyMap(after.Attributes), after.UpdateTime)
		return err
	})
	return before, after, err
}

// DeleteTeam implements identity.Store.
func (s *Store) DeleteTeam(ctx context.Context, org, id string, check func(identity.Team) error) (identity.Team, error) {
	var cur identity.Team
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		if cur, err = one(tx.QueryRow(ctx, s.q.admin.lockTeam, org, id), scanTeam, identity.ResourceTeam, id); err != nil {
			return err
		}
		if err := check(cur); err != nil {
			return err
		}
		if err := inUse(ctx, tx, s.q.admin.teamMembers, identity.ResourceTeam, org, id); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, s.q.admin.deleteTeam, org, id)
		return err
	})
	return cur, err
}

// inUse returns an *InUseError when query finds holders of the record id.
func inUse(ctx context.Context, tx pgx.Tx, query string, res identity.Resource, org, id string) error {
	rows, err := tx.Query(ctx, query, org, id, identity.MaxHolders)
	held, err := many(rows, err, func(r pgx.Row) (string, error) {
		var s string
		return s, r.Scan(&s)
	})
	if err != nil {
		return err
	}
	if len(held) > 0 {
		return &identity.InUseError{Resource: res, ID: id, HeldBy: held}
	}
	return nil
}

// CreateAccount implements identity.Store.
func (s *Store) CreateAccount(ctx context.Context, a identity.Account) error {
	if err := a.Validate(); err != nil {
		return fmt.Errorf("create %s: %w", a.Kind, err)
	}
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := s.checkRefs(ctx, tx, a); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, s.q.admin.createAccount, a.OrganizationID, string(a.Kind), a.ID, a.Email, a.DisplayName,
			a.TeamID, orEmpty(a.Roles), orEmptyMap(a.Attributes), a.Disabled, a.CreateTime, a.UpdateTime)
		return created(err, identity.AccountResource(a.Kind), a.ID)
	})
}

// checkRefs locks a's team and custom roles FOR SHARE and reports those that are not stored.
func (s *Store) checkRefs(ctx context.Context, tx pgx.Tx, a identity.Account) error {
	var missing identity.MissingRefs
	if a.TeamID != "" {
		var one int
		err := tx.QueryRow(ctx, s.q.admin.shareTeam, a.OrganizationID, a.TeamID).Scan(&one)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			missing.Team = true
		case err != nil:
			return err
		}
	}
	var custom []string
	for _, r := range a.Roles {
		if _, builtin := identity.BuiltinRoles[r]; !builtin {
			custom = append(custom, r)
		}
	}
	if len(custom) > 0 {
		rows, err := tx.Query(ctx, s.q.admin.shareRoles, a.OrganizationID, custom)
		found, err := many(rows, err, func(r pgx.Row) (string, error) {
			var id string
			return id, r.Scan(&id)
		})
		if err != nil {
			return err
		}
		for i, r := range a.Roles {
			if _, builtin := identity.BuiltinRoles[r]; !builtin && !slices.Contains(found, r) {
				missing.Roles = append(missing.Roles, i)
			}
		}
	}
	return missing.Err(a)
}

// GetAccount implements identity.Store.
func (s *Store) GetAccount(ctx context.Context, org string, kind identity.Kind, id string) (identity.Account, error) {
	return one(s.pool.QueryRow(ctx, s.q.admin.getAccount, org, string(kind), id), scanAccount, identity.AccountResource(kind), id)
}

// ListAccounts implements identity.Store.
func (s *Store) ListAccounts(ctx context.Context, org string, kind identity.Kind, page identity.Page) ([]identity.Account, error) {
	rows, err := s.pool.Query(ctx, s.q.admin.listAccounts, org, string(kind), page.After, page.Limit)
	accounts, err := many(rows, err, scanAccount)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", kind, err)
	}
	return accounts, nil
}

// UpdateAccount implements identity.Store. The account's keys take its team in the same
// transaction.
func (s *Store) UpdateAccount(ctx context.Context, org string, kind identity.Kind, id string, fn func(identity.Account) (identity.Account, error)) (before, after identity.Account, err error) {
	res := identity.AccountResource(kind)
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if before, err = one(tx.QueryRow(ctx, s.q.admin.lockAccount, org, string(kind), id), scanAccount, res, id); err != nil {
			return err
		}
		if after, err = fn(before); err != nil {
			return err
		}
		after.OrganizationID, after.Kind, after.ID = org, kind, id
		if err := after.Validate(); err != nil {
			return fmt.Errorf("update %s: %w", kind, err)
		}
		if err := s.checkRefs(ctx, tx, after); err != nil {
			return err
		}
		after.Roles, after.Attributes = nilIfEmpty(after.Roles), nilIfEmptyMap(after.Attributes)
		after.CreateTime, after.UpdateTime = identity.NormTime(after.CreateTime), identity.NormTime(after.UpdateTime)
		if _, err := tx.Exec(ctx, s.q.admin.updateAccount, org, string(kind), id, after.Email, after.DisplayName,
			after.TeamID, orEmpty(after.Roles), orEmptyMap(after.Attributes), after.Disabled, after.UpdateTime); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, s.q.admin.keysFollowTeam, org, string(kind), id, after.TeamID)
		return err
	})
	return before, after, err
}

// DeleteAccount implements identity.Store: the account's row is locked FOR UPDATE, so a
// concurrent CreateAPIKey for it (which locks it FOR SHARE) commits first, and its key is
// revoked here, or runs after and finds no owner.
func (s *Store) DeleteAccount(ctx context.Context, org string, kind identity.Kind, id string, at time.Time, check func(identity.Account) error) (identity.Account, error) {
	if at.IsZero() {
		return identity.Account{}, &identity.ValidationError{Field: "revoke_time", Problem: "is required"}
	}
	var cur identity.Account
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		if cur, err = one(tx.QueryRow(ctx, s.q.admin.lockAccount, org, string(kind), id), scanAccount, identity.AccountResource(kind), id); err != nil {
			return err
		}
		if err := check(cur); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, s.q.admin.deleteAccount, org, string(kind), id); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, s.q.admin.revokeOwnerKeys, org, string(kind), id, at)
		return err
	})
	return cur, err
}

// CreateRole implements identity.Store.
func (s *Store) CreateRole(ctx context.Context, r identity.Role) error {
	if err := r.Validate(); err != nil {
		return fmt.Errorf("create role: %w", err)
	}
	_, err := s.pool.Exec(ctx, s.q.admin.createRole, r.OrganizationID, r.ID, r.DisplayName, permissionStrings(r.Permissions),
		string(r.Scope), r.CreateTime, r.UpdateTime)
	return created(err, identity.ResourceRole, r.ID)
}

// GetRole implements identity.Store.
func (s *Store) GetRole(ctx context.Context, org, id string) (identity.Role, error) {
	return one(s.pool.QueryRow(ctx, s.q.admin.getRole, org, id), scanRole, identity.ResourceRole, id)
}

// ListRoles implements identity.Store.
func (s *Store) ListRoles(ctx context.Context, org string, page identity.Page) ([]identity.Role, error) {
	rows, err := s.pool.Query(ctx, s.q.admin.listRoles, org, page.After, page.Limit)
	roles, err := many(rows, err, scanRole)
	if err != nil {
		return nil, fmt.Errorf("list roles: %w", err)
	}
	return roles, nil
}

// UpdateRole implements identity.Store.
func (s *Store) UpdateRole(ctx context.Context, org, id string, fn func(identity.Role) (identity.Role, error)) (before, after identity.Role, err error) {
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if before, err = one(tx.QueryRow(ctx, s.q.admin.lockRole, org, id), scanRole, identity.ResourceRole, id); err != nil {
			return err
		}
		if after, err = fn(before); err != nil {
			return err
		}
		after.OrganizationID, after.ID = org, id
		if err := after.Validate(); err != nil {
			return fmt.Errorf("update role: %w", err)
		}
		after.CreateTime, after.UpdateTime = identity.NormTime(after.CreateTime), identity.NormTime(after.UpdateTime)
		_, err := tx.Exec(ctx, s.q.admin.updateRole, org, id, after.DisplayName, permissionStrings(after.Permissions),
			string(after.Scope), after.UpdateTime)
		return err
	})
	return before, after, err
}

// DeleteRole implements identity.Store: the role's row is locked FOR UPDATE, so account
// writes naming it (which lock it FOR SHARE) either commit first, and are found holding it,
// or run after and find it gone.
func (s *Store) DeleteRole(ctx context.Context, org, id string, check func(identity.Role) error) (identity.Role, error) {
	var cur identity.Role
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		if cur, err = one(tx.QueryRow(ctx, s.q.admin.lockRole, org, id), scanRole, identity.ResourceRole, id); err != nil {
			return err
		}
		if err := check(cur); err != nil {
			return err
		}
		if err := inUse(ctx, tx, s.q.admin.roleHolders, identity.ResourceRole, org, id); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, s.q.admin.deleteRole, org, id)
		return err
	})
	return cur, err
}

// AcceptLicense implements identity.Store. An acceptance it inserts is reported as given,
// not read back: one revoked straight after was still accepted. Only an acceptance already
// stored is read; if that one is revoked before the read, the insert is tried once more.
func (s *Store) AcceptLicense(ctx context.Context, a identity.LicenseAcceptance) (identity.LicenseAcceptance, bool, error) {
	if err := a.Validate(); err != nil {
		return identity.LicenseAcceptance{}, false, fmt.Errorf("accept license: %w", err)
	}
	// Truncate as identitymem does, so what is reported is what Postgres stores (it would
	// round to the microsecond).
	a.AcceptTime = identity.NormTime(a.AcceptTime)
	for range 2 {
		tag, err := s.pool.Exec(ctx, s.q.admin.acceptLicense, a.OrganizationID, a.TeamID, a.Model, a.LicenseName,
			a.LicenseVersion, a.AcceptedBy, a.AcceptTime)
		if err != nil {
			return identity.LicenseAcceptance{}, false, fmt.Errorf("accept license: %w", err)
		}
		if tag.RowsAffected() > 0 {
			return a, false, nil
		}
		stored, err := scanLicense(s.pool.QueryRow(ctx, s.q.admin.getLicense, a.OrganizationID, a.TeamID, a.Model,
			a.LicenseName, a.LicenseVersion))
		switch {
		case err == nil:
			return stored, true, nil
		case !errors.Is(err, pgx.ErrNoRows):
			return identity.LicenseAcceptance{}, false, fmt.Errorf("accept license: %w", err)
		}
	}
	return identity.LicenseAcceptance{}, false, fmt.Errorf("accept license %s: revoked concurrently each time it was found accepted", a.Key())
}

// ListLicenseAcceptances implements identity.Store.
func (s *Store) ListLicenseAcceptances(ctx context.Context, org string, page identity.LicensePage) ([]identity.LicenseAcceptance, error) {
	var (
		rows pgx.Rows
		err  error
	)
	if a := page.After; a != nil {
		rows, err = s.pool.Query(ctx, s.q.admin.listLicensesAfter, org, page.TeamID, page.Limit,
			a.TeamID, a.Model, a.LicenseName, a.LicenseVersion)
	} else {
		rows, err = s.pool.Query(ctx, s.q.admin.listLicenses, org, page.TeamID, page.Limit)
	}
	out, err := many(rows, err, scanLicense)
	if err != nil {
		return nil, fmt.Errorf("list license acceptances: %w", err)
	}
	return out, nil
}

// RevokeLicenseAcceptance implements identity.Store.
func (s *Store) RevokeLicenseAcceptance(ctx context.Context, org string, key identity.LicenseKey) (identity.LicenseAcceptance, error) {
	return one(s.pool.QueryRow(ctx, s.q.admin.deleteLicense, org, key.TeamID, key.Model, key.LicenseName, key.LicenseVersion),
		scanLicense, identity.ResourceLicenseAcceptance, key.String())
}

func permissionStrings(ps []identity.Permission) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = string(p)
	}
	return out
}

func scanOrg(row pgx.Row) (identity.Organization, error) {
	var o identity.Organization
	err := row.Scan(&o.ID, &o.DisplayName, &o.CreateTime, &o.UpdateTime)
	o.CreateTime, o.UpdateTime = o.CreateTime.UTC(), o.UpdateTime.UTC()
	return o, err
}

func scanTeam(row pgx.Row) (identity.Team, error) {
	var t identity.Team
	err := row.Scan(&t.OrganizationID, &t.ID, &t.DisplayName, &t.Attributes, &t.CreateTime, &t.UpdateTime)
	t.Attributes = nilIfEmptyMap(t.Attributes)
	t.CreateTime, t.UpdateTime = t.CreateTime.UTC(), t.UpdateTime.UTC()
	return t, err
}

func scanAccount(row pgx.Row) (identity.Account, error) {
	var (
		a    identity.Account
		kind string
	)
	err := row.Scan(&a.OrganizationID, &kind, &a.ID, &a.Email, &a.DisplayName, &a.TeamID, &a.Roles, &a.Attributes,
		&a.Disabled, &a.CreateTime, &a.UpdateTime)
	a.Kind = identity.Kind(kind)
	a.Roles, a.Attributes = nilIfEmpty(a.Roles), nilIfEmptyMap(a.Attributes)
	a.CreateTime, a.UpdateTime = a.CreateTime.UTC(), a.UpdateTime.UTC()
	return a, err
}

func scanRole(row pgx.Row) (identity.Role, error) {
	var (
		r     identity.Role
		perms []string
		scope string
	)
	err := row.Scan(&r.OrganizationID, &r.ID, &r.DisplayName, &perms, &scope, &r.CreateTime, &r.UpdateTime)
	for _, p := range perms {
		r.Permissions = append(r.Permissions, identity.Permission(p))
	}
	r.Scope = identity.RoleScope(scope)
	r.CreateTime, r.UpdateTime = r.CreateTime.UTC(), r.UpdateTime.UTC()
	return r, err
}

func scanLicense(row pgx.Row) (identity.LicenseAcceptance, error) {
	var a identity.LicenseAcceptance
	err := row.Scan(&a.OrganizationID, &a.TeamID, &a.Model, &a.LicenseName, &a.LicenseVersion, &a.AcceptedBy, &a.AcceptTime)
	a.AcceptTime = a.AcceptTime.UTC()
	return a, err
}
