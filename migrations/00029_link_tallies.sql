-- +goose Up
-- Live-link counts per domain and per tag, so GET /domains and GET /tags read a few rows
-- instead of every live link (0.2-0.5 s and 0.8-1.1 s at 1.26M live links).
-- Each change to a live link appends a +1 or -1 row here, from a row trigger, so
-- concurrent link writers never wait on a shared counter row; readers sum the rows of
-- a key (links.Store.tags, domains.Store.LiveLinks), and tally.Folder folds them into
-- one now and then. Insert, delete and truncate by hand are counted too.
--
-- Links are locked against writes first, until this migration commits, so the counts
-- below and the rows the triggers add never miss or repeat one, whatever the isolation
-- level (LOCK takes no snapshot). Redirects still read links; link writes, the click
-- limit's count and the aggregator's tick wait. lock_timeout makes the migration fail
-- and retry rather than queue behind a long transaction while those queue behind it.
SET LOCAL lock_timeout = '5s';
LOCK TABLE links IN SHARE ROW EXCLUSIVE MODE;

CREATE TABLE domain_link_tallies (
    domain_id bigint NOT NULL,
    links     bigint NOT NULL
);
CREATE TABLE tag_link_tallies (
    tag   text NOT NULL,
    links bigint NOT NULL
);
-- A fold deletes the rows it sums; a read scans the dead ones until VACUUM frees them
-- (85 ms after folding 900,000), so autovacuum takes these small tables after 1,000
-- dead rows instead of a fifth of the table.
ALTER TABLE domain_link_tallies SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000);
ALTER TABLE tag_link_tallies SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000);

-- +goose StatementBegin
CREATE FUNCTION links_tally() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' AND OLD.deleted_at IS NULL THEN
        INSERT INTO domain_link_tallies VALUES (OLD.domain_id, -1);
        INSERT INTO tag_link_tallies SELECT t, -1 FROM unnest(OLD.tags) AS t;
    END IF;
    IF TG_OP <> 'DELETE' AND NEW.deleted_at IS NULL THEN
        INSERT INTO domain_link_tallies VALUES (NEW.domain_id, 1);
        INSERT INTO tag_link_tallies SELECT t, 1 FROM unnest(NEW.tags) AS t;
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION links_tally_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM domain_link_tallies;
    DELETE FROM tag_link_tallies;
    RETURN NULL;
END $$;
-- +goose StatementEnd

CREATE TRIGGER links_tally_ins AFTER INSERT ON links
    FOR EACH ROW EXECUTE FUNCTION links_tally();
-- Only changes that move a link in or out of a count: the aggregator's and the click
-- limit's updates of other columns never fire it.
CREATE TRIGGER links_tally_upd AFTER UPDATE OF deleted_at, domain_id, tags ON links
    FOR EACH ROW WHEN (OLD.deleted_at IS DISTINCT FROM NEW.deleted_at
        OR OLD.domain_id IS DISTINCT FROM NEW.domain_id OR OLD.tags IS DISTINCT FROM NEW.tags)
    EXECUTE FUNCTION links_tally();
CREATE TRIGGER links_tally_del AFTER DELETE ON links
    FOR EACH ROW EXECUTE FUNCTION links_tally();
CREATE TRIGGER links_tally_truncate AFTER TRUNCATE ON links
    FOR EACH STATEMENT EXECUTE FUNCTION links_tally_truncate();

INSERT INTO domain_link_tallies
SELECT domain_id, count(*) FROM links WHERE deleted_at IS NULL GROUP BY domain_id;
INSERT INTO tag_link_tallies
SELECT t, count(*) FROM links, unnest(tags) AS t WHERE deleted_at IS NULL GROUP BY t;

-- +goose Down
-- Dropping a trigger locks links against reads too, briefly; see lock_timeout above.
SET LOCAL lock_timeout = '5s';
DROP TRIGGER links_tally_truncate ON links;
DROP TRIGGER links_tally_del ON links;
DROP TRIGGER links_tally_upd ON links;
DROP TRIGGER links_tally_ins ON links;
DROP FUNCTION links_tally_truncate();
DROP FUNCTION links_tally();
DROP TABLE tag_link_tallies;
DROP TABLE domain_link_tallies;
