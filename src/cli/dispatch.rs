//! From a parsed command line to the code that runs it: one arm per
//! command, each handing its arguments to the module that owns the work.

use std::path::Path;

use super::args::{AlertAction, Command, ReaderArgs, StoreAction};
use super::{alert_cli, check, crawl, daemon_cli, data, demo, test_page};
use crate::config;
use crate::control;
use crate::error::Exit;
use crate::ids::TargetId;
use crate::query::{Configured, ReadCommand};
use crate::store::RunMode;

/// Runs one command and says how the process ends. It is long only because
/// each arm destructures its command's arguments: an arm does nothing but
/// hand them on, so splitting the match would only scatter the table.
pub(super) async fn dispatch(command: Command) -> Exit {
    match command {
        Command::Check { dir, configs } => check(&dir.unwrap_or_else(|| configs.dir())),
        Command::Test {
            target,
            url,
            file,
            json,
            configs,
        } => {
            let (url, file) = (url.as_deref(), file.as_deref());
            test_page::test(&configs.dir(), &target, url, file, json).await
        }
        Command::Crawl {
            target,
            full,
            no_progress,
            fail_on_alert,
            alert,
            notify,
            configs,
            state,
            cluster,
        } => {
            let mode = [RunMode::Incremental, RunMode::Full][usize::from(full)];
            let watch = super::Watch::new(fail_on_alert, alert).with_notify(notify);
            let cluster = cluster.cluster.as_deref();
            crawl(
                &configs.dir(),
                &state,
                cluster,
                &target,
                mode,
                !no_progress,
                watch,
            )
            .await
        }
        Command::Export {
            target,
            changes,
            since,
            format,
            kind,
            out,
            reader,
        } => {
            let target = TargetId::new(target);
            let cmd = if changes {
                ReadCommand::Changes { target, since }
            } else {
                ReadCommand::Export {
                    target,
                    format,
                    kind,
                }
            };
            read(&reader, cmd, out.as_deref()).await
        }
        c @ (Command::History { .. } | Command::Runs { .. } | Command::Failures { .. }) => {
            read_command(c).await
        }
        Command::Run {
            configs,
            state,
            cluster,
            lease,
            max_runs,
            grace,
            no_watch,
            http,
            ..
        } => {
            let opts = crate::daemon::Options {
                configs: configs.dir(),
                state: state.dir(),
                cluster: cluster.cluster,
                lease: lease.into(),
                socket: control::socket_path(state.socket.as_deref(), &state.dir()),
                max_runs,
                grace: grace.into(),
                watch: !no_watch,
                http: http.config(),
            };
            crate::daemon::run(opts).await
        }
        Command::Status { json, state } => daemon_cli::status(&state, json).await,
        Command::Trigger {
            target,
            full,
            state,
        } => daemon_cli::trigger(&state, &target, full).await,
        Command::StopRun { target, state } => daemon_cli::stop_run(&state, &target).await,
        Command::Reload { state } => daemon_cli::reload(&state).await,
        Command::Store { action } => match action {
            StoreAction::Check { state } => data::store_check(&state.dir()),
            StoreAction::Backup { file, state } => {
                data::store_backup(&state.dir(), state.socket.as_deref(), &file).await
            }
            StoreAction::Restore { file, state } => data::store_restore(&state.dir(), &file),
        },
        Command::Alert {
            action: AlertAction::Test { channel, configs },
        } => alert_cli::test(&configs.dir(), &channel).await,
        Command::Completions { shell } => super::manual::completions(shell),
        Command::Manual { out } => super::manual::write_all(&out),
        Command::Demo {
            port,
            serve,
            site,
            configs,
            state,
        } => demo::run(port, serve, site, configs.configs.clone(), &state.dir()).await,
    }
}

/// `history`, `runs` and `failures`: reading commands to stdout.
async fn read_command(command: Command) -> Exit {
    let (reader, cmd) = match command {
        Command::History {
            target,
            key,
            kind,
            reader,
        } => {
            let target = TargetId::new(target);
            (reader, ReadCommand::History { target, key, kind })
        }
        Command::Runs {
            target,
            json,
            reader,
        } => {
            let target = TargetId::new(target);
            (reader, ReadCommand::Runs { target, json })
        }
        Command::Failures {
            target,
            run,
            json,
            reader,
        } => {
            let target = TargetId::new(target);
            (reader, ReadCommand::Failures { target, run, json })
        }
        // INVARIANT: dispatch hands over only the three commands above.
        _ => return Exit::Usage,
    };
    read(&reader, cmd, None).await
}

/// A reading command, to stdout or `out`, with what the configs say of its
/// target.
async fn read(reader: &ReaderArgs, cmd: ReadCommand, out: Option<&Path>) -> Exit {
    // The configs name the targets and order CSV columns: a missing or
    // broken directory is no reason to fail a read of what is stored.
    let report = config::load_dir(&reader.configs.dir()).ok();
    let names: Vec<TargetId> = report.as_ref().map_or_else(Vec::new, |r| {
        let mut names: Vec<TargetId> = r.set.targets.keys().cloned().collect();
        names.extend(r.invalid_targets.keys().cloned());
        names.sort();
        names.dedup();
        names
    });
    let config = report.and_then(|r| r.set.targets.get(cmd.target()).cloned());
    let configured = Configured {
        target: config.as_deref(),
        names: &names,
    };
    if let Some(url) = &reader.cluster.cluster {
        return data::read_database(url, configured, cmd, out);
    }
    let state = &reader.state;
    data::read(&state.dir(), state.socket.as_deref(), configured, cmd, out).await
}
