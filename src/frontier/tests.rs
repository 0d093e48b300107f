//! The frontier at scale: bounded memory, every URL once, in order.

use std::sync::Arc;

use url::Url;

use super::*;
use crate::config::Target;
use crate::ids::TargetId;

fn target(hosts: &[&str]) -> Arc<Target> {
    let starts: Vec<String> = hosts.iter().map(|h| format!("\"http://{h}/\"")).collect();
    let text = format!(
        "start_urls = [{}]\nmax_pages = 10000000\n[follow]\nmax_depth = 100\n",
        starts.join(", ")
    );
    let files = vec![(std::path::PathBuf::from("big.toml"), Ok(text))];
    let report = crate::config::load_files(files, &|_| None);
    assert!(report.all_errors().is_empty(), "{:?}", report.all_errors());
    report.set.targets[&TargetId::new("big")].clone()
}

fn url(host: &str, i: usize) -> Url {
    Url::parse(&format!("http://{host}/p/{i}")).expect("url")
}

/// Pops everything, checking each host's URLs come out in the order they
/// were offered; returns how many, and the most URLs held in memory.
fn drain(f: &mut Frontier, hosts: &[&str]) -> (usize, usize) {
    let mut next = vec![0usize; hosts.len()];
    let (mut n, mut peak) = (0, 0);
    while let Some((q, ())) = f.pop_with(|_, _| Some(())) {
        peak = peak.max(f.in_memory());
        n += 1;
        if q.url.path() == "/" {
            continue;
        }
        let h = hosts
            .iter()
            .position(|h| q.url.host_str() == Some(*h))
            .expect("known host");
        assert_eq!(q.url, url(hosts[h], next[h]), "host {h} out of order");
        next[h] += 1;
    }
    (n, peak)
}

#[test]
fn a_big_queue_goes_on_disk_and_comes_back_whole_and_in_order() {
    let hosts = ["a.test", "b.test", "c.test"];
    let t = target(&hosts);
    let dir = tempfile::tempdir().expect("dir");
    let mut f = Frontier::new(&t);
    f.spill_in(dir.path().to_path_buf());
    let per_host = MEMORY_QUEUE;
    for i in 0..per_host {
        for h in hosts {
            f.offer(&t, url(h, i), 1).expect("admitted");
        }
        // Offered twice: admitted once.
        assert_eq!(f.offer(&t, url(hosts[0], i), 1), Err(Refusal::AlreadySeen));
    }
    assert_eq!(f.queued(), 3 * per_host + 3);
    assert!(
        f.in_memory() <= MEMORY_QUEUE + 3 * HOST_KEEP,
        "{}",
        f.in_memory()
    );
    let (n, peak) = drain(&mut f, &hosts);
    assert_eq!(n, 3 * per_host + 3);
    assert!(peak <= MEMORY_QUEUE + 3 * (HOST_KEEP + REFILL), "{peak}");
    assert_eq!(f.queued(), 0);
}

#[test]
fn without_a_directory_everything_stays_in_memory() {
    let hosts = ["a.test"];
    let t = target(&hosts);
    let mut f = Frontier::new(&t);
    for i in 0..MEMORY_QUEUE + 500 {
        f.offer(&t, url(hosts[0], i), 1).expect("admitted");
    }
    assert_eq!(f.in_memory(), MEMORY_QUEUE + 501);
    assert_eq!(drain(&mut f, &hosts).0, MEMORY_QUEUE + 501);
}

#[test]
fn requeued_urls_go_to_the_back_even_when_the_queue_is_on_disk() {
    let hosts = ["a.test"];
    let t = target(&hosts);
    let dir = tempfile::tempdir().expect("dir");
    let mut f = Frontier::new(&t);
    f.spill_in(dir.path().to_path_buf());
    let total = MEMORY_QUEUE + 2 * REFILL;
    for i in 0..total {
        f.offer(&t, url(hosts[0], i), 1).expect("admitted");
    }
    let (start, ()) = f.pop_with(|_, _| Some(())).expect("start url");
    assert_eq!(start.url.path(), "/");
    let (mut first, ()) = f.pop_with(|_, _| Some(())).expect("first");
    first.attempt = 1;
    f.requeue(first.clone());
    let mut last = None;
    let mut n = 0;
    while let Some((q, ())) = f.pop_with(|_, _| Some(())) {
        n += 1;
        last = Some(q);
    }
    assert_eq!(n, total);
    assert_eq!(last, Some(first));
}

#[test]
fn upcoming_lists_what_pop_hands_out_next() {
    let hosts = ["a.test", "b.test"];
    let t = target(&hosts);
    let mut f = Frontier::new(&t);
    for i in 0..10 {
        for h in hosts {
            f.offer(&t, url(h, i), 1).expect("admitted");
        }
    }
    let ahead: Vec<Url> = f.upcoming(8).iter().map(|q| q.url.clone()).collect();
    let popped: Vec<Url> = (0..8)
        .filter_map(|_| f.pop_with(|_, _| Some(())))
        .map(|(q, ())| q.url)
        .collect();
    assert_eq!(ahead, popped);
}

#[test]
fn a_spill_file_that_cannot_be_made_loses_nothing() {
    let hosts = ["a.test"];
    let t = target(&hosts);
    let dir = tempfile::tempdir().expect("dir");
    let mut f = Frontier::new(&t);
    // A directory that does not exist: the file cannot be created.
    f.spill_in(dir.path().join("gone"));
    let total = MEMORY_QUEUE + 2 * REFILL;
    for i in 0..total {
        f.offer(&t, url(hosts[0], i), 1).expect("admitted");
    }
    assert_eq!(f.in_memory(), total + 1, "kept in memory instead");
    assert_eq!(drain(&mut f, &hosts).0, total + 1);
}
