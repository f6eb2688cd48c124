-- Customers (issue 21): segments of customers with similar desired
-- outcomes, their desired outcomes, and the survey waves measuring each
-- outcome's importance and satisfaction. Each outcome is backed by the
-- metric of the same id (its observations are the waves' satisfaction),
-- written in the same transaction; deleting the outcome deletes it.
CREATE TABLE segments (
    id          TEXT PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL,
    description TEXT NOT NULL,
    weight      REAL NOT NULL,
    create_time INTEGER NOT NULL,
    update_time INTEGER NOT NULL
);

CREATE TABLE desired_outcomes (
    id          TEXT PRIMARY KEY NOT NULL REFERENCES metrics (id),
    segment_id  TEXT NOT NULL REFERENCES segments (id),
    statement   TEXT NOT NULL,
    create_time INTEGER NOT NULL,
    update_time INTEGER NOT NULL
);
CREATE INDEX desired_outcomes_by_segment ON desired_outcomes (segment_id, id);

CREATE TABLE survey_waves (
    outcome_id   TEXT NOT NULL REFERENCES desired_outcomes (id) ON DELETE CASCADE,
    at           INTEGER NOT NULL,
    importance   REAL NOT NULL,
    satisfaction REAL NOT NULL,
    respondents  INTEGER NOT NULL,
    PRIMARY KEY (outcome_id, at)
);
