-- crawld's records in PostgreSQL, schema version 1.
--
-- NEVER EDIT a migration once released, not even a comment: refinery keeps
-- each applied migration's checksum, and a database whose migration differs
-- from the binary's is refused. A change is a new file, V2__…, added to
-- MIGRATIONS in mod.rs (the test `released_migrations_are_never_edited`
-- pins each checksum).
--
-- Runs, pages, items, change events and failures have real columns for
-- their keys and the record itself as JSON (the same record sled keeps), so
-- they can be queried in SQL. Everything else crawld keeps (the frontier
-- journal, alert state, the outbox, schedule firings, counters) is in
-- `state`, by crawld's own keys: it is crawld's business, not a query
-- surface. Text keys use the "C" collation: rows sort by bytes, as crawld
-- reads them.

CREATE TABLE crawld.runs (
    target text COLLATE "C" NOT NULL,
    id     bigint NOT NULL,
    record json NOT NULL,
    PRIMARY KEY (target, id)
);

CREATE TABLE crawld.pages (
    target text COLLATE "C" NOT NULL,
    url    text COLLATE "C" NOT NULL,
    record json NOT NULL,
    PRIMARY KEY (target, url)
);

CREATE TABLE crawld.items (
    target text COLLATE "C" NOT NULL,
    kind   text COLLATE "C" NOT NULL,
    key    text COLLATE "C" NOT NULL,
    record json NOT NULL,
    PRIMARY KEY (target, kind, key)
);

CREATE TABLE crawld.events (
    target text COLLATE "C" NOT NULL,
    run    bigint NOT NULL,
    seq    bigint NOT NULL,
    record json NOT NULL,
    PRIMARY KEY (target, run, seq)
);

CREATE TABLE crawld.failures (
    target text COLLATE "C" NOT NULL,
    run    bigint NOT NULL,
    url    text COLLATE "C" NOT NULL,
    record json NOT NULL,
    PRIMARY KEY (target, run, url)
);

CREATE TABLE crawld.state (
    key   bytea PRIMARY KEY,
    value bytea NOT NULL
);

-- The stable query surface: these views keep their columns across releases.

-- Every item as it is now (removed items left out).
CREATE VIEW crawld.items_current AS
SELECT target,
       kind,
       key,
       record->>'page'                                     AS page,
       (record->'value')::jsonb                            AS value,
       to_timestamp((record->>'first_seen_ms')::bigint / 1000.0)   AS first_seen,
       to_timestamp((record->>'last_seen_ms')::bigint / 1000.0)    AS last_seen,
       to_timestamp((record->>'last_changed_ms')::bigint / 1000.0) AS last_changed,
       (record->>'run')::bigint                            AS run
FROM crawld.items
WHERE record->>'removed_ms' IS NULL;

-- Past values of every item, newest first per item (the current one is in
-- items_current).
CREATE VIEW crawld.item_history AS
SELECT i.target,
       i.kind,
       i.key,
       (v.version->'value')::jsonb                          AS value,
       to_timestamp((v.version->>'at_ms')::bigint / 1000.0) AS at,
       (v.version->>'run')::bigint                          AS run
FROM crawld.items i,
     LATERAL json_array_elements(i.record->'history') AS v(version);

-- Runs, with their totals.
CREATE VIEW crawld.run_summaries AS
SELECT target,
       id                                                   AS run,
       record->>'mode'                                      AS mode,
       record->>'status'                                    AS status,
       to_timestamp((record->>'started_ms')::bigint / 1000.0) AS started,
       to_timestamp((record->>'ended_ms')::bigint / 1000.0)   AS ended,
       (record->'counts'->>'pages_fetched')::bigint         AS pages_fetched,
       (record->'counts'->>'pages_failed')::bigint          AS pages_failed,
       (record->'counts'->>'items_new')::bigint             AS items_new,
       (record->'counts'->>'items_changed')::bigint         AS items_changed,
       (record->'counts'->>'items_removed')::bigint         AS items_removed,
       record->>'error'                                     AS error
FROM crawld.runs;

-- What changed, run by run.
CREATE VIEW crawld.changes AS
SELECT target,
       run,
       seq,
       record->>'change'                                    AS change,
       record->>'kind'                                      AS kind,
       record->>'key'                                       AS key,
       (record->'value')::jsonb                             AS value,
       (record->'old')::jsonb                               AS old,
       record->>'page'                                      AS page,
       to_timestamp((record->>'at_ms')::bigint / 1000.0)    AS at
FROM crawld.events;
