//! Shared runs on the database: the run's frontier is `crawld.frontier`,
//! whose URLs every node on the run claims in batches with leases
//! (`FOR UPDATE SKIP LOCKED`); the run's hosts are spread across its
//! nodes (`crawld.run_hosts`); each node's figures are its part
//! (`crawld.run_parts`). What a commit of a shared run adds to its
//! transaction is a [`SharedStep`].

use std::sync::Arc;

use super::cluster::Node;
use super::{StoreError, Tables};

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
    pub(super) fn this_node(&self) -> Result<Arc<Node>, StoreError> {
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

/// The 16-byte fingerprint of a URL, the frontier's key.
pub fn fingerprint(url: &str) -> Vec<u8> {
    xxhash_rust::xxh3::xxh3_128(url.as_bytes())
        .to_be_bytes()
        .to_vec()
}
