//! From a parsed command line to the code that runs it: one arm per
//! command, each handing its arguments to the module that owns the work.

use std::path::Path;

use super::args::{AlertAction, Command, StateArg, StoreAction};
use super::{alert_cli, check, crawl, daemon_cli, data, demo, test_page};
use crate::config;
use crate::control;
use crate::error::Exit;
use crate::ids::TargetId;
use crate::query::ReadCommand;
use crate::store::RunMode;

/// Runs one command and says how the process ends. It is long only because
/// each arm destructures its command's arguments: an arm does nothing but
/// hand them on, so splitting the match would only scatter the table.
pub(super) async fn dispatch(command: Command) -> Exit {
    match command {
        Command::Check(c) => check(&c.dir()),
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
            configs,
            state,
        } => {
            let mode = [RunMode::Incremental, RunMode::Full][usize::from(full)];
            let watch = super::Watch::new(fail_on_alert, alert);
            crawl(&configs.dir(), &state, &target, mode, !no_progress, watch).await
        }
        Command::Export {
            target,
            changes,
            since,
            format,
            kind,
            out,
            configs,
            state,
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
            export(cmd, &configs.dir(), &state, out.as_deref()).await
        }
        c @ (Command::History { .. } | Command::Runs { .. } | Command::Failures { .. }) => {
            read_command(c).await
        }
        Command::Run {
            configs,
            state,
            max_runs,
            grace,
            no_watch,
            http,
            ..
        } => {
            let opts = crate::daemon::Options {
                configs: configs.dir(),
                state: state.dir(),
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

/// A reading command to stdout, without the target's configuration.
/// `history`, `runs` and `failures`: commands that only read the store.
async fn read_command(command: Command) -> Exit {
    let (state, cmd) = match command {
        Command::History {
            target,
            key,
            kind,
            state,
        } => {
            let target = TargetId::new(target);
            (state, ReadCommand::History { target, key, kind })
        }
        Command::Runs {
            target,
            json,
            state,
        } => {
            let target = TargetId::new(target);
            (state, ReadCommand::Runs { target, json })
        }
        Command::Failures { target, run, state } => {
            let target = TargetId::new(target);
            (state, ReadCommand::Failures { target, run })
        }
        // INVARIANT: dispatch hands over only the three commands above.
        _ => return Exit::Usage,
    };
    read(&state, cmd).await
}

async fn read(state: &StateArg, cmd: ReadCommand) -> Exit {
    data::read(&state.dir(), state.socket.as_deref(), None, cmd, None).await
}

/// `export`, to stdout or `out`.
async fn export(cmd: ReadCommand, configs: &Path, state: &StateArg, out: Option<&Path>) -> Exit {
    // The config only orders CSV columns: a missing or broken one is no reason to fail.
    let config = config::load_dir(configs)
        .ok()
        .and_then(|r| r.set.targets.get(cmd.target()).cloned());
    let socket = state.socket.as_deref();
    data::read(&state.dir(), socket, config.as_deref(), cmd, out).await
}
