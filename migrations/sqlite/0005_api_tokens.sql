-- API tokens (who may call). Only the SHA-256 of a token's secret is kept;
-- the secret itself is shown once, at creation. A revoked token keeps its
-- row (when and what it could do stays readable), and its name may be given
-- to a new token: names are unique among live tokens only.
CREATE TABLE api_tokens (
    id          TEXT PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL,
    role        TEXT NOT NULL,
    secret_hash BLOB NOT NULL,
    create_time INTEGER NOT NULL,
    revoke_time INTEGER
);
CREATE UNIQUE INDEX api_tokens_live_name ON api_tokens (name) WHERE revoke_time IS NULL;
