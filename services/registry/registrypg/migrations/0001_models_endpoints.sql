-- Models and endpoints of every organization. Keys use the "C" collation so that lists are
-- ordered by bytes, as the in-memory store orders them and as page tokens assume.
CREATE TABLE models (
    organization_id          text COLLATE "C" NOT NULL,
    name                     text COLLATE "C" NOT NULL,
    display_name             text NOT NULL,
    vendor                   text NOT NULL,
    lifecycle_state          text NOT NULL,
    context_window           integer NOT NULL,
    input_price_per_million  double precision NOT NULL,
    output_price_per_million double precision NOT NULL,
    endpoint_ids             text[] NOT NULL,
    PRIMARY KEY (organization_id, name)
);

CREATE TABLE endpoints (
    organization_id text COLLATE "C" NOT NULL,
    id              text COLLATE "C" NOT NULL,
    provider        text NOT NULL,
    base_url        text NOT NULL,
    upstream_model  text NOT NULL,
    credential_ref  text NOT NULL,
    region          text NOT NULL,
    PRIMARY KEY (organization_id, id)
);
