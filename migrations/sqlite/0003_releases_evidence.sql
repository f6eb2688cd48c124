-- Releases (an item closed in its tracker, or a deploy named through the API),
-- experiment results, and the evidence that validation stores per release and
-- hypothesis.
CREATE TABLE releases (
    id           TEXT PRIMARY KEY NOT NULL,
    release_time INTEGER NOT NULL,
    item_keys    TEXT NOT NULL,
    origin       TEXT NOT NULL,
    note         TEXT NOT NULL,
    create_time  INTEGER NOT NULL
);
CREATE INDEX releases_by_time ON releases (release_time);

CREATE TABLE experiments (
    id            TEXT PRIMARY KEY NOT NULL,
    hypothesis_id TEXT NOT NULL REFERENCES hypotheses (id) ON DELETE CASCADE,
    lift          REAL NOT NULL,
    ci_low        REAL NOT NULL,
    ci_high       REAL NOT NULL,
    result_time   INTEGER NOT NULL,
    source        TEXT NOT NULL
);
CREATE INDEX experiments_by_hypothesis ON experiments (hypothesis_id, result_time);

CREATE TABLE evidence (
    hypothesis_id     TEXT NOT NULL REFERENCES hypotheses (id) ON DELETE CASCADE,
    -- A release id, or "experiment:<id>".
    subject_id        TEXT NOT NULL,
    method            TEXT NOT NULL,
    outcome           TEXT NOT NULL,
    realized_effect   REAL,
    expected_effect   REAL NOT NULL,
    confounded        INTEGER NOT NULL,
    step              REAL,
    points_before     INTEGER NOT NULL,
    points_after      INTEGER NOT NULL,
    confidence_before REAL NOT NULL,
    confidence_after  REAL NOT NULL,
    status_after      TEXT NOT NULL,
    reason            TEXT NOT NULL,
    record_time       INTEGER NOT NULL,
    PRIMARY KEY (hypothesis_id, subject_id)
);
