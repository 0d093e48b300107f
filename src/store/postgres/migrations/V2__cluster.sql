-- crawld's cluster, schema version 2: the nodes sharing this database,
-- which node runs each target, and requests to stop a run on its node.
--
-- NEVER EDIT a migration once released (see V1__records.sql).

-- A crawld process writing to this database: it renews `expires` with its
-- heartbeat; one whose `expires` passed is gone.
CREATE TABLE crawld.members (
    node      text COLLATE "C" PRIMARY KEY,
    hostname  text NOT NULL,
    pid       integer NOT NULL,
    version   text NOT NULL,
    started   timestamptz NOT NULL,
    heartbeat timestamptz NOT NULL,
    expires   timestamptz NOT NULL,
    -- The PID namespace of its process (/proc/self/ns/pid), so that a pid
    -- is only compared with one of the same namespace.
    pid_ns    text NOT NULL DEFAULT '',
    -- Per target, the fingerprint of this node's configuration of it.
    configs   json NOT NULL DEFAULT '{}'
);

-- Which node runs a target. A node takes the lease when it starts a run
-- (or resumes one whose node is gone), renews it with its heartbeat, and
-- gives it up when the run ends (`node` '' and `done`); every commit of
-- the run checks, in its transaction, that the lease is still the node's
-- with the same `generation` (fencing). A node that stops hands its run
-- over (`node` '', not `done`, `expires` now): another node resumes it.
CREATE TABLE crawld.run_leases (
    target     text COLLATE "C" PRIMARY KEY,
    node       text COLLATE "C" NOT NULL,
    generation bigint NOT NULL,
    run        bigint,
    started    timestamptz NOT NULL,
    expires    timestamptz NOT NULL,
    done       boolean NOT NULL DEFAULT false
);

-- `crawld stop-run` given to a node that does not run the target: the
-- node that runs it stops the run when its heartbeat finds the request.
CREATE TABLE crawld.stop_requests (
    target text COLLATE "C" PRIMARY KEY,
    asked  timestamptz NOT NULL,
    by     text NOT NULL
);

-- Work one node does for the whole cluster (delivering a channel's
-- alerts, judging the clock monitors): the node holding the role's lease
-- does it, renewing the lease each time; when it stops, another takes it.
CREATE TABLE crawld.roles (
    role    text COLLATE "C" PRIMARY KEY,
    node    text COLLATE "C" NOT NULL,
    expires timestamptz NOT NULL
);

-- Which node fetches from a host: one at a time, so that a profile's
-- limits (concurrency, delay, Crawl-delay, 429 windows) hold for the
-- cluster as for one process. A node leases the hosts it has pages for,
-- renews them while it works, and gives them up when idle, leaving the
-- host's backoff window (`closed_until_ms`) for the next node.
-- A node that waits for a host marks it `wanted`; the holder gives it up
-- once it held it for a turn (a few seconds) after that, and lets the
-- waiting node have it for a turn: two nodes with work on one host take
-- turns rather than one waiting for the other's runs to end.
CREATE TABLE crawld.host_leases (
    host            text COLLATE "C" PRIMARY KEY,
    node            text COLLATE "C" NOT NULL,
    expires         timestamptz NOT NULL,
    closed_until_ms bigint,
    held_since      timestamptz NOT NULL DEFAULT now(),
    wanted          timestamptz
);
