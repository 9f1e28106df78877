-- Audit chains: one per (organization, service). Rows of events are never updated or
-- deleted; chain_heads only moves forward. Triggers refuse anything else, for every role
-- but one that disables triggers (a superuser, through session_replication_role or
-- ALTER TABLE ... DISABLE TRIGGER): the hash chain, checked by `fmgate audit verify`, is
-- what detects changes made that way.

CREATE TABLE chain_heads (
	organization_id text   NOT NULL,
	service         text   NOT NULL,
	sequence        bigint NOT NULL CHECK (sequence >= 0),
	hash            bytea  NOT NULL,
	PRIMARY KEY (organization_id, service)
);

CREATE TABLE events (
	organization_id text        NOT NULL,
	service         text        NOT NULL,
	sequence        bigint      NOT NULL CHECK (sequence > 0),
	id              text        NOT NULL,
	event_time      timestamptz NOT NULL,
	actor_subject   text        NOT NULL,
	actor_kind      text        NOT NULL,
	action          text        NOT NULL,
	resource_type   text        NOT NULL,
	resource_id     text        NOT NULL,
	-- json, not jsonb: json keeps the exact text, which the record's hash covers.
	before          json,
	after           json,
	details         json,
	trace_id        text        NOT NULL,
	prev_hash       bytea       NOT NULL,
	hash            bytea       NOT NULL,
	PRIMARY KEY (organization_id, service, sequence),
	UNIQUE (organization_id, service, id)
);

CREATE INDEX events_list ON events (organization_id, event_time, service, sequence);

CREATE FUNCTION refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	RAISE EXCEPTION 'audit table % is append-only: % refused', TG_TABLE_NAME, TG_OP
		USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
	FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
	FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();

CREATE FUNCTION head_forward_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF NEW.organization_id <> OLD.organization_id OR NEW.service <> OLD.service
		OR NEW.sequence <= OLD.sequence THEN
		RAISE EXCEPTION 'audit chain head of % / % only moves forward', OLD.organization_id, OLD.service
			USING ERRCODE = 'insufficient_privilege';
	END IF;
	RETURN NEW;
END
$$;

CREATE TRIGGER chain_heads_forward_only BEFORE UPDATE ON chain_heads
	FOR EACH ROW EXECUTE FUNCTION head_forward_only();
CREATE TRIGGER chain_heads_no_delete BEFORE DELETE ON chain_heads
	FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER chain_heads_no_truncate BEFORE TRUNCATE ON chain_heads
	FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();
