-- +goose Up
-- Campaign totals over all links, so the /stats overview's campaign breakdowns read a
-- row per day and value instead of every link's (00019's partial index still held one
-- per link, day and value: at least three per link and day, as clicks without a
-- parameter count as '(none)'). At 1,000 links with a year of campaigns: 70 ms for 30
-- days and 272 ms for a year before, 0.2 and 0.9 ms after. Kept like 00025's totals: a
-- statement trigger with transition tables adds each statement's change to
-- dimension_stats, once.
CREATE TABLE campaign_totals (
    day       date NOT NULL,
    dimension text NOT NULL CHECK (dimension IN ('utm_source', 'utm_medium', 'utm_campaign')),
    value     text NOT NULL,
    clicks    bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (day, dimension, value) INCLUDE (clicks)
);

-- +goose StatementBegin
CREATE FUNCTION dimension_stats_campaign_totals() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO campaign_totals AS t (day, dimension, value, clicks)
        SELECT day, dimension, value, sum(clicks) FROM new_rows
        WHERE dimension IN ('utm_source', 'utm_medium', 'utm_campaign')
        GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        ON CONFLICT (day, dimension, value) DO UPDATE SET clicks = t.clicks + excluded.clicks;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO campaign_totals AS t (day, dimension, value, clicks)
        SELECT day, dimension, value, sum(clicks) FROM (
            SELECT day, dimension, value, clicks FROM new_rows
            UNION ALL SELECT day, dimension, value, -clicks FROM old_rows) d
        WHERE dimension IN ('utm_source', 'utm_medium', 'utm_campaign')
        GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        ON CONFLICT (day, dimension, value) DO UPDATE SET clicks = t.clicks + excluded.clicks;
    ELSE
        INSERT INTO campaign_totals AS t (day, dimension, value, clicks)
        SELECT day, dimension, value, -sum(clicks) FROM old_rows
        WHERE dimension IN ('utm_source', 'utm_medium', 'utm_campaign')
        GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        ON CONFLICT (day, dimension, value) DO UPDATE SET clicks = t.clicks + excluded.clicks;
    END IF;
    RETURN NULL;
END $$;
-- +goose StatementEnd

CREATE TRIGGER dimension_stats_campaign_ins AFTER INSERT ON dimension_stats REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION dimension_stats_campaign_totals();
CREATE TRIGGER dimension_stats_campaign_upd AFTER UPDATE ON dimension_stats REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION dimension_stats_campaign_totals();
CREATE TRIGGER dimension_stats_campaign_del AFTER DELETE ON dimension_stats REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION dimension_stats_campaign_totals();

-- What was rolled up before.
INSERT INTO campaign_totals
SELECT day, dimension, value, sum(clicks) FROM dimension_stats
WHERE dimension IN ('utm_source', 'utm_medium', 'utm_campaign') GROUP BY 1, 2, 3;

-- 00019's partial index served only that overview read; the aggregator no longer has to
-- write it.
DROP INDEX dimension_stats_utm_day_idx;

-- +goose Down
CREATE INDEX dimension_stats_utm_day_idx ON dimension_stats (day, dimension, value) INCLUDE (clicks)
    WHERE dimension IN ('utm_source', 'utm_medium', 'utm_campaign');
DROP TRIGGER dimension_stats_campaign_del ON dimension_stats;
DROP TRIGGER dimension_stats_campaign_upd ON dimension_stats;
DROP TRIGGER dimension_stats_campaign_ins ON dimension_stats;
DROP FUNCTION dimension_stats_campaign_totals();
DROP TABLE campaign_totals;
