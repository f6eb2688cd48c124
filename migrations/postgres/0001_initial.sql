-- plumbline's schema on PostgreSQL: the SQLite schema of migrations/sqlite
-- 0001-0012 as it stands, in one step. Times are Unix nanoseconds (BIGINT)
-- so that they read back bit for bit as on SQLite; enums are their
-- snake_case names; labels, link rules and id lists are JSON text, written
-- and read whole. Plain SQL that PostgreSQL-compatible distributed engines
-- (CockroachDB, YugabyteDB) also run: no extensions, no triggers, no
-- stored procedures.

CREATE TABLE sources (
    id             TEXT PRIMARY KEY,
    kind           TEXT NOT NULL,
    base_url       TEXT NOT NULL,
    project_key    TEXT NOT NULL,
    token_env      TEXT NOT NULL,
    link_rules     TEXT NOT NULL,
    estimate_field TEXT NOT NULL,
    create_time    BIGINT NOT NULL,
    update_time    BIGINT NOT NULL
);

-- Item keys compare bytewise (COLLATE "C"), as SQLite's do, whatever the
-- database's locale: pages of items are read in key order through this
-- index, and the same keys must come in the same order on both backends.
-- The columns that name an item share the collation.
CREATE TABLE items (
    key         TEXT COLLATE "C" PRIMARY KEY,
    source_id   TEXT NOT NULL REFERENCES sources (id),
    external_id TEXT NOT NULL,
    title       TEXT NOT NULL,
    body        TEXT NOT NULL,
    url         TEXT NOT NULL,
    state       TEXT NOT NULL,
    labels      TEXT NOT NULL,
    estimate    DOUBLE PRECISION,
    parent_key  TEXT NOT NULL,
    create_time BIGINT,
    update_time BIGINT,
    close_time  BIGINT,
    -- A tracker's demand signal (GitHub's +1 reactions, GitLab's upvotes,
    -- Jira's votes) as the last sync saw it; NULL where there is none.
    votes       BIGINT
);
CREATE INDEX items_by_source ON items (source_id, key);

CREATE TABLE goals (
    id             TEXT PRIMARY KEY,
    title          TEXT NOT NULL,
    description    TEXT NOT NULL,
    level          TEXT NOT NULL,
    parent_id      TEXT NOT NULL,
    key_value_area TEXT NOT NULL,
    weight         DOUBLE PRECISION NOT NULL,
    create_time    BIGINT NOT NULL,
    update_time    BIGINT NOT NULL
);

CREATE TABLE metrics (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    unit          TEXT NOT NULL,
    direction     TEXT NOT NULL,
    baseline      DOUBLE PRECISION NOT NULL,
    target        DOUBLE PRECISION NOT NULL,
    cadence_nanos BIGINT,
    create_time   BIGINT NOT NULL,
    update_time   BIGINT NOT NULL,
    -- Where observations are pulled from (settings as JSON, never a
    -- secret: only the names of the variables that hold them).
    source        TEXT
);

CREATE TABLE observations (
    metric_id    TEXT NOT NULL REFERENCES metrics (id) ON DELETE CASCADE,
    observe_time BIGINT NOT NULL,
    value        DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (metric_id, observe_time)
);

CREATE TABLE metric_pulls (
    metric_id         TEXT PRIMARY KEY REFERENCES metrics (id) ON DELETE CASCADE,
    last_pull_time    BIGINT,
    last_success_time BIGINT,
    last_stored       BIGINT NOT NULL DEFAULT 0,
    last_refused      BIGINT NOT NULL DEFAULT 0,
    last_error        TEXT NOT NULL DEFAULT ''
);

CREATE TABLE hypotheses (
    id              TEXT PRIMARY KEY,
    statement       TEXT NOT NULL,
    goal_id         TEXT NOT NULL REFERENCES goals (id),
    metric_id       TEXT NOT NULL REFERENCES metrics (id),
    expected_effect DOUBLE PRECISION NOT NULL,
    confidence      DOUBLE PRECISION NOT NULL,
    status          TEXT NOT NULL,
    check_time      BIGINT,
    create_time     BIGINT NOT NULL,
    update_time     BIGINT NOT NULL
);

-- Links are read by hypothesis from the in-memory index only; deleting a
-- hypothesis (rare) scans this table rather than every write paying for a
-- second index.
CREATE TABLE links (
    item_key      TEXT COLLATE "C" NOT NULL REFERENCES items (key) ON DELETE CASCADE,
    hypothesis_id TEXT NOT NULL REFERENCES hypotheses (id) ON DELETE CASCADE,
    contribution  DOUBLE PRECISION NOT NULL,
    origin        TEXT NOT NULL,
    rationale     TEXT NOT NULL,
    create_time   BIGINT NOT NULL,
    update_time   BIGINT NOT NULL,
    PRIMARY KEY (item_key, hypothesis_id)
);

CREATE TABLE sync_state (
    source_id           TEXT PRIMARY KEY REFERENCES sources (id) ON DELETE CASCADE,
    cursor_time         BIGINT,
    cursor_ids          TEXT NOT NULL,
    etag                TEXT NOT NULL,
    etag_url            TEXT NOT NULL,
    state               TEXT NOT NULL,
    last_start_time     BIGINT,
    last_finish_time    BIGINT,
    last_error          TEXT NOT NULL,
    last_request_count  BIGINT NOT NULL,
    last_upserted_count BIGINT NOT NULL
);

CREATE TABLE releases (
    id           TEXT PRIMARY KEY,
    release_time BIGINT NOT NULL,
    item_keys    TEXT NOT NULL,
    origin       TEXT NOT NULL,
    note         TEXT NOT NULL,
    create_time  BIGINT NOT NULL
);
CREATE INDEX releases_by_time ON releases (release_time);

CREATE TABLE experiments (
    id            TEXT PRIMARY KEY,
    hypothesis_id TEXT NOT NULL REFERENCES hypotheses (id) ON DELETE CASCADE,
    lift          DOUBLE PRECISION NOT NULL,
    ci_low        DOUBLE PRECISION NOT NULL,
    ci_high       DOUBLE PRECISION NOT NULL,
    result_time   BIGINT NOT NULL,
    source        TEXT NOT NULL
);
CREATE INDEX experiments_by_hypothesis ON experiments (hypothesis_id, result_time);

CREATE TABLE evidence (
    hypothesis_id        TEXT NOT NULL REFERENCES hypotheses (id) ON DELETE CASCADE,
    -- A release id, or "experiment:<id>".
    subject_id           TEXT NOT NULL,
    method               TEXT NOT NULL,
    outcome              TEXT NOT NULL,
    realized_effect      DOUBLE PRECISION,
    expected_effect      DOUBLE PRECISION NOT NULL,
    confounded           BOOLEAN NOT NULL,
    step                 DOUBLE PRECISION,
    points_before        BIGINT NOT NULL,
    points_after         BIGINT NOT NULL,
    confidence_before    DOUBLE PRECISION NOT NULL,
    confidence_after     DOUBLE PRECISION NOT NULL,
    status_after         TEXT NOT NULL,
    reason               TEXT NOT NULL,
    record_time          BIGINT NOT NULL,
    step_se              DOUBLE PRECISION,
    delivered            DOUBLE PRECISION,
    log_likelihood_ratio DOUBLE PRECISION NOT NULL DEFAULT 0,
    PRIMARY KEY (hypothesis_id, subject_id)
);

-- Only the SHA-256 of a token's secret is kept. A revoked token keeps its
-- row; names are unique among live tokens only.
CREATE TABLE api_tokens (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    role        TEXT NOT NULL,
    secret_hash BYTEA NOT NULL,
    create_time BIGINT NOT NULL,
    revoke_time BIGINT
);
CREATE UNIQUE INDEX api_tokens_live_name ON api_tokens (name) WHERE revoke_time IS NULL;

CREATE TABLE item_splits (
    item_key       TEXT COLLATE "C" PRIMARY KEY REFERENCES items (key) ON DELETE CASCADE,
    plan_kind      TEXT NOT NULL,
    hypothesis_ids TEXT NOT NULL,
    create_time    BIGINT NOT NULL
);

CREATE TABLE item_removals (
    item_key    TEXT COLLATE "C" PRIMARY KEY REFERENCES items (key) ON DELETE CASCADE,
    remove_time BIGINT NOT NULL,
    reason      TEXT NOT NULL,
    detail      TEXT NOT NULL
);

CREATE TABLE ranking_snapshots (
    id         BIGSERIAL PRIMARY KEY,
    take_time  BIGINT NOT NULL,
    origin     TEXT NOT NULL,
    note       TEXT NOT NULL DEFAULT '',
    top_n      BIGINT NOT NULL,
    item_count BIGINT NOT NULL,
    items      TEXT NOT NULL
);
CREATE INDEX ranking_snapshots_by_time ON ranking_snapshots (take_time, id);

CREATE TABLE segments (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    description TEXT NOT NULL,
    weight      DOUBLE PRECISION NOT NULL,
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL
);

CREATE TABLE desired_outcomes (
    id          TEXT PRIMARY KEY REFERENCES metrics (id),
    segment_id  TEXT NOT NULL REFERENCES segments (id),
    statement   TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL
);
CREATE INDEX desired_outcomes_by_segment ON desired_outcomes (segment_id, id);

CREATE TABLE survey_waves (
    outcome_id   TEXT NOT NULL REFERENCES desired_outcomes (id) ON DELETE CASCADE,
    at           BIGINT NOT NULL,
    importance   DOUBLE PRECISION NOT NULL,
    satisfaction DOUBLE PRECISION NOT NULL,
    respondents  BIGINT NOT NULL,
    PRIMARY KEY (outcome_id, at)
);

CREATE TABLE insights (
    source         TEXT NOT NULL,
    external_id    TEXT NOT NULL,
    kind           TEXT NOT NULL,
    text           TEXT NOT NULL,
    insight_time   BIGINT,
    url            TEXT NOT NULL,
    customer       TEXT NOT NULL,
    segment_id     TEXT NOT NULL,
    importance     TEXT NOT NULL,
    item_keys      TEXT NOT NULL,
    hypothesis_ids TEXT NOT NULL,
    outcome_ids    TEXT NOT NULL,
    record_time    BIGINT NOT NULL,
    PRIMARY KEY (source, external_id)
);
CREATE INDEX insights_by_customer ON insights (customer);
