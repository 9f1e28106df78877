-- API key scopes, and revocation notices: every time a key's revoke_time is set or moved
-- earlier, the same transaction records when (revoke_record_time, for the poll that catches
-- up after a lost listener connection) and sends a NOTIFY that every replica LISTENs to.
ALTER TABLE api_keys
    ADD COLUMN scope_models       text[] NOT NULL DEFAULT '{}',
    ADD COLUMN scope_operations   text[] NOT NULL DEFAULT '{}',
    ADD COLUMN revoke_record_time timestamptz;

CREATE INDEX api_keys_revoke_record_time ON api_keys (revoke_record_time)
    WHERE revoke_record_time IS NOT NULL;

CREATE FUNCTION api_keys_revoked() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.revoke_time IS NOT NULL AND (TG_OP = 'INSERT' OR NEW.revoke_time IS DISTINCT FROM OLD.revoke_time) THEN
        NEW.revoke_record_time := clock_timestamp();
        -- One channel for every schema; the payload names the schema so that stores on other
        -- schemas (tests, other deployments on one server) ignore it.
        PERFORM pg_notify('fmgate_identity_revocations', json_build_object(
            'schema', TG_TABLE_SCHEMA,
            'organization_id', NEW.organization_id,
            'id', NEW.id,
            'revoke_time', NEW.revoke_time)::text);
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER api_keys_revoked BEFORE INSERT OR UPDATE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION api_keys_revoked();
