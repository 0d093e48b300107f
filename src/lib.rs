//! crawld keeps structured data from websites fresh.
//!
//! The data flow, one module per stage:
//!
//! ```text
//! configs/*.toml ─ config::load_dir ─► TargetSet
//!        │
//!        ▼
//! crawl::run (one run of one target)
//!    frontier ─► limiter (per host: permit → delay) ─► fetcher ─► extract
//!       ▲                                                           │
//!       └───────────────────── discovered links ◄───────────────────┤
//!                                               store (sled) ◄─────┘ items, pages, runs
//! ```
//!
//! What each answer means is one table (`retry`: the verdict on the URL and
//! the signal for the host limiter), and why a URL failed is one type
//! (`failure`), stored and counted as it is. The store (`store`) is the only
//! module that touches sled: a guarded handle that turns sled's panics and
//! errors into `StoreError`s, and that commands which only read open
//! read-only.
//!
//! `daemon` runs every target on its schedules (`crawld run`): cron firings,
//! the control socket, config reloads and signals all feed one supervisor
//! loop, which starts `crawl::run` tasks. `cli` is the command line on top;
//! `export` writes items out and `query` runs the reading commands.
//! `control` holds the types that the daemon's socket server and its client
//! share, so that imports go one way: `cli` → `daemon` → `control` → `query`.
//! `web` is the daemon's optional HTTP listener (dashboard, `/metrics`,
//! `/api/`): the daemon starts it and feeds it through a trait, so it only
//! imports `control` and `store` types (`daemon` → `web` → `control`).
//!
//! Imports go one way, down a table of floors that `tests/layers/main.rs` keeps:
//! shared vocabulary at the bottom (`ids`, `failure`, `urlnorm`, `error`,
//! `jsonld` for structured data's paths and reader,
//! and `health` for monitor kinds and states), then `config` (compiled
//! selectors included), `retry`, `extract`, `store`, the crawl's stages,
//! `crawl`, `daemon` and `cli` on top. A type two floors share lives below
//! both, never re-exported through a neighbour.

#![forbid(unsafe_code)]

pub mod address;
pub mod alert;
pub mod cli;
pub mod config;
pub mod control;
pub mod crawl;
pub mod daemon;
pub mod error;
pub mod export;
pub mod extract;
pub mod failure;
pub mod fetcher;
pub mod files;
pub mod frontier;
pub mod health;
pub mod ids;
pub mod jsonld;
pub mod limiter;
pub mod monitor;
pub mod printable;
pub mod query;
pub mod report;
pub mod retry;
pub mod robots;
pub mod sitemap;
pub mod store;
pub mod urlnorm;
pub mod web;
