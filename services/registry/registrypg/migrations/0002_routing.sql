-- Routing: fallback models, endpoint weights and priorities, vendor API versions. Existing
-- rows get the values that keep their behaviour: no fallbacks, weight 0 (which means 1),
-- priority 0, no API version.
ALTER TABLE models
    ADD COLUMN fallback_models text[] NOT NULL DEFAULT '{}';

ALTER TABLE endpoints
    ADD COLUMN weight      integer NOT NULL DEFAULT 0,
    ADD COLUMN priority    integer NOT NULL DEFAULT 0,
    ADD COLUMN api_version text NOT NULL DEFAULT '';
