-- Many sidecars on one database (issue 22).
--
-- The change log: one row per committed write that changed what the
-- in-memory index holds, in commit order. `seq` comes from the one row of
-- change_seq, incremented as the write's last statement: its row lock is
-- held until the write commits, so positions are handed out in commit order
-- and without gaps (a write that rolls back gives its number back), and a
-- follower reading `seq > last` in order can never skip a row that becomes
-- visible later. `changed` is JSON: {"items": [keys], "model": true}.
CREATE TABLE change_seq (
    id  INTEGER PRIMARY KEY CHECK (id = 1),
    seq BIGINT NOT NULL
);
INSERT INTO change_seq (id, seq) VALUES (1, 0);

CREATE TABLE change_log (
    seq         BIGINT PRIMARY KEY,
    replica     TEXT NOT NULL,
    commit_time BIGINT NOT NULL,
    changed     TEXT NOT NULL
);

-- Background work (a source's sync, a metric's pull, validation, snapshots)
-- runs on the one sidecar holding its lease; a lease not renewed by its
-- expiry can be taken by another.
CREATE TABLE leases (
    name        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    expire_time BIGINT NOT NULL
);
