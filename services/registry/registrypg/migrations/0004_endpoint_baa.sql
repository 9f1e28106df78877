-- Whether an endpoint's vendor has signed a business associate agreement (HIPAA) with the
-- organisation. Existing endpoints are not covered until an admin says they are.
ALTER TABLE endpoints
    ADD COLUMN covered_by_baa boolean NOT NULL DEFAULT false;
