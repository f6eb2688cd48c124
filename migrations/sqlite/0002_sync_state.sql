-- Per-source sync state: the cursor (last tracker update time seen and the
-- ids seen at that instant), the conditional-request validator of the
-- incremental query, and what the last sync did.
CREATE TABLE sync_state (
    source_id          TEXT PRIMARY KEY NOT NULL REFERENCES sources (id) ON DELETE CASCADE,
    cursor_time        INTEGER,
    cursor_ids         TEXT NOT NULL,
    etag               TEXT NOT NULL,
    etag_url           TEXT NOT NULL,
    state              TEXT NOT NULL,
    last_start_time    INTEGER,
    last_finish_time   INTEGER,
    last_error         TEXT NOT NULL,
    last_request_count INTEGER NOT NULL,
    last_upserted_count INTEGER NOT NULL
);
