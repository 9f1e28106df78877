-- Organisations, teams, users and service accounts (one accounts table, by kind), custom
-- roles and licence acceptances. Ids sort bytewise (COLLATE "C") so that pages follow the
-- same order in every deployment and in the memory store. Every query names the
-- organisation. References (an account's team and custom roles) are checked by the store
-- under row locks rather than by foreign keys: roles are an array, and an empty team means
-- none.
CREATE TABLE organizations (
    organization_id text COLLATE "C" PRIMARY KEY,
    display_name    text        NOT NULL DEFAULT '',
    create_time     timestamptz NOT NULL,
    update_time     timestamptz NOT NULL
);

CREATE TABLE teams (
    organization_id text COLLATE "C" NOT NULL,
    id              text COLLATE "C" NOT NULL,
    display_name    text        NOT NULL DEFAULT '',
    attributes      jsonb       NOT NULL DEFAULT '{}',
    create_time     timestamptz NOT NULL,
    update_time     timestamptz NOT NULL,
    PRIMARY KEY (organization_id, id)
);

CREATE TABLE accounts (
    organization_id text COLLATE "C" NOT NULL,
    kind            text        NOT NULL CHECK (kind IN ('user', 'service_account')),
    id              text COLLATE "C" NOT NULL,
    email           text        NOT NULL DEFAULT '',
    display_name    text        NOT NULL DEFAULT '',
    team_id         text COLLATE "C" NOT NULL DEFAULT '',
    roles           text[]      NOT NULL DEFAULT '{}',
    attributes      jsonb       NOT NULL DEFAULT '{}',
    disabled        boolean     NOT NULL DEFAULT false,
    create_time     timestamptz NOT NULL,
    update_time     timestamptz NOT NULL,
    PRIMARY KEY (organization_id, kind, id)
);

-- Members of a team and holders of a role, for the checks before deleting either.
CREATE INDEX accounts_team ON accounts (organization_id, team_id) WHERE team_id <> '';
CREATE INDEX accounts_roles ON accounts USING gin (roles);

CREATE TABLE roles (
    organization_id text COLLATE "C" NOT NULL,
    id              text COLLATE "C" NOT NULL,
    display_name    text        NOT NULL DEFAULT '',
    permissions     text[]      NOT NULL,
    scope           text        NOT NULL CHECK (scope IN ('organization', 'team')),
    create_time     timestamptz NOT NULL,
    update_time     timestamptz NOT NULL,
    PRIMARY KEY (organization_id, id)
);

CREATE TABLE license_acceptances (
    organization_id text COLLATE "C" NOT NULL,
    team_id         text COLLATE "C" NOT NULL,
    model           text COLLATE "C" NOT NULL,
    license_name    text COLLATE "C" NOT NULL,
    license_version text COLLATE "C" NOT NULL,
    accepted_by     text        NOT NULL,
    accept_time     timestamptz NOT NULL,
    PRIMARY KEY (organization_id, team_id, model, license_name, license_version)
);

-- API keys name their owner's id (the subject without "user:" or "svc:") so that
-- authentication joins the owner, and page bytewise by id.
ALTER TABLE api_keys
    ALTER COLUMN id TYPE text COLLATE "C",
    ALTER COLUMN organization_id TYPE text COLLATE "C",
    ALTER COLUMN team_id TYPE text COLLATE "C",
    ADD COLUMN owner_id text COLLATE "C" NOT NULL DEFAULT '';

UPDATE api_keys SET owner_id = CASE
    WHEN kind = 'user' AND subject LIKE 'user:%' THEN substr(subject, 6)
    WHEN kind = 'service_account' AND subject LIKE 'svc:%' THEN substr(subject, 5)
    ELSE subject END;

CREATE INDEX api_keys_owner ON api_keys (organization_id, kind, owner_id);
CREATE INDEX api_keys_team ON api_keys (organization_id, team_id, id);
