-- API keys, stored only as SHA-256 hashes. Queries always name the organisation, except the
-- lookup by hash that authenticates a caller.
CREATE TABLE api_keys (
    organization_id text        NOT NULL,
    id              text        NOT NULL,
    display_name    text        NOT NULL DEFAULT '',
    subject         text        NOT NULL,
    kind            text        NOT NULL CHECK (kind IN ('user', 'service_account')),
    team_id         text        NOT NULL DEFAULT '',
    roles           text[]      NOT NULL DEFAULT '{}',
    attributes      jsonb       NOT NULL DEFAULT '{}',
    prefix          text        NOT NULL,
    hash            bytea       NOT NULL CHECK (length(hash) = 32),
    expire_time     timestamptz,
    revoke_time     timestamptz,
    create_time     timestamptz NOT NULL,
    PRIMARY KEY (organization_id, id)
);

CREATE UNIQUE INDEX api_keys_hash_key ON api_keys (hash);
