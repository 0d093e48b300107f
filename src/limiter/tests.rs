//! The limiter's arithmetic under paused time.

use super::*;
use crate::config::builtins;

fn profile(name: &str, concurrency: u32, delay_ms: u64) -> Profile {
    let mut p = (*builtins()[&ProfileName::new("balanced")]).clone();
    p.name = ProfileName::new(name);
    p.concurrency = concurrency;
    p.delay = DelayRange {
        min: Duration::from_millis(delay_ms),
        max: Duration::from_millis(delay_ms),
    };
    p
}

#[tokio::test(start_paused = true)]
async fn slots_are_held_for_the_delay() {
    let pool = HostPool::default();
    let host = HostKey::new("a:80");
    let p = profile("p", 2, 500);
    let a = pool.try_acquire(&host, &p).unwrap();
    let _b = pool.try_acquire(&host, &p).unwrap();
    assert!(pool.try_acquire(&host, &p).is_none(), "only 2 in flight");
    assert!(
        pool.try_acquire(&HostKey::new("b:80"), &p).is_some(),
        "hosts are independent"
    );
    let mut freed = pool.subscribe();
    a.release_after_delay();
    tokio::time::sleep(Duration::from_millis(499)).await;
    assert!(
        pool.try_acquire(&host, &p).is_none(),
        "still held during the delay"
    );
    freed.changed().await.unwrap();
    assert!(
        pool.try_acquire(&host, &p).is_some(),
        "free after the delay"
    );
}

#[tokio::test(start_paused = true)]
async fn a_backoff_window_blocks_the_host_until_it_ends() {
    let pool = HostPool::default();
    let host = HostKey::new("a:80");
    let p = profile("p", 4, 0);
    drop(pool.try_acquire(&host, &p).unwrap());
    pool.block(&host, Instant::now() + Duration::from_secs(2));
    assert!(pool.try_acquire(&host, &p).is_none());
    assert_eq!(
        pool.next_ready(),
        Some(Instant::now() + Duration::from_secs(2))
    );
    tokio::time::advance(Duration::from_millis(1999)).await;
    assert!(
        pool.try_acquire(&host, &p).is_none(),
        "not a millisecond early"
    );
    tokio::time::advance(Duration::from_millis(1)).await;
    assert!(pool.try_acquire(&host, &p).is_some());
}

#[tokio::test(start_paused = true)]
async fn crawl_delay_spaces_request_starts() {
    let pool = HostPool::default();
    let host = HostKey::new("a:80");
    let p = profile("p", 4, 0);
    let _a = pool.try_acquire(&host, &p).unwrap();
    pool.set_gap(&host, Duration::from_millis(500));
    assert!(
        pool.try_acquire(&host, &p).is_none(),
        "a free slot, but too soon"
    );
    tokio::time::advance(Duration::from_millis(500)).await;
    assert!(pool.try_acquire(&host, &p).is_some());
}

#[tokio::test(start_paused = true)]
async fn two_profiles_on_one_host_get_the_stricter_of_each_limit() {
    let pool = HostPool::default();
    let host = HostKey::new("a:80");
    let loose = profile("loose", 8, 100);
    let mut strict = profile("strict", 2, 50);
    strict.delay.max = Duration::from_millis(300);
    let _a = pool.try_acquire(&host, &loose).unwrap();
    let _b = pool.try_acquire(&host, &strict).unwrap();
    assert!(
        pool.try_acquire(&host, &loose).is_none(),
        "the lower concurrency holds for every profile"
    );
    let snap = &pool.snapshot()[0];
    assert_eq!(snap.concurrency, 2);
    assert_eq!(snap.delay_ms, (100, 300), "larger bound of each end");
}

fn in_flight_limit(pool: &HostPool, host: &HostKey, p: &Profile) -> u32 {
    let mut held = Vec::new();
    while let Some(permit) = pool.try_acquire(host, p) {
        held.push(permit);
    }
    held.len() as u32
}

#[tokio::test(start_paused = true)]
async fn aimd_halves_on_429_and_adds_one_per_window_of_successes() {
    let pool = HostPool::default();
    let host = HostKey::new("a:80");
    let mut p = profile("p", 8, 0);
    p.pause_after = 0;
    assert_eq!(in_flight_limit(&pool, &host, &p), 8);
    pool.answered(&host, Some(429));
    assert_eq!(in_flight_limit(&pool, &host, &p), 4);
    pool.answered(&host, Some(503));
    pool.answered(&host, Some(429));
    assert_eq!(in_flight_limit(&pool, &host, &p), 1);
    pool.answered(&host, Some(429));
    assert_eq!(in_flight_limit(&pool, &host, &p), 1, "never below one");
    // 1 → 2 after one success, 2 → 3 after two more, and so on up to 8.
    let mut successes = 0;
    while pool.snapshot()[0].effective < 8 {
        pool.answered(&host, Some(200));
        successes += 1;
        assert!(successes <= 28, "recovers within 1+2+…+7 successes");
    }
    assert_eq!(successes, 28);
    assert_eq!(in_flight_limit(&pool, &host, &p), 8);
    p.adaptive = false;
    let other = HostKey::new("b:80");
    in_flight_limit(&pool, &other, &p);
    pool.answered(&other, Some(429));
    assert_eq!(in_flight_limit(&pool, &other, &p), 8, "not adaptive");
}

#[tokio::test(start_paused = true)]
async fn the_breaker_pauses_after_n_refusals_in_a_row() {
    let pool = HostPool::default();
    let host = HostKey::new("a:80");
    let mut p = profile("p", 4, 0);
    p.pause_after = 3;
    p.pause_for = Duration::from_secs(60);
    drop(pool.try_acquire(&host, &p).unwrap());
    assert_eq!(pool.answered(&host, Some(403)), None);
    assert_eq!(pool.answered(&host, Some(429)), None);
    assert_eq!(
        pool.answered(&host, Some(200)),
        None,
        "a success resets the count"
    );
    assert_eq!(pool.answered(&host, Some(429)), None);
    assert_eq!(pool.answered(&host, None), None, "errors do not count");
    assert_eq!(pool.answered(&host, Some(403)), None);
    assert_eq!(
        pool.answered(&host, Some(429)),
        Some(Duration::from_secs(60))
    );
    assert!(pool.try_acquire(&host, &p).is_none());
    assert!(pool.snapshot()[0].paused_until_ms.is_some());
    tokio::time::advance(Duration::from_secs(59)).await;
    assert!(pool.try_acquire(&host, &p).is_none());
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(
        pool.try_acquire(&host, &p).is_some(),
        "resumes after pause_for"
    );
    let c = pool.snapshot()[0].counters;
    assert_eq!(
        (c.status_4xx, c.status_429, c.status_2xx, c.errors),
        (5, 3, 1, 1)
    );
}

#[tokio::test(start_paused = true)]
async fn idle_hosts_are_forgotten_but_not_paused_ones() {
    let pool = HostPool::default();
    let p = profile("p", 4, 0);
    let (idle, paused, busy) = (
        HostKey::new("a:80"),
        HostKey::new("b:80"),
        HostKey::new("c:80"),
    );
    drop(pool.try_acquire(&idle, &p).unwrap());
    drop(pool.try_acquire(&paused, &p).unwrap());
    let _held = pool.try_acquire(&busy, &p).unwrap();
    pool.pause(&paused, Instant::now() + IDLE_HOST * 2);
    tokio::time::advance(IDLE_HOST + Duration::from_secs(1)).await;
    let other = HostKey::new("d:80");
    for _ in 0..SWEEP_EVERY {
        drop(pool.try_acquire(&other, &p));
    }
    let left: Vec<String> = pool.snapshot().iter().map(|h| h.host.to_string()).collect();
    assert_eq!(left, ["b:80", "c:80", "d:80"]);
}

#[tokio::test(start_paused = true)]
async fn a_profile_changed_by_a_reload_takes_effect_on_a_known_host() {
    let pool = HostPool::default();
    let host = HostKey::new("a:80");
    assert_eq!(in_flight_limit(&pool, &host, &profile("p", 2, 0)), 2);
    assert_eq!(
        in_flight_limit(&pool, &host, &profile("p", 5, 0)),
        2,
        "while a run still uses the old version, the stricter of both holds"
    );
    tokio::time::advance(PROFILE_IDLE).await;
    assert_eq!(
        in_flight_limit(&pool, &host, &profile("p", 5, 0)),
        5,
        "once the old version is unused, the new one alone"
    );
    assert_eq!(in_flight_limit(&pool, &host, &profile("p", 1, 0)), 1);
    tokio::time::advance(PROFILE_IDLE).await;
    assert_eq!(
        in_flight_limit(&pool, &host, &profile("q", 3, 0)),
        3,
        "a profile no longer used (renamed, removed) stops counting"
    );
}

#[tokio::test(start_paused = true)]
async fn status_shows_what_a_cut_retry_after_asked_for() {
    let pool = HostPool::default();
    let host = HostKey::new("a:80");
    let p = profile("p", 4, 0);
    drop(pool.try_acquire(&host, &p).unwrap());
    let snap = |pool: &HostPool| pool.snapshot().remove(0);
    pool.block_cut(
        &host,
        Instant::now() + Duration::from_secs(600),
        Duration::from_secs(3600),
    );
    assert_eq!(snap(&pool).backoff_asked_ms, Some(3_600_000));
    // A longer window that was not cut replaces the note.
    pool.block(&host, Instant::now() + Duration::from_secs(700));
    assert_eq!(snap(&pool).backoff_asked_ms, None);
    assert!(snap(&pool).backoff_until_ms.is_some());
}
