-- The ranking's history (issue 19, "since last refinement"): the top N of
-- the value-density ranking at one time. One row per snapshot, its items
-- (rank order; key, title, state, value, size, density and score terms) as
-- one JSON array: a snapshot is always written, read and pruned whole and
-- never queried inside, so rows per item would only multiply the writes
-- (up to 1000 rows a snapshot) and the pruning.
CREATE TABLE ranking_snapshots (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    take_time  INTEGER NOT NULL,
    origin     TEXT NOT NULL,
    note       TEXT NOT NULL DEFAULT '',
    top_n      INTEGER NOT NULL,
    item_count INTEGER NOT NULL,
    items      TEXT NOT NULL
);

CREATE INDEX ranking_snapshots_by_time ON ranking_snapshots (take_time, id);
