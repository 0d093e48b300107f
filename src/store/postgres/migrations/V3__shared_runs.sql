-- crawld's cluster, schema version 3: a run shared by every node that has
-- its target. The run's frontier is a table whose URLs the nodes claim in
-- batches with leases; the run's hosts are spread across its nodes; each
-- node keeps its own part of the run's figures.
--
-- NEVER EDIT a migration once released (see V1__records.sql).

-- The runs whose frontier is in `crawld.frontier`, one row per crawl (the
-- first run of a chain of resumed runs names it). `run` is the crawl's
-- current run; `admitted` counts its URLs against `max_pages`; `config` is
-- the fingerprint of the configuration (items, follow, strip_params) the
-- run extracts with: only nodes with the same one work on it.
CREATE TABLE crawld.shared_runs (
    crawl      bigint PRIMARY KEY,
    target     text COLLATE "C" NOT NULL,
    run        bigint NOT NULL,
    mode       text NOT NULL,
    admitted   bigint NOT NULL DEFAULT 0,
    max_pages  bigint NOT NULL,
    config     text NOT NULL
);
CREATE INDEX shared_runs_target ON crawld.shared_runs (target);

-- A shared run's frontier: every URL it admitted (the primary key is the
-- URL's fingerprint, so a link found twice, on any node, is admitted
-- once), its state (0 queued, 1 leased to `holder` until `expires`,
-- 2 done) and the claims it took.
CREATE TABLE crawld.frontier (
    crawl    bigint NOT NULL,
    fp       bytea NOT NULL,
    url      text NOT NULL,
    host     text COLLATE "C" NOT NULL,
    depth    integer NOT NULL,
    state    smallint NOT NULL DEFAULT 0,
    holder   text COLLATE "C" NOT NULL DEFAULT '',
    expires  timestamptz,
    attempts integer NOT NULL DEFAULT 0,
    seq      bigserial NOT NULL,
    PRIMARY KEY (crawl, fp)
);
-- What is left to fetch, per host in admission order (breadth first).
CREATE INDEX frontier_todo ON crawld.frontier (crawl, host, seq) WHERE state < 2;
-- What a node holds (renewed by its heartbeat, given back when it leaves).
CREATE INDEX frontier_held ON crawld.frontier (holder) WHERE state = 1;

-- Which node fetches a shared run's host: a node takes hosts with URLs
-- left up to its fair share (hosts with work / nodes on the run), so the
-- run's hosts spread across its nodes; a holder gone for a lease frees it.
CREATE TABLE crawld.run_hosts (
    crawl   bigint NOT NULL,
    host    text COLLATE "C" NOT NULL,
    holder  text COLLATE "C" NOT NULL DEFAULT '',
    expires timestamptz,
    PRIMARY KEY (crawl, host)
);

-- Each node's part of a shared run: it joins, commits its pages with its
-- figures here (not in the run's record, which the run's owner writes),
-- and leaves. The owner adds the parts to the run's record at its end.
CREATE TABLE crawld.run_parts (
    run     bigint NOT NULL,
    node    text COLLATE "C" NOT NULL,
    joined  timestamptz NOT NULL DEFAULT now(),
    left_at timestamptz,
    counts  json NOT NULL DEFAULT '{}',
    PRIMARY KEY (run, node)
);
