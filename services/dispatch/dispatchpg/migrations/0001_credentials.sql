-- Vendor credentials of every organization, sealed (AES-256-GCM under the master key, bound
-- to organization and name): this table never holds a plaintext value.
CREATE TABLE credentials (
    organization_id text COLLATE "C" NOT NULL,
    name            text COLLATE "C" NOT NULL,
    sealed          bytea NOT NULL,
    update_time     timestamptz NOT NULL,
    PRIMARY KEY (organization_id, name)
);
