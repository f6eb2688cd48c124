-- Items their tracker no longer returns (deleted, moved to another project,
-- or missing from a completed full sync). The item row stays (releases and
-- evidence name it); a row here takes it out of the ranking until a sync
-- returns it again, which deletes the row. Self-contained: it only adds a
-- table, so it can be renumbered freely.
CREATE TABLE item_removals (
    item_key    TEXT PRIMARY KEY NOT NULL REFERENCES items (key) ON DELETE CASCADE,
    remove_time INTEGER NOT NULL,
    reason      TEXT NOT NULL,
    detail      TEXT NOT NULL
);
