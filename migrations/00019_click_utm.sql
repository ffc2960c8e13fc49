-- +goose Up
-- Campaign parameters of a click (issue 18): utm_source, utm_medium and utm_campaign of
-- the redirect's query string, normalised at redirect time (trimmed, lower-cased, at
-- most 128 bytes). The rest of the query is never stored. NULL when the parameter was
-- absent or empty, and for every click stored before this migration: nullable columns
-- without a default are added to the catalogue only, with no rewrite of click_logs.
ALTER TABLE click_logs
    ADD COLUMN utm_source   text,
    ADD COLUMN utm_medium   text,
    ADD COLUMN utm_campaign text;

-- They are three more breakdowns in dimension_stats ('(none)' for clicks without one).
-- The new check is added NOT VALID and validated after, so the rows already there are
-- checked without holding the table's strongest lock for the scan.
ALTER TABLE dimension_stats DROP CONSTRAINT dimension_stats_dimension_check;
ALTER TABLE dimension_stats ADD CONSTRAINT dimension_stats_dimension_check
    CHECK (dimension IN ('country', 'referer', 'browser', 'os', 'device',
                         'utm_source', 'utm_medium', 'utm_campaign')) NOT VALID;
ALTER TABLE dimension_stats VALIDATE CONSTRAINT dimension_stats_dimension_check;

-- The /stats overview sums the campaign breakdowns over every link for a range of days;
-- the primary key leads with link_id, so it would read every link's rows. This partial
-- index holds only the campaign rows and answers with an index-only scan.
CREATE INDEX dimension_stats_utm_day_idx ON dimension_stats (day, dimension, value) INCLUDE (clicks)
    WHERE dimension IN ('utm_source', 'utm_medium', 'utm_campaign');

-- +goose Down
DROP INDEX dimension_stats_utm_day_idx;
DELETE FROM dimension_stats WHERE dimension IN ('utm_source', 'utm_medium', 'utm_campaign');
ALTER TABLE dimension_stats DROP CONSTRAINT dimension_stats_dimension_check;
ALTER TABLE dimension_stats ADD CONSTRAINT dimension_stats_dimension_check
    CHECK (dimension IN ('country', 'referer', 'browser', 'os', 'device'));
ALTER TABLE click_logs
    DROP COLUMN utm_campaign,
    DROP COLUMN utm_medium,
    DROP COLUMN utm_source;
