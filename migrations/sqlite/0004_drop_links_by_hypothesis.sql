-- Links are read by hypothesis from the in-memory index only. In the store,
-- the index on (hypothesis_id, item_key) served nothing but the deletion of
-- a hypothesis, while every link written paid for it: a sync writes links
-- in item order, so each one landed on another page of that index. Without
-- it a sync writes about a quarter less; deleting a hypothesis (rare, and
-- already checked against its links in memory) scans the links table.
DROP INDEX links_by_hypothesis;
