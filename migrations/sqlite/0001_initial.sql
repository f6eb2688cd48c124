-- The value model of plumbline. Times are Unix nanoseconds (INTEGER) so that
-- they read back bit for bit; labels and link rules are JSON text.

CREATE TABLE sources (
    id             TEXT PRIMARY KEY NOT NULL,
    kind           TEXT NOT NULL,
    base_url       TEXT NOT NULL,
    project_key    TEXT NOT NULL,
    token_env      TEXT NOT NULL,
    link_rules     TEXT NOT NULL,
    estimate_field TEXT NOT NULL,
    create_time    INTEGER NOT NULL,
    update_time    INTEGER NOT NULL
);

CREATE TABLE items (
    key         TEXT PRIMARY KEY NOT NULL,
    source_id   TEXT NOT NULL REFERENCES sources (id),
    external_id TEXT NOT NULL,
    title       TEXT NOT NULL,
    body        TEXT NOT NULL,
    url         TEXT NOT NULL,
    state       TEXT NOT NULL,
    labels      TEXT NOT NULL,
    estimate    REAL,
    parent_key  TEXT NOT NULL,
    create_time INTEGER,
    update_time INTEGER,
    close_time  INTEGER
);
CREATE INDEX items_by_source ON items (source_id, key);

CREATE TABLE goals (
    id             TEXT PRIMARY KEY NOT NULL,
    title          TEXT NOT NULL,
    description    TEXT NOT NULL,
    level          TEXT NOT NULL,
    parent_id      TEXT NOT NULL,
    key_value_area TEXT NOT NULL,
    weight         REAL NOT NULL,
    create_time    INTEGER NOT NULL,
    update_time    INTEGER NOT NULL
);

CREATE TABLE metrics (
    id            TEXT PRIMARY KEY NOT NULL,
    name          TEXT NOT NULL,
    unit          TEXT NOT NULL,
    direction     TEXT NOT NULL,
    baseline      REAL NOT NULL,
    target        REAL NOT NULL,
    cadence_nanos INTEGER,
    create_time   INTEGER NOT NULL,
    update_time   INTEGER NOT NULL
);

CREATE TABLE observations (
    metric_id    TEXT NOT NULL REFERENCES metrics (id) ON DELETE CASCADE,
    observe_time INTEGER NOT NULL,
    value        REAL NOT NULL,
    PRIMARY KEY (metric_id, observe_time)
);

CREATE TABLE hypotheses (
    id              TEXT PRIMARY KEY NOT NULL,
    statement       TEXT NOT NULL,
    goal_id         TEXT NOT NULL REFERENCES goals (id),
    metric_id       TEXT NOT NULL REFERENCES metrics (id),
    expected_effect REAL NOT NULL,
    confidence      REAL NOT NULL,
    status          TEXT NOT NULL,
    check_time      INTEGER,
    create_time     INTEGER NOT NULL,
    update_time     INTEGER NOT NULL
);

CREATE TABLE links (
    item_key      TEXT NOT NULL REFERENCES items (key) ON DELETE CASCADE,
    hypothesis_id TEXT NOT NULL REFERENCES hypotheses (id) ON DELETE CASCADE,
    contribution  REAL NOT NULL,
    origin        TEXT NOT NULL,
    rationale     TEXT NOT NULL,
    create_time   INTEGER NOT NULL,
    update_time   INTEGER NOT NULL,
    PRIMARY KEY (item_key, hypothesis_id)
);
CREATE INDEX links_by_hypothesis ON links (hypothesis_id, item_key);
