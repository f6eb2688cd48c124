-- Metrics that flow in (issue 20): where a metric's observations are pulled
-- from (the settings as JSON, never a secret: only the names of the
-- variables that hold them), and what its last pulls did.
ALTER TABLE metrics ADD COLUMN source TEXT;

CREATE TABLE metric_pulls (
    metric_id         TEXT PRIMARY KEY NOT NULL REFERENCES metrics (id) ON DELETE CASCADE,
    last_pull_time    INTEGER,
    last_success_time INTEGER,
    last_stored       INTEGER NOT NULL DEFAULT 0,
    last_refused      INTEGER NOT NULL DEFAULT 0,
    last_error        TEXT NOT NULL DEFAULT ''
);
