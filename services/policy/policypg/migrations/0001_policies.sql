-- Policies of every organization, and each organization's version counter, which every
-- change of its policies increments in the same statement.
CREATE TABLE policies (
    organization_id    text COLLATE "C" NOT NULL,
    id                 text COLLATE "C" NOT NULL,
    description        text NOT NULL,
    effect             text NOT NULL,
    subjects           text[] NOT NULL,
    models             text[] NOT NULL,
    moderation_profile text NOT NULL,
    max_output_tokens  integer NOT NULL,
    update_time        timestamptz NOT NULL,
    PRIMARY KEY (organization_id, id)
);

CREATE TABLE policy_versions (
    organization_id text COLLATE "C" PRIMARY KEY,
    version         bigint NOT NULL
);
