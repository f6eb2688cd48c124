-- Insights (issue 21): customer evidence, who asked for what. One row per
-- (source, external id), the key RecordInsights is idempotent on; the
-- targets it is linked to are JSON arrays of ids in the row itself, so that
-- forgetting a customer is one DELETE and leaves nothing of them in any
-- other table. The customer is the pseudonymous id the team chose.
CREATE TABLE insights (
    source         TEXT NOT NULL,
    external_id    TEXT NOT NULL,
    kind           TEXT NOT NULL,
    text           TEXT NOT NULL,
    insight_time   INTEGER,
    url            TEXT NOT NULL,
    customer       TEXT NOT NULL,
    segment_id     TEXT NOT NULL,
    importance     TEXT NOT NULL,
    item_keys      TEXT NOT NULL,
    hypothesis_ids TEXT NOT NULL,
    outcome_ids    TEXT NOT NULL,
    record_time    INTEGER NOT NULL,
    PRIMARY KEY (source, external_id)
);
CREATE INDEX insights_by_customer ON insights (customer);

-- A tracker's demand signal on an item (GitHub's +1 reactions, GitLab's
-- upvotes, Jira's votes), as the last sync saw it; NULL where the tracker
-- exposes none.
ALTER TABLE items ADD COLUMN votes INTEGER;
