-- CEL conditions, the extended obligations, and revisions: every policy carries its current
-- revision, and policy_revisions keeps every revision of every policy (deletions included),
-- outliving the policy.
ALTER TABLE policies
    ADD COLUMN condition                text NOT NULL DEFAULT '',
    ADD COLUMN allowed_endpoint_regions text[] NOT NULL DEFAULT '{}',
    ADD COLUMN allowed_modalities       text[] NOT NULL DEFAULT '{}',
    -- NULL: no retention limit.
    ADD COLUMN log_retention_us         bigint,
    ADD COLUMN log_group                text NOT NULL DEFAULT '',
    ADD COLUMN mask_personal_data       boolean NOT NULL DEFAULT false,
    ADD COLUMN require_baa_coverage     boolean NOT NULL DEFAULT false,
    ADD COLUMN revision                 bigint NOT NULL DEFAULT 1,
    ADD COLUMN create_time              timestamptz,
    ADD COLUMN updated_by               text NOT NULL DEFAULT '';

UPDATE policies SET create_time = update_time;
ALTER TABLE policies ALTER COLUMN create_time SET NOT NULL;

CREATE TABLE policy_revisions (
    organization_id          text COLLATE "C" NOT NULL,
    id                       text COLLATE "C" NOT NULL,
    revision                 bigint NOT NULL,
    deleted                  boolean NOT NULL,
    description              text NOT NULL,
    effect                   text NOT NULL,
    subjects                 text[] NOT NULL,
    models                   text[] NOT NULL,
    condition                text NOT NULL,
    moderation_profile       text NOT NULL,
    max_output_tokens        integer NOT NULL,
    allowed_endpoint_regions text[] NOT NULL,
    allowed_modalities       text[] NOT NULL,
    log_retention_us         bigint,
    log_group                text NOT NULL,
    mask_personal_data       boolean NOT NULL,
    require_baa_coverage     boolean NOT NULL,
    create_time              timestamptz NOT NULL,
    update_time              timestamptz NOT NULL,
    updated_by               text NOT NULL,
    PRIMARY KEY (organization_id, id, revision)
);

-- The policies written before history existed start theirs at revision 1.
INSERT INTO policy_revisions (organization_id, id, revision, deleted, description, effect, subjects,
    models, condition, moderation_profile, max_output_tokens, allowed_endpoint_regions,
    allowed_modalities, log_retention_us, log_group, mask_personal_data, require_baa_coverage,
    create_time, update_time, updated_by)
SELECT organization_id, id, revision, false, description, effect, subjects, models, condition,
    moderation_profile, max_output_tokens, allowed_endpoint_regions, allowed_modalities,
    log_retention_us, log_group, mask_personal_data, require_baa_coverage, create_time,
    update_time, updated_by
FROM policies;
