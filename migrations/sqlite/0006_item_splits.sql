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

-- Splits applied before this step: an item whose children hold the note of
-- its split ("Split from KEY by KIND: slice n of N.") and carry links was
-- split; what it split into is what those children carry. One pass over the
-- items with a parent (no per-item search), the parent and links found by
-- their primary keys. A split left partway (slices without links, the item
-- still linked) is not a split yet and gets no row.
INSERT INTO item_splits (item_key, plan_kind, hypothesis_ids, create_time)
SELECT parent_key, kind, json_group_array(hypothesis_id),
       CAST(strftime('%s', 'now') AS INTEGER) * 1000000000
FROM (
    SELECT DISTINCT c.parent_key AS parent_key,
           CASE WHEN instr(c.body, 'Split from ' || c.parent_key || ' by task: ') > 0
                THEN 'task' ELSE 'hypothesis' END AS kind,
           l.hypothesis_id AS hypothesis_id
    FROM items c
    JOIN items p ON p.key = c.parent_key
    JOIN links l ON l.item_key = c.key
    WHERE c.parent_key != ''
      AND instr(c.body, 'Split from ' || c.parent_key || ' by ') > 0
    ORDER BY 1, 3
)
GROUP BY parent_key;

-- And the rule links a sync already gave such an item back: its slices
-- carry that value.
DELETE FROM links
WHERE origin = 'rule'
  AND EXISTS (
      SELECT 1 FROM item_splits s, json_each(s.hypothesis_ids) h
      WHERE s.item_key = links.item_key AND h.value = links.hypothesis_id
  );
