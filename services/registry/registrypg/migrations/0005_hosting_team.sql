-- The team a hosting request is made for. Requests stored before teams were recorded have
-- none (''); new ones always have one. Team members list their team's requests.
ALTER TABLE hosting_requests
    ADD COLUMN team_id text COLLATE "C" NOT NULL DEFAULT '';

CREATE INDEX hosting_requests_team ON hosting_requests (organization_id, team_id, id);
