//! `crawld run`: the long-running service.

pub mod schedule;
