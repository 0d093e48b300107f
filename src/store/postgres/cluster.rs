//! The cluster's shared state: the nodes writing to the database (each
//! with a heartbeat), which node runs each target (a lease with an expiry
//! and a generation that every commit of the run checks), and requests to
//! stop a run on its node. See V2__cluster.sql for the tables.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::heartbeat::{alive, heartbeat, pid_namespace, register, this_host};
use super::{StoreError, Tables};

/// How long a node's leases last without a heartbeat, unless asked otherwise.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);

/// This process as a member of the cluster: its id, its lease time and the
/// runs it holds (target → lease generation).
pub struct Node {
    pub id: String,
    pub lease: Duration,
    leases: Mutex<HashMap<String, i64>>,
    /// The shared runs' crawls this node works on: its URL and host leases
    /// in them are renewed with its heartbeat, and only those.
    crawls: Mutex<std::collections::HashSet<i64>>,
    /// Set when the process stops: its interrupted runs are handed over
    /// (resumed by another node at once) instead of released.
    hand_over: AtomicBool,
}

impl Node {
    pub fn new(lease: Duration) -> Node {
        let host = Some(this_host())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".into());
        Node {
            id: format!(
                "{host}-{}-{:04x}",
                std::process::id(),
                rand::random::<u16>()
            ),
            lease,
            leases: Mutex::new(HashMap::new()),
            crawls: Mutex::new(std::collections::HashSet::new()),
            hand_over: AtomicBool::new(false),
        }
    }

    /// The shared runs' crawls this node works on (see `crawls`).
    pub(super) fn crawls(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<i64>> {
        self.crawls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(super) fn leases(&self) -> std::sync::MutexGuard<'_, HashMap<String, i64>> {
        self.leases
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The generation of this node's lease on `target`'s run, if it holds one.
    pub fn generation(&self, target: &str) -> Option<i64> {
        self.leases().get(target).copied()
    }

    pub fn forget(&self, target: &str) {
        self.leases().remove(target);
    }

    pub fn set_hand_over(&self) {
        self.hand_over.store(true, Ordering::Relaxed);
    }

    pub fn hands_over(&self) -> bool {
        self.hand_over.load(Ordering::Relaxed)
    }

    pub(super) fn secs(&self) -> f64 {
        self.lease.as_secs_f64()
    }
}

/// What a fenced write does to its run's lease, beside checking it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseStep {
    /// A commit of the run: the lease is checked.
    Commit,
    /// The run's first record: the lease names the run.
    Start(i64),
    /// The run ended: the lease goes.
    Release,
    /// The run stopped with its node: another node resumes it at once.
    HandOver,
}

/// The check a write of a run makes in its transaction: the run's lease is
/// still this node's, with the generation it took.
#[derive(Debug, Clone)]
pub struct Fence {
    pub target: String,
    pub node: String,
    pub generation: i64,
    pub step: LeaseStep,
}

/// A node of the cluster, as `crawld status` lists it.
#[derive(Debug, Clone)]
pub struct MemberRow {
    pub node: String,
    pub hostname: String,
    pub pid: i32,
    pub version: String,
    pub started_ms: i64,
    pub heartbeat_ms: i64,
    pub alive: bool,
    pub configs: BTreeMap<String, String>,
    /// The targets whose runs it holds, with the run's id once recorded.
    pub runs: Vec<(String, Option<i64>)>,
    /// The hosts it leases.
    pub hosts: Vec<String>,
    /// The shared runs of other nodes it works on: target and run.
    pub helps: Vec<(String, i64)>,
}

impl Fence {
    /// Checks the lease inside `tx`, before the batch's writes.
    pub(super) async fn check(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        place: &str,
        failed: &(impl Fn(tokio_postgres::Error) -> StoreError + Sync),
    ) -> Result<(), StoreError> {
        let row = tx
            .query_opt(
                "SELECT node, generation FROM crawld.run_leases WHERE target = $1 FOR UPDATE",
                &[&self.target],
            )
            .await
            .map_err(failed)?;
        let holder = row.map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1)));
        let ends = matches!(self.step, LeaseStep::Release | LeaseStep::HandOver);
        match holder {
            Some((node, generation)) if node == self.node && generation == self.generation => {
                Ok(())
            }
            // This very end, applied by a try whose answer was lost: the
            // generation proves no node took the run since.
            Some((node, generation))
                if ends && node.is_empty() && generation == self.generation =>
            {
                Ok(())
            }
            other => Err(StoreError::LeaseLost {
                place: place.to_owned(),
                target: self.target.clone(),
                holder: other.map(|(n, _)| n).filter(|n| !n.is_empty()),
            }),
        }
    }

    /// Applies the step's change to the lease inside `tx`, after the writes.
    pub(super) async fn step(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        failed: &(impl Fn(tokio_postgres::Error) -> StoreError + Sync),
    ) -> Result<(), StoreError> {
        let (sql, run) = match self.step {
            LeaseStep::Commit => return Ok(()),
            LeaseStep::Start(run) => (
                "UPDATE crawld.run_leases SET run = $3 WHERE target = $1 AND generation = $2",
                Some(run),
            ),
            LeaseStep::Release => (
                "UPDATE crawld.run_leases SET node = '', done = true, run = NULL, expires = now() \
                 WHERE target = $1 AND generation = $2",
                None,
            ),
            LeaseStep::HandOver => (
                "UPDATE crawld.run_leases SET node = '', done = false, expires = now() \
                 WHERE target = $1 AND generation = $2",
                None,
            ),
        };
        match run {
            Some(run) => {
                tx.execute(sql, &[&self.target, &self.generation, &run])
                    .await
            }
            None => tx.execute(sql, &[&self.target, &self.generation]).await,
        }
        .map_err(failed)?;
        Ok(())
    }
}

impl Tables {
    /// Registers this process as a node of the cluster and starts its
    /// heartbeat, which renews its membership and its runs' leases.
    pub(super) fn join(&mut self, node: Node) -> Result<(), StoreError> {
        let node = Arc::new(node);
        let (pool, place, n) = (self.pool.clone(), self.place.clone(), node.clone());
        let failed = Arc::new(self.failed("joining"));
        self.retrying(move |pool2, place2| {
            let (n, failed) = (n.clone(), failed.clone());
            async move {
                let client = Self::client(&pool2, &place2, "connecting to").await?;
                register(&client, &n).await.map_err(&*failed)
            }
        })?;
        if let Some(rt) = &self.runtime {
            rt.spawn(heartbeat(pool, place, node.clone()));
        }
        self.node = Some(node);
        Ok(())
    }

    pub fn node(&self) -> Option<&Arc<Node>> {
        self.node.as_ref()
    }

    /// Takes the lease on `target`'s run for this node: free, expired (its
    /// node is gone, or handed it over) or already this node's. Returns
    /// the lease's generation, or [`StoreError::RunElsewhere`].
    pub fn claim_run(&self, target: &str) -> Result<i64, StoreError> {
        let Some(node) = self.node.clone() else {
            return Ok(0);
        };
        let failed = Arc::new(self.failed("writing to"));
        let t = target.to_owned();
        let n = node.clone();
        let claimed = self.retrying(move |pool, place| {
            let (t, n, failed) = (t.clone(), n.clone(), failed.clone());
            async move {
                let client = Self::client(&pool, &place, "connecting to").await?;
                let row = client
                    .query_opt(
                        "INSERT INTO crawld.run_leases AS l (target, node, generation, started, expires) \
                         VALUES ($1, $2, 1, now(), now() + make_interval(secs => $3)) \
                         ON CONFLICT (target) DO UPDATE SET node = EXCLUDED.node, \
                           generation = l.generation + 1, run = NULL, started = now(), \
                           expires = EXCLUDED.expires, done = false \
                         WHERE l.expires < now() OR l.node = EXCLUDED.node \
                         RETURNING generation",
                        &[&t, &n.id, &n.secs()],
                    )
                    .await
                    .map_err(&*failed)?;
                if let Some(row) = row {
                    return Ok(Ok(row.get::<_, i64>(0)));
                }
                let holder = client
                    .query_opt(
                        "SELECT l.node, m.hostname, m.pid, m.pid_ns FROM crawld.run_leases l \
                         LEFT JOIN crawld.members m ON m.node = l.node WHERE l.target = $1",
                        &[&t],
                    )
                    .await
                    .map_err(&*failed)?;
                let Some(holder) = holder else {
                    // Released meanwhile: the next try takes it.
                    return Ok(Err(String::new()));
                };
                let (node, host, pid, ns): (String, Option<String>, Option<i32>, Option<String>) =
                    (holder.get(0), holder.get(1), holder.get(2), holder.get(3));
                let here = host.as_deref() == Some(this_host().as_str())
                    && ns.as_deref().is_some_and(|ns| !ns.is_empty() && ns == pid_namespace());
                if here && pid.is_some_and(|p| !alive(p)) {
                    // Its process died on this machine (a `kill -9`, a
                    // crash): no need to wait for its lease to expire.
                    let taken = client
                        .query_opt(
                            "UPDATE crawld.run_leases SET node = $2, generation = generation + 1, \
                               run = NULL, started = now(), expires = now() + make_interval(secs => $4) \
                             WHERE target = $1 AND node = $3 RETURNING generation",
                            &[&t, &n.id, &node, &n.secs()],
                        )
                        .await
                        .map_err(&*failed)?;
                    if let Some(row) = taken {
                        client
                            .execute("DELETE FROM crawld.members WHERE node = $1", &[&node])
                            .await
                            .map_err(&*failed)?;
                        return Ok(Ok(row.get::<_, i64>(0)));
                    }
                }
                Ok(Err(node))
            }
        })?;
        match claimed {
            Ok(generation) => {
                node.leases().insert(target.to_owned(), generation);
                Ok(generation)
            }
            Err(holder) => Err(StoreError::RunElsewhere {
                target: target.to_owned(),
                node: holder,
            }),
        }
    }

    /// Gives up this node's lease on `target` (a run that could not start).
    pub fn release_run(&self, target: &str) -> Result<(), StoreError> {
        let Some(node) = self.node.clone() else {
            return Ok(());
        };
        let Some(generation) = node.generation(target) else {
            return Ok(());
        };
        node.forget(target);
        self.execute(
            "UPDATE crawld.run_leases SET node = '', done = true, run = NULL, expires = now() \
             WHERE target = $1 AND generation = $2",
            vec![Box::new(target.to_owned()), Box::new(generation)],
        )
        .map(|_| ())
    }

    /// The node whose live lease holds `target`'s run, other than this one.
    pub fn run_holder(&self, target: &str) -> Result<Option<String>, StoreError> {
        let me = self.node.as_ref().map(|n| n.id.clone()).unwrap_or_default();
        let rows = self.rows(
            "SELECT node FROM crawld.run_leases WHERE target = $1 AND node <> '' \
             AND node <> $2 AND expires > now()",
            vec![Box::new(target.to_owned()), Box::new(me)],
        )?;
        Ok(rows.into_iter().next().map(|mut r| r.swap_remove(0)))
    }

    /// Targets whose run lease expired: their node is gone (or handed the
    /// run over), and the run waits for another node to resume it.
    pub fn orphaned_runs(&self) -> Result<Vec<String>, StoreError> {
        let rows = self.rows(
            "SELECT target FROM crawld.run_leases WHERE expires < now() AND NOT done \
             ORDER BY target",
            vec![],
        )?;
        Ok(rows.into_iter().map(|mut r| r.swap_remove(0)).collect())
    }

    /// Takes the lease of `target`'s run if it waits for a node (expired,
    /// not ended): whether this node now holds it and resumes the run.
    pub fn claim_orphan(&self, target: &str) -> Result<bool, StoreError> {
        let Some(node) = self.node.clone() else {
            return Ok(false);
        };
        let rows = self.rows(
            "UPDATE crawld.run_leases SET node = $2, generation = generation + 1, run = NULL, \
               started = now(), expires = now() + make_interval(secs => $3) \
             WHERE target = $1 AND expires < now() AND NOT done \
             RETURNING generation::text",
            vec![
                Box::new(target.to_owned()),
                Box::new(node.id.clone()),
                Box::new(node.secs()),
            ],
        )?;
        let Some(generation) = rows
            .first()
            .and_then(|r| r.first())
            .and_then(|g| g.parse().ok())
        else {
            return Ok(false);
        };
        node.leases().insert(target.to_owned(), generation);
        Ok(true)
    }

    /// Asks the node that runs `target` to stop it; returns that node, or
    /// `None` when no live node runs it.
    pub fn request_stop(&self, target: &str) -> Result<Option<String>, StoreError> {
        let me = self.node.as_ref().map(|n| n.id.clone()).unwrap_or_default();
        let rows = self.rows(
            "WITH holder AS (SELECT node FROM crawld.run_leases WHERE target = $1 \
               AND node <> '' AND expires > now()), \
             asked AS (INSERT INTO crawld.stop_requests (target, asked, by) \
               SELECT $1, now(), $2 FROM holder \
               ON CONFLICT (target) DO UPDATE SET asked = now(), by = EXCLUDED.by) \
             SELECT node FROM holder",
            vec![Box::new(target.to_owned()), Box::new(me)],
        )?;
        Ok(rows.into_iter().next().map(|mut r| r.swap_remove(0)))
    }

    /// The stop requests for runs this node holds, taken (deleted).
    pub fn take_stop_requests(&self) -> Result<Vec<String>, StoreError> {
        let Some(node) = self.node.as_ref() else {
            return Ok(Vec::new());
        };
        let rows = self.rows(
            "DELETE FROM crawld.stop_requests s USING crawld.run_leases l \
             WHERE s.target = l.target AND l.node = $1 RETURNING s.target",
            vec![Box::new(node.id.clone())],
        )?;
        Ok(rows.into_iter().map(|mut r| r.swap_remove(0)).collect())
    }

    /// Records, for `crawld status` on any node, this node's configuration
    /// fingerprint of each target.
    pub fn publish_configs(&self, configs: &BTreeMap<String, String>) -> Result<(), StoreError> {
        let Some(node) = self.node.as_ref() else {
            return Ok(());
        };
        let json = serde_json::to_value(configs).unwrap_or_default();
        self.execute(
            "UPDATE crawld.members SET configs = $2 WHERE node = $1",
            vec![Box::new(node.id.clone()), Box::new(json)],
        )
        .map(|_| ())
    }

    /// The nodes, live ones first, oldest first.
    pub fn members(&self) -> Result<Vec<MemberRow>, StoreError> {
        let failed = Arc::new(self.failed("reading"));
        self.retrying(move |pool, place| {
            let failed = failed.clone();
            async move {
                let client = Self::client(&pool, &place, "connecting to").await?;
                let rows = client
                    .query(
                        "SELECT m.node, m.hostname, m.pid, m.version, \
                           (extract(epoch FROM m.started) * 1000)::bigint, \
                           (extract(epoch FROM m.heartbeat) * 1000)::bigint, \
                           m.expires > now(), m.configs::text, \
                           (SELECT coalesce(json_agg(json_build_array(l.target, l.run) ORDER BY l.target), '[]') \
                              FROM crawld.run_leases l WHERE l.node = m.node)::text, \
                           (SELECT coalesce(json_agg(h.host ORDER BY h.host), '[]') \
                              FROM crawld.host_leases h WHERE h.node = m.node AND h.expires > now())::text, \
                           (SELECT coalesce(json_agg(json_build_array(s.target, p.run) ORDER BY s.target), '[]') \
                              FROM crawld.run_parts p JOIN crawld.shared_runs s ON s.run = p.run \
                              WHERE p.node = m.node AND p.left_at IS NULL AND NOT EXISTS \
                                (SELECT 1 FROM crawld.run_leases l \
                                 WHERE l.target = s.target AND l.node = m.node))::text \
                         FROM crawld.members m ORDER BY m.expires > now() DESC, m.started, m.node",
                        &[],
                    )
                    .await
                    .map_err(&*failed)?;
                Ok(rows
                    .iter()
                    .map(|r| MemberRow {
                        node: r.get(0),
                        hostname: r.get(1),
                        pid: r.get(2),
                        version: r.get(3),
                        started_ms: r.get(4),
                        heartbeat_ms: r.get(5),
                        alive: r.get(6),
                        configs: serde_json::from_str(r.get::<_, &str>(7)).unwrap_or_default(),
                        runs: serde_json::from_str(r.get::<_, &str>(8)).unwrap_or_default(),
                        hosts: serde_json::from_str(r.get::<_, &str>(9)).unwrap_or_default(),
                        helps: serde_json::from_str(r.get::<_, &str>(10)).unwrap_or_default(),
                    })
                    .collect())
            }
        })
    }

    /// Runs one statement, with retries.
    pub(super) fn execute(
        &self,
        sql: &'static str,
        params: Vec<Box<dyn tokio_postgres::types::ToSql + Sync + Send>>,
    ) -> Result<(), StoreError> {
        // A query whose rows (none) are dropped: one round trip either way.
        self.rows(sql, params).map(|_| ())
    }

    /// Runs one query whose columns are text, with retries.
    pub(super) fn rows(
        &self,
        sql: &'static str,
        params: Vec<Box<dyn tokio_postgres::types::ToSql + Sync + Send>>,
    ) -> Result<Vec<Vec<String>>, StoreError> {
        let failed = Arc::new(self.failed("reading"));
        let params = Arc::new(params);
        self.retrying(move |pool, place| {
            let (params, failed) = (params.clone(), failed.clone());
            async move {
                let client = Self::client(&pool, &place, "connecting to").await?;
                let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params
                    .iter()
                    .map(|p| p.as_ref() as &(dyn tokio_postgres::types::ToSql + Sync))
                    .collect();
                let rows = client.query(sql, &refs).await.map_err(&*failed)?;
                Ok(rows
                    .iter()
                    .map(|r| (0..r.len()).map(|i| r.get::<_, String>(i)).collect())
                    .collect())
            }
        })
    }
}
