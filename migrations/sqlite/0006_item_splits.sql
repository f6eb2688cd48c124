-- Items split into slices (ApplySplit): the plan ("hypothesis" or "task")
-- and the hypotheses whose links moved from the item to its slices, as a
-- JSON array. A tracker that bumps the split item's update time (Redmine
-- does for every child created) makes the next sync read it again; its body
-- or labels still name those hypotheses, and without this row the source's
-- link rules would link it to them again, counting their value twice. The
-- row goes with its item.
CREATE TABLE item_splits (
    item_key       TEXT PRIMARY KEY NOT NULL REFERENCES items (key) ON DELETE CASCADE,
    plan_kind      TEXT NOT NULL,
    hypothesis_ids TEXT NOT NULL,
    create_time    INTEGER NOT NULL
);
