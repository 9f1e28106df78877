-- Model cards, lifecycle history and dedicated-hosting requests. The card is one JSON
-- document (registry.ModelCard): it is read and written whole and never queried by field,
-- but for list filters on use-case tags. Existing models get an empty card.
ALTER TABLE models
    ADD COLUMN card jsonb NOT NULL DEFAULT '{}';

-- Every lifecycle transition of every model, kept after the model is deleted. seq orders a
-- model's history and pages through it.
CREATE TABLE model_transitions (
    organization_id text COLLATE "C" NOT NULL,
    model           text COLLATE "C" NOT NULL,
    seq             bigint GENERATED ALWAYS AS IDENTITY,
    from_state      text NOT NULL,
    to_state        text NOT NULL,
    actor           text NOT NULL,
    evidence_note   text NOT NULL,
    create_time     timestamptz NOT NULL,
    PRIMARY KEY (organization_id, model, seq)
);

CREATE TABLE hosting_requests (
    organization_id     text COLLATE "C" NOT NULL,
    id                  text COLLATE "C" NOT NULL,
    requester           text NOT NULL,
    model               text NOT NULL,
    requests_per_minute integer NOT NULL,
    tokens_per_minute   bigint NOT NULL,
    region              text NOT NULL,
    justification       text NOT NULL,
    state               text NOT NULL,
    decided_by          text NOT NULL,
    decision_note       text NOT NULL,
    decide_time         timestamptz,
    updated_by          text NOT NULL,
    status_note         text NOT NULL,
    create_time         timestamptz NOT NULL,
    update_time         timestamptz NOT NULL,
    PRIMARY KEY (organization_id, id)
);
