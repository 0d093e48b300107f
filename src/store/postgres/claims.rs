//! Claims on a shared run's frontier: which of the run's hosts a node
//! takes (its fair share of those with URLs left), and the next URLs of
//! those hosts, leased to it (`FOR UPDATE SKIP LOCKED`).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use super::{Node, StoreError, Tables};

/// A transaction-scoped advisory lock per crawl, taken by claims: two
/// nodes never both decide who takes a host of the run.
const CLAIM_LOCK: i64 = 0x6372_6177_6c63_0000; // "crawlc"

/// Hosts of a run considered per claim, at most (a run's hosts are
/// capped by `follow.max_hosts` anyway).
const MAX_RUN_HOSTS: i64 = 10_000;

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

impl Tables {
    /// Claims up to `limit` URLs of `crawl` for this node: first the links
    /// it `proposed` (fingerprint, URL, host, depth: links it found to
    /// hosts it holds, admitted here and leased to it at once, within the
    /// run's `max_pages`, so that it fetches them without waiting for the
    /// commit of the page that found them); then it takes its fair share of
    /// the run's hosts with URLs left (those hosts divided by the nodes on
    /// the run), keeping those it holds; then the next URLs of those hosts
    /// that are queued, or whose lease expired.
    pub fn claim_urls(
        &self,
        crawl: i64,
        run: i64,
        limit: i64,
        proposed: Vec<(Vec<u8>, String, String, i32)>,
    ) -> Result<Claim, StoreError> {
        let node = self.this_node()?;
        let failed = Arc::new(self.failed("writing to"));
        let proposed = Arc::new(proposed);
        self.retrying(move |pool, place| {
            let (failed, node, proposed) = (failed.clone(), node.clone(), proposed.clone());
            async move {
                let mut client = Self::client(&pool, &place, "connecting to").await?;
                let tx = client.transaction().await.map_err(&*failed)?;
                let claim = claim_in(&tx, crawl, run, limit, &node, &proposed)
                    .await
                    .map_err(&*failed)?;
                tx.commit().await.map_err(&*failed)?;
                Ok(claim)
            }
        })
    }
}

/// One claim, in `tx` (see [`Tables::claim_urls`]), under the crawl's
/// claim lock.
async fn claim_in(
    tx: &deadpool_postgres::Transaction<'_>,
    crawl: i64,
    run: i64,
    limit: i64,
    node: &Node,
    proposed: &[(Vec<u8>, String, String, i32)],
) -> Result<Claim, tokio_postgres::Error> {
    let drained = Claim {
        drained: true,
        ..Claim::default()
    };
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&(CLAIM_LOCK ^ crawl)])
        .await?;
    // A run ended (or stopped, or taken over as a new run) has nothing
    // more for anyone.
    let alive = tx
        .query_opt(
            "SELECT 1 FROM crawld.run_leases WHERE run = $1 AND NOT done",
            &[&run],
        )
        .await?;
    if alive.is_none() {
        return Ok(drained);
    }
    let mut urls = grant(tx, crawl, node, proposed).await?;
    let work: BTreeSet<String> = tx
        .query(HOSTS_WITH_WORK, &[&crawl, &MAX_RUN_HOSTS])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if work.is_empty() {
        return Ok(drained);
    }
    let hosts = take_hosts(tx, crawl, run, node, &work).await?;
    if !hosts.is_empty() && limit > 0 {
        let per = (limit / hosts.len() as i64).max(1);
        for host in &hosts {
            let rows = tx
                .query(CLAIM_HOST, &[&crawl, host, &per, &node.id, &node.secs()])
                .await?;
            urls.extend(rows.iter().map(claimed));
        }
    }
    Ok(Claim {
        urls,
        drained: false,
        hosts,
    })
}

/// Takes this node's fair share of the run's hosts with `work` (see
/// [`pick_hosts`]) and gives up the others it held; returns those it holds.
async fn take_hosts(
    tx: &deadpool_postgres::Transaction<'_>,
    crawl: i64,
    run: i64,
    node: &Node,
    work: &BTreeSet<String>,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let nodes: i64 = tx
        .query_one(
            "SELECT count(*) FROM crawld.run_parts p \
             JOIN crawld.members m ON m.node = p.node \
             WHERE p.run = $1 AND p.left_at IS NULL AND m.expires > now()",
            &[&run],
        )
        .await?
        .get(0);
    let held: HashMap<String, (String, bool)> = tx
        .query(
            "SELECT host, holder, coalesce(expires > now(), false) \
             FROM crawld.run_hosts WHERE crawl = $1",
            &[&crawl],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect();
    let (keep, give_up) = pick_hosts(work, &held, &node.id, nodes.max(1) as usize);
    tx.execute(
        "UPDATE crawld.run_hosts SET holder = '', expires = NULL \
         WHERE crawl = $1 AND host = ANY($2) AND holder = $3",
        &[&crawl, &give_up, &node.id],
    )
    .await?;
    Ok(tx
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
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// A URL leased to this node: URL, depth, claims taken.
fn claimed(row: &tokio_postgres::Row) -> (String, u32, u32) {
    (
        row.get::<_, String>(0),
        row.get::<_, i32>(1).max(0) as u32,
        row.get::<_, i32>(2).max(0) as u32,
    )
}

/// Admits the links a node proposed, for the hosts it holds in the run,
/// leased to it: new ones within the run's `max_pages` (the run's row is
/// locked, as by a commit that admits links), and known ones still queued.
/// Returns them (URL, depth, claims).
async fn grant(
    tx: &deadpool_postgres::Transaction<'_>,
    crawl: i64,
    node: &Node,
    proposed: &[(Vec<u8>, String, String, i32)],
) -> Result<Vec<(String, u32, u32)>, tokio_postgres::Error> {
    if proposed.is_empty() {
        return Ok(Vec::new());
    }
    let left: i64 = tx
        .query_opt(
            "SELECT max_pages - admitted FROM crawld.shared_runs WHERE crawl = $1 FOR UPDATE",
            &[&crawl],
        )
        .await?
        .map_or(0, |r| r.get(0));
    let mut fps = Vec::with_capacity(proposed.len());
    let (mut urls, mut hosts, mut depths) = (Vec::new(), Vec::new(), Vec::new());
    for (fp, url, host, depth) in proposed {
        fps.push(fp.clone());
        urls.push(url.as_str());
        hosts.push(host.as_str());
        depths.push(*depth);
    }
    let new = tx
        .query(
            GRANT_NEW,
            &[
                &crawl,
                &fps,
                &urls,
                &hosts,
                &depths,
                &left.max(0),
                &node.id,
                &node.secs(),
            ],
        )
        .await?;
    tx.execute(
        "UPDATE crawld.shared_runs SET admitted = admitted + $2 WHERE crawl = $1",
        &[&crawl, &(new.len() as i64)],
    )
    .await?;
    let known = tx
        .query(GRANT_KNOWN, &[&crawl, &fps, &node.id, &node.secs()])
        .await?;
    Ok(new.iter().chain(known.iter()).map(claimed).collect())
}

/// Proposed links not known yet, of hosts the node holds in the run:
/// admitted leased to it, in the order found, within what `max_pages`
/// leaves.
const GRANT_NEW: &str = "\
INSERT INTO crawld.frontier AS f (crawl, fp, url, host, depth, state, holder, expires, attempts)
SELECT $1, u.fp, u.url, u.host, u.depth, 1, $7, now() + make_interval(secs => $8), 1
FROM unnest($2::bytea[], $3::text[], $4::text[], $5::int4[]) WITH ORDINALITY AS u(fp, url, host, depth, n)
WHERE EXISTS (SELECT 1 FROM crawld.run_hosts h
              WHERE h.crawl = $1 AND h.host = u.host AND h.holder = $7 AND h.expires > now())
  AND NOT EXISTS (SELECT 1 FROM crawld.frontier k WHERE k.crawl = $1 AND k.fp = u.fp)
ORDER BY u.n LIMIT $6
ON CONFLICT DO NOTHING
RETURNING f.url, f.depth, f.attempts";

/// Proposed links known already and still queued, of hosts the node
/// holds: leased to it.
const GRANT_KNOWN: &str = "\
UPDATE crawld.frontier f
SET state = 1, holder = $3, expires = now() + make_interval(secs => $4), attempts = f.attempts + 1
WHERE f.crawl = $1 AND f.fp = ANY($2) AND f.state = 0
  AND EXISTS (SELECT 1 FROM crawld.run_hosts h
              WHERE h.crawl = $1 AND h.host = f.host AND h.holder = $3 AND h.expires > now())
RETURNING f.url, f.depth, f.attempts";

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
