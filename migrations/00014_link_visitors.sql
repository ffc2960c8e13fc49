-- +goose Up
-- What visitors see (issue 18).
-- clicks_used is what max_clicks counts: every redirect answered with the target, bots
-- included. The redirect takes a click with a conditional UPDATE while a link has a
-- limit, so the limit holds exactly across instances. Links that already have a limit
-- start from the clicks recorded for them (humans and bots).
-- forward_query: the incoming query string is added to the target's (default on).
-- expired_url: where an expired or used-up link sends visitors instead of a 410.
ALTER TABLE links
    ADD COLUMN clicks_used   bigint NOT NULL DEFAULT 0,
    ADD COLUMN forward_query boolean NOT NULL DEFAULT true,
    ADD COLUMN expired_url   text;

UPDATE links SET clicks_used = total_clicks
    + coalesce((SELECT sum(d.bot_clicks) FROM daily_stats d WHERE d.link_id = links.id), 0)
WHERE max_clicks IS NOT NULL;

-- +goose Down
ALTER TABLE links
    DROP COLUMN expired_url,
    DROP COLUMN forward_query,
    DROP COLUMN clicks_used;
