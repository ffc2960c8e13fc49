-- +goose Up
-- A BRIN index answers only for the block ranges it has summarized, and without
-- autosummarize only VACUUM summarizes new ones: autovacuum vacuums an insert-only table
-- after it grows by a fifth, so every range filled since is read whole by any scan
-- through the index. At 1.5M clicks the live feed's resume lookup took 215 ms that way
-- instead of 0.1 ms, and pruning visitor sets with none due 7.3 ms instead of 0.2 ms.
-- With autosummarize, filling a range asks autovacuum to summarize it at once; ranges
-- filled before this are summarized by the next VACUUM. Altering an index locks it (and
-- so inserts into its table) for milliseconds; lock_timeout makes the migration fail
-- and retry rather than queue behind a long transaction while inserts queue behind it.
SET LOCAL lock_timeout = '5s';
ALTER INDEX click_logs_time_idx SET (autosummarize = on);
ALTER INDEX daily_visitors_day_idx SET (autosummarize = on);
ALTER INDEX hourly_stats_hour_idx SET (autosummarize = on);

-- +goose Down
SET LOCAL lock_timeout = '5s';
ALTER INDEX hourly_stats_hour_idx RESET (autosummarize);
ALTER INDEX daily_visitors_day_idx RESET (autosummarize);
ALTER INDEX click_logs_time_idx RESET (autosummarize);
