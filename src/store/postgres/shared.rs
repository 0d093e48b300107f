//! Shared runs on the database: the run's frontier is `crawld.frontier`,
//! whose URLs every node on the run claims in batches with leases
//! (`FOR UPDATE SKIP LOCKED`); the run's hosts are spread across its
//! nodes (`crawld.run_hosts`); each node's figures are its part
//! (`crawld.run_parts`). What a commit of a shared run adds to its
//! transaction is a [`SharedStep`].

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use super::cluster::Node;
use super::{StoreError, Tables};

/// A transaction-scoped advisory lock per crawl, taken by claims: two
/// nodes never both decide who takes a host of the run.
const CLAIM_LOCK: i64 = 0x6372_6177_6c63_0000; // "crawlc"

/// Hosts of a run considered per claim, at most (a run's hosts are
/// capped by `follow.max_hosts` anyway).
const MAX_RUN_HOSTS: i64 = 10_000;

/// What a commit of a shared run does to its frontier, in the commit's
/// transaction.
#[derive(Debug, Default)]
pub struct SharedStep {
    pub crawl: i64,
    /// URLs this node fetched (their fingerprints): done, if this node
    /// still holds them.
    pub done: Vec<Vec<u8>>,
    /// Links found: fingerprint, URL, host, depth. Admitted unless known,
    /// up to the run's `max_pages`.
    pub found: Vec<(Vec<u8>, String, String, i32)>,
    /// A node working on another node's run: the run, its target, and
    /// this node's figures so far (JSON). The commit goes through only
    /// while the run is still that run and not ended.
    pub part: Option<(i64, String, String)>,
    /// The owner's end of a completed run: the crawl's frontier, hosts and
    /// the chain's parts are dropped.
    pub end: Option<Vec<i64>>,
}

/// URLs claimed for this node.
#[derive(Debug, Default)]
pub struct Claim {
    /// URL, depth, claims taken (this one included).
    pub urls: Vec<(String, u32, u32)>,
    /// No URL of the run is left to fetch or in flight, on any node.
    pub drained: bool,
    /// The run's hosts this node holds now.
    pub hosts: Vec<String>,
}

/// A shared run another node owns.
#[derive(Debug, Clone)]
pub struct SharedRunRow {
    pub crawl: i64,
    pub target: String,
    pub run: i64,
    pub config: String,
}

impl SharedStep {
    /// For a node working on another's run, checks inside `tx`, before the
    /// batch's records (the owner's commits take the run's lease row first
    /// too), that the run is still that run and not ended.
    pub(super) async fn check(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        place: &str,
        failed: &(impl Fn(tokio_postgres::Error) -> StoreError + Sync),
    ) -> Result<(), StoreError> {
        if let Some((run, target, _)) = &self.part {
            let alive = tx
                .query_opt(
                    "SELECT 1 FROM crawld.run_leases \
                     WHERE target = $1 AND run = $2 AND NOT done FOR SHARE",
                    &[target, run],
                )
                .await
                .map_err(failed)?;
            if alive.is_none() {
                return Err(StoreError::LeaseLost {
                    place: place.to_owned(),
                    target: target.clone(),
                    holder: None,
                });
            }
        }
        Ok(())
    }

    /// Applies the step inside `tx`, after the batch's records.
    pub(super) async fn apply(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        node: &Node,
        failed: &(impl Fn(tokio_postgres::Error) -> StoreError + Sync),
    ) -> Result<(), StoreError> {
        if let Some((run, _, counts)) = &self.part {
            tx.execute(
                "INSERT INTO crawld.run_parts (run, node, counts) VALUES ($1, $2, $3::text::json) \
                 ON CONFLICT (run, node) DO UPDATE SET counts = EXCLUDED.counts",
                &[run, &node.id, counts],
            )
            .await
            .map_err(failed)?;
        }
        if !self.found.is_empty() {
            self.admit(tx, failed).await?;
        }
        if !self.done.is_empty() {
            tx.execute(
                "UPDATE crawld.frontier SET state = 2, holder = '', expires = NULL \
                 WHERE crawl = $1 AND fp = ANY($2) AND holder = $3 AND state = 1",
                &[&self.crawl, &self.done, &node.id],
            )
            .await
            .map_err(failed)?;
        }
        if let Some(chain) = &self.end {
            for sql in [
                "DELETE FROM crawld.frontier WHERE crawl = $1",
                "DELETE FROM crawld.run_hosts WHERE crawl = $1",
                "DELETE FROM crawld.shared_runs WHERE crawl = $1",
            ] {
                tx.execute(sql, &[&self.crawl]).await.map_err(failed)?;
            }
            tx.execute("DELETE FROM crawld.run_parts WHERE run = ANY($1)", &[chain])
                .await
                .map_err(failed)?;
        }
        Ok(())
    }

    /// Admits the links found that the run does not know yet, within its
    /// budget: the run's row is locked, so that two nodes' commits count
    /// against `max_pages` one after the other.
    async fn admit(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        failed: &(impl Fn(tokio_postgres::Error) -> StoreError + Sync),
    ) -> Result<(), StoreError> {
        let Some(row) = tx
            .query_opt(
                "SELECT max_pages - admitted FROM crawld.shared_runs WHERE crawl = $1 FOR UPDATE",
                &[&self.crawl],
            )
            .await
            .map_err(failed)?
        else {
            return Ok(());
        };
        let left: i64 = row.get(0);
        if left <= 0 {
            return Ok(());
        }
        let mut fps = Vec::with_capacity(self.found.len());
        let (mut urls, mut hosts, mut depths) = (Vec::new(), Vec::new(), Vec::new());
        let mut seen = std::collections::HashSet::new();
        for (fp, url, host, depth) in &self.found {
            if seen.insert(fp.as_slice()) {
                fps.push(fp.clone());
                urls.push(url.as_str());
                hosts.push(host.as_str());
                depths.push(*depth);
            }
        }
        let admitted = tx
            .execute(
                "INSERT INTO crawld.frontier (crawl, fp, url, host, depth) \
                 SELECT $1, u.fp, u.url, u.host, u.depth \
                 FROM unnest($2::bytea[], $3::text[], $4::text[], $5::int4[]) \
                   WITH ORDINALITY AS u(fp, url, host, depth, n) \
                 WHERE NOT EXISTS (SELECT 1 FROM crawld.frontier f \
                                   WHERE f.crawl = $1 AND f.fp = u.fp) \
                 ORDER BY u.n LIMIT $6 \
                 ON CONFLICT DO NOTHING",
                &[&self.crawl, &fps, &urls, &hosts, &depths, &left],
            )
            .await
            .map_err(failed)?;
        tx.execute(
            "UPDATE crawld.shared_runs SET admitted = admitted + $2 WHERE crawl = $1",
            &[&self.crawl, &(admitted as i64)],
        )
        .await
        .map_err(failed)?;
        Ok(())
    }
}

impl Tables {
    fn this_node(&self) -> Result<Arc<Node>, StoreError> {
        self.node.clone().ok_or_else(|| StoreError::ReadOnly {
            path: self.place.clone().into(),
        })
    }

    /// Makes `crawl` (whose current run is `run`) a shared run and joins
    /// it. A crawl the database does not share yet gets its frontier from
    /// `seed` (URL, host, depth, done): the start URLs of a new run, or
    /// the journal of an interrupted one. Shared frontiers of the target's
    /// other crawls (abandoned) are dropped.
    #[allow(clippy::too_many_arguments)]
    pub fn share_run(
        &self,
        crawl: i64,
        target: &str,
        run: i64,
        mode: &str,
        max_pages: i64,
        config: &str,
        seed: Vec<(String, String, i32, bool)>,
    ) -> Result<(), StoreError> {
        let node = self.this_node()?;
        let failed = Arc::new(self.failed("writing to"));
        let args = Arc::new((target.to_owned(), mode.to_owned(), config.to_owned(), seed));
        self.retrying(move |pool, place| {
            let (args, failed, node) = (args.clone(), failed.clone(), node.clone());
            async move {
                let (target, mode, config, seed) = &*args;
                let mut client = Self::client(&pool, &place, "connecting to").await?;
                let tx = client.transaction().await.map_err(&*failed)?;
                for sql in [
                    "DELETE FROM crawld.frontier WHERE crawl IN \
                       (SELECT crawl FROM crawld.shared_runs WHERE target = $1 AND crawl <> $2)",
                    "DELETE FROM crawld.run_hosts WHERE crawl IN \
                       (SELECT crawl FROM crawld.shared_runs WHERE target = $1 AND crawl <> $2)",
                    "DELETE FROM crawld.shared_runs WHERE target = $1 AND crawl <> $2",
                ] {
                    tx.execute(sql, &[target, &crawl]).await.map_err(&*failed)?;
                }
                let known = tx
                    .execute(
                        "UPDATE crawld.shared_runs SET run = $2, mode = $3, max_pages = $4, \
                           config = $5 WHERE crawl = $1",
                        &[&crawl, &run, mode, &max_pages, config],
                    )
                    .await
                    .map_err(&*failed)?;
                if known == 0 {
                    let mut fps = Vec::with_capacity(seed.len());
                    let (mut urls, mut hosts, mut depths, mut states) =
                        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
                    for (url, host, depth, done) in seed {
                        fps.push(fingerprint(url));
                        urls.push(url.as_str());
                        hosts.push(host.as_str());
                        depths.push(*depth);
                        states.push(if *done { 2i16 } else { 0 });
                    }
                    let admitted = tx
                        .execute(
                            "INSERT INTO crawld.frontier (crawl, fp, url, host, depth, state) \
                             SELECT $1, u.fp, u.url, u.host, u.depth, u.state \
                             FROM unnest($2::bytea[], $3::text[], $4::text[], $5::int4[], \
                                         $6::int2[]) WITH ORDINALITY \
                               AS u(fp, url, host, depth, state, n) \
                             ORDER BY u.n ON CONFLICT DO NOTHING",
                            &[&crawl, &fps, &urls, &hosts, &depths, &states],
                        )
                        .await
                        .map_err(&*failed)?;
                    tx.execute(
                        "INSERT INTO crawld.shared_runs \
                           (crawl, target, run, mode, admitted, max_pages, config) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7)",
                        &[
                            &crawl,
                            target,
                            &run,
                            mode,
                            &(admitted as i64),
                            &max_pages,
                            config,
                        ],
                    )
                    .await
                    .map_err(&*failed)?;
                }
                join(&tx, run, &node.id).await.map_err(&*failed)?;
                tx.commit().await.map_err(&*failed)?;
                node.crawls().insert(crawl);
                Ok(())
            }
        })
    }

    /// Whether a run of `target`'s `crawl` is shared: its crawl is shared
    /// already, or another live node has the target with the same
    /// configuration (`config`), and may work on it.
    pub fn should_share(&self, target: &str, crawl: i64, config: &str) -> Result<bool, StoreError> {
        let me = self.this_node()?.id.clone();
        let rows = self.rows(
            "SELECT (EXISTS (SELECT 1 FROM crawld.shared_runs WHERE crawl = $1) \
                 OR EXISTS (SELECT 1 FROM crawld.members \
                            WHERE node <> $2 AND expires > now() AND configs->>$3 = $4))::text",
            vec![
                Box::new(crawl),
                Box::new(me),
                Box::new(target.to_owned()),
                Box::new(config.to_owned()),
            ],
        )?;
        Ok(rows
            .first()
            .and_then(|r| r.first())
            .is_some_and(|v| v == "true"))
    }

    /// Joins another node's shared run (of `crawl`).
    pub fn join_run(&self, crawl: i64, run: i64) -> Result<(), StoreError> {
        let node = self.this_node()?;
        let failed = Arc::new(self.failed("writing to"));
        self.retrying(move |pool, place| {
            let (failed, node) = (failed.clone(), node.clone());
            async move {
                let mut client = Self::client(&pool, &place, "connecting to").await?;
                let tx = client.transaction().await.map_err(&*failed)?;
                join(&tx, run, &node.id).await.map_err(&*failed)?;
                tx.commit().await.map_err(&*failed)?;
                node.crawls().insert(crawl);
                Ok(())
            }
        })
    }

    /// Gives URLs (by fingerprint) this node holds back to the run.
    pub fn give_back(&self, crawl: i64, fps: Vec<Vec<u8>>) -> Result<(), StoreError> {
        let me = self.this_node()?.id.clone();
        self.execute(
            "UPDATE crawld.frontier SET state = 0, holder = '', expires = NULL \
             WHERE crawl = $1 AND fp = ANY($2) AND holder = $3 AND state = 1",
            vec![Box::new(crawl), Box::new(fps), Box::new(me)],
        )
    }

    /// Leaves a shared run: the URLs and hosts this node holds go back to
    /// the others at once, and its part records its last figures.
    pub fn leave_run(
        &self,
        crawl: i64,
        run: i64,
        counts: Option<String>,
    ) -> Result<(), StoreError> {
        let node = self.this_node()?;
        let failed = Arc::new(self.failed("writing to"));
        let counts = Arc::new(counts);
        self.retrying(move |pool, place| {
            let (failed, node, counts) = (failed.clone(), node.clone(), counts.clone());
            async move {
                let mut client = Self::client(&pool, &place, "connecting to").await?;
                let tx = client.transaction().await.map_err(&*failed)?;
                tx.execute(
                    "UPDATE crawld.frontier SET state = 0, holder = '', expires = NULL \
                     WHERE crawl = $1 AND holder = $2 AND state = 1",
                    &[&crawl, &node.id],
                )
                .await
                .map_err(&*failed)?;
                tx.execute(
                    "UPDATE crawld.run_hosts SET holder = '', expires = NULL \
                     WHERE crawl = $1 AND holder = $2",
                    &[&crawl, &node.id],
                )
                .await
                .map_err(&*failed)?;
                tx.execute(
                    "UPDATE crawld.run_parts SET left_at = now(), \
                       counts = COALESCE($3::text::json, counts) WHERE run = $1 AND node = $2",
                    &[&run, &node.id, &*counts],
                )
                .await
                .map_err(&*failed)?;
                tx.commit().await.map_err(&*failed)?;
                Ok(())
            }
        })
    }

    /// Claims up to `limit` URLs of `crawl` for this node: first it takes
    /// its fair share of the run's hosts with URLs left (those hosts
    /// divided by the nodes on the run), keeping those it holds; then the
    /// next URLs of those hosts that are queued, or whose lease expired.
    pub fn claim_urls(&self, crawl: i64, run: i64, limit: i64) -> Result<Claim, StoreError> {
        let node = self.this_node()?;
        let failed = Arc::new(self.failed("writing to"));
        self.retrying(move |pool, place| {
            let (failed, node) = (failed.clone(), node.clone());
            async move {
                let mut client = Self::client(&pool, &place, "connecting to").await?;
                let tx = client.transaction().await.map_err(&*failed)?;
                tx.execute("SELECT pg_advisory_xact_lock($1)", &[&(CLAIM_LOCK ^ crawl)])
                    .await
                    .map_err(&*failed)?;
                // A run ended (or stopped, or taken over as a new run) has
                // nothing more for anyone.
                let alive = tx
                    .query_opt(
                        "SELECT 1 FROM crawld.run_leases WHERE run = $1 AND NOT done",
                        &[&run],
                    )
                    .await
                    .map_err(&*failed)?;
                if alive.is_none() {
                    tx.commit().await.map_err(&*failed)?;
                    return Ok(Claim {
                        drained: true,
                        ..Claim::default()
                    });
                }
                let work: BTreeSet<String> = tx
                    .query(HOSTS_WITH_WORK, &[&crawl, &MAX_RUN_HOSTS])
                    .await
                    .map_err(&*failed)?
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
                if work.is_empty() {
                    tx.commit().await.map_err(&*failed)?;
                    return Ok(Claim {
                        drained: true,
                        ..Claim::default()
                    });
                }
                let nodes: i64 = tx
                    .query_one(
                        "SELECT count(*) FROM crawld.run_parts p \
                         JOIN crawld.members m ON m.node = p.node \
                         WHERE p.run = $1 AND p.left_at IS NULL AND m.expires > now()",
                        &[&run],
                    )
                    .await
                    .map_err(&*failed)?
                    .get(0);
                let held: HashMap<String, (String, bool)> = tx
                    .query(
                        "SELECT host, holder, coalesce(expires > now(), false) \
                         FROM crawld.run_hosts WHERE crawl = $1",
                        &[&crawl],
                    )
                    .await
                    .map_err(&*failed)?
                    .iter()
                    .map(|r| (r.get(0), (r.get(1), r.get(2))))
                    .collect();
                let hosts = pick_hosts(&work, &held, &node.id, nodes.max(1) as usize);
                let (keep, drop): (Vec<String>, Vec<String>) = hosts;
                tx.execute(
                    "UPDATE crawld.run_hosts SET holder = '', expires = NULL \
                     WHERE crawl = $1 AND host = ANY($2) AND holder = $3",
                    &[&crawl, &drop, &node.id],
                )
                .await
                .map_err(&*failed)?;
                let taken: Vec<String> = tx
                    .query(
                        "INSERT INTO crawld.run_hosts AS h (crawl, host, holder, expires) \
                         SELECT $1, unnest($2::text[]), $3, now() + make_interval(secs => $4) \
                         ON CONFLICT (crawl, host) DO UPDATE \
                           SET holder = EXCLUDED.holder, expires = EXCLUDED.expires \
                         WHERE h.holder IN ('', EXCLUDED.holder) OR h.expires IS NULL \
                           OR h.expires < now() \
                         RETURNING host",
                        &[&crawl, &keep, &node.id, &node.secs()],
                    )
                    .await
                    .map_err(&*failed)?
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
                let mut urls = Vec::new();
                if !taken.is_empty() && limit > 0 {
                    let per = (limit / taken.len() as i64).max(1);
                    for host in &taken {
                        let rows = tx
                            .query(CLAIM_HOST, &[&crawl, host, &per, &node.id, &node.secs()])
                            .await
                            .map_err(&*failed)?;
                        urls.extend(rows.iter().map(|r| {
                            (
                                r.get::<_, String>(0),
                                r.get::<_, i32>(1).max(0) as u32,
                                r.get::<_, i32>(2).max(0) as u32,
                            )
                        }));
                    }
                }
                tx.commit().await.map_err(&*failed)?;
                Ok(Claim {
                    urls,
                    drained: false,
                    hosts: taken,
                })
            }
        })
    }

    /// The shared runs that other live nodes own, not ended.
    pub fn shared_runs(&self) -> Result<Vec<SharedRunRow>, StoreError> {
        let me = self.node.as_ref().map(|n| n.id.clone()).unwrap_or_default();
        let rows = self.rows(
            "SELECT s.crawl::text, s.target, s.run::text, s.config FROM crawld.shared_runs s \
             JOIN crawld.run_leases l ON l.target = s.target AND l.run = s.run \
             WHERE NOT l.done AND l.node NOT IN ('', $1) AND l.expires > now() \
             ORDER BY s.target",
            vec![Box::new(me)],
        )?;
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                Some(SharedRunRow {
                    crawl: r.first()?.parse().ok()?,
                    target: r.get(1)?.clone(),
                    run: r.get(2)?.parse().ok()?,
                    config: r.get(3)?.clone(),
                })
            })
            .collect())
    }

    /// The figures (JSON) of the other nodes' parts of the runs of `chain`,
    /// and whether every one of them has left.
    pub fn run_parts(&self, chain: Vec<i64>) -> Result<(Vec<String>, bool), StoreError> {
        let me = self.node.as_ref().map(|n| n.id.clone()).unwrap_or_default();
        let rows = self.rows(
            "SELECT p.counts::text, (p.left_at IS NOT NULL \
                 OR coalesce(m.expires < now(), true))::text \
             FROM crawld.run_parts p LEFT JOIN crawld.members m ON m.node = p.node \
             WHERE p.run = ANY($1) AND p.node <> $2",
            vec![Box::new(chain), Box::new(me)],
        )?;
        let all_left = rows.iter().all(|r| r.get(1).is_some_and(|l| l == "true"));
        Ok((
            rows.into_iter()
                .filter_map(|r| r.into_iter().next())
                .collect(),
            all_left,
        ))
    }
}

/// A node joins a run (again, after it left).
async fn join(
    tx: &deadpool_postgres::Transaction<'_>,
    run: i64,
    node: &str,
) -> Result<(), tokio_postgres::Error> {
    tx.execute(
        "INSERT INTO crawld.run_parts (run, node) VALUES ($1, $2) \
         ON CONFLICT (run, node) DO UPDATE SET left_at = NULL",
        &[&run, &node],
    )
    .await
    .map(|_| ())
}

/// The hosts a node keeps (its fair share of the hosts with work, those it
/// holds first, then free ones) and those it gives up.
fn pick_hosts(
    work: &BTreeSet<String>,
    held: &HashMap<String, (String, bool)>,
    me: &str,
    nodes: usize,
) -> (Vec<String>, Vec<String>) {
    let fair = work.len().div_ceil(nodes);
    let mine = |h: &String| held.get(h).is_some_and(|(holder, _)| holder == me);
    let mut keep: Vec<String> = work
        .iter()
        .filter(|h| mine(h))
        .take(fair)
        .cloned()
        .collect();
    let drop: Vec<String> = held
        .iter()
        .filter(|(h, (holder, _))| holder == me && !keep.contains(h))
        .map(|(h, _)| h.clone())
        .collect();
    for host in work {
        if keep.len() >= fair {
            break;
        }
        let free = match held.get(host) {
            None => true,
            Some((holder, live)) => holder.is_empty() || !live,
        };
        if free && !keep.contains(host) {
            keep.push(host.clone());
        }
    }
    (keep, drop)
}

/// The 16-byte fingerprint of a URL, the frontier's key.
pub fn fingerprint(url: &str) -> Vec<u8> {
    xxhash_rust::xxh3::xxh3_128(url.as_bytes())
        .to_be_bytes()
        .to_vec()
}

/// The distinct hosts with URLs left in a crawl, read by skipping through
/// the `frontier_todo` index (one probe per host, not per URL).
const HOSTS_WITH_WORK: &str = "\
WITH RECURSIVE h(host, n) AS (
  (SELECT host, 1::bigint FROM crawld.frontier WHERE crawl = $1 AND state < 2 ORDER BY host LIMIT 1)
  UNION ALL
  SELECT (SELECT f.host FROM crawld.frontier f
          WHERE f.crawl = $1 AND f.state < 2 AND f.host > h.host ORDER BY f.host LIMIT 1), h.n + 1
  FROM h WHERE h.host IS NOT NULL AND h.n < $2
)
SELECT host FROM h WHERE host IS NOT NULL";

/// The next URLs of one host, queued or with an expired lease, leased to
/// this node.
const CLAIM_HOST: &str = "\
UPDATE crawld.frontier f
SET state = 1, holder = $4, expires = now() + make_interval(secs => $5), attempts = f.attempts + 1
FROM (SELECT fp FROM crawld.frontier
      WHERE crawl = $1 AND host = $2 AND state < 2
        AND (state = 0 OR expires IS NULL OR expires < now())
      ORDER BY seq LIMIT $3 FOR UPDATE SKIP LOCKED) s
WHERE f.crawl = $1 AND f.fp = s.fp
RETURNING f.url, f.depth, f.attempts";

#[cfg(test)]
mod tests {
    use super::*;

    fn held(rows: &[(&str, &str, bool)]) -> HashMap<String, (String, bool)> {
        rows.iter()
            .map(|(h, n, l)| (h.to_string(), (n.to_string(), *l)))
            .collect()
    }

    #[test]
    fn hosts_spread_across_the_nodes_of_a_run() {
        let work: BTreeSet<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        // Three nodes, nothing held: one host each.
        let (keep, drop) = pick_hosts(&work, &held(&[]), "n1", 3);
        assert_eq!((keep, drop.len()), (vec!["a".to_string()], 0));
        let (keep, _) = pick_hosts(&work, &held(&[("a", "n1", true)]), "n2", 3);
        assert_eq!(keep, vec!["b".to_string()]);
        // A holder gone (its lease expired) frees its host.
        let (keep, _) = pick_hosts(
            &work,
            &held(&[("a", "n1", false), ("b", "n2", true), ("c", "n3", true)]),
            "n2",
            2,
        );
        assert_eq!(keep, vec!["b".to_string(), "a".to_string()]);
        // A host with no work left is given up.
        let (keep, drop) = pick_hosts(&work, &held(&[("z", "n1", true)]), "n1", 1);
        assert_eq!((keep.len(), drop), (3, vec!["z".to_string()]));
    }
}
