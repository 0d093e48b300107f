//! `crawld demo`: serves the demo shop in `examples/shop` on 127.0.0.1 and
//! crawls it with the example target `shop`, so a fresh clone shows the
//! whole job with no internet.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tower_http::services::ServeDir;

use super::{crawl_target, fail, open_store, pick_from};
use crate::config::{self, Target};
use crate::error::Exit;
use crate::store::RunMode;

/// The example target the demo crawls.
const DEMO_TARGET: &str = "shop";

/// The port the example target's URLs name (`configs/shop.toml`).
const DEMO_PORT: u16 = 8088;

/// `dir` if it exists relative to the working directory, else in the source tree.
fn bundled(dir: &str) -> PathBuf {
    let here = PathBuf::from(dir);
    if here.is_dir() {
        here
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(dir)
    }
}

/// Serves the site on `port`; crawls it unless `serve_only`.
pub async fn run(
    port: u16,
    serve_only: bool,
    site: Option<PathBuf>,
    configs: Option<PathBuf>,
    state: &Path,
) -> Exit {
    let site = site.unwrap_or_else(|| bundled("examples/shop"));
    if !site.join("index.html").is_file() {
        return fail(
            Exit::Usage,
            format!(
                "no demo site at {} (expected index.html there)",
                site.display()
            ),
        );
    }
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            return fail(
                Exit::Failed,
                format!("cannot serve the demo site on {addr}: {e} (free the port, or pick another with --port)"),
            )
        }
    };
    let app = axum::Router::new().fallback_service(ServeDir::new(&site));
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    errln!("demo shop served from {} at http://{addr}/", site.display());

    if serve_only {
        // Listen for Ctrl-C before saying so: a SIGINT sent on reading the
        // line must stop the server, not kill the process.
        let stop = match interrupted() {
            Ok(stop) => stop,
            Err(e) => return fail(Exit::Failed, format!("cannot listen for Ctrl-C: {e}")),
        };
        errln!(
            "serving until you press Ctrl-C (or send SIGINT to pid {})",
            std::process::id()
        );
        stop.await;
        errln!("stopped");
        server.abort();
        return Exit::Ok;
    }
    let configs = configs.unwrap_or_else(|| bundled("configs"));
    let target = match demo_target(&configs, port) {
        Ok(t) => t,
        Err(exit) => return exit,
    };
    let store = match open_store(state) {
        Ok(s) => s,
        Err(exit) => return exit,
    };
    let exit = crawl_target(
        store,
        state,
        target,
        RunMode::Full,
        true,
        Default::default(),
    )
    .await;
    server.abort();
    exit
}

/// A future that ends at the first SIGINT (Ctrl-C), listening from now on.
fn interrupted() -> std::io::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut interrupt = signal(SignalKind::interrupt())?;
        Ok(async move {
            interrupt.recv().await;
        })
    }
    #[cfg(not(unix))]
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}

/// The demo target, its URLs on the demo's port pointed at `port`: the
/// config names 127.0.0.1:8088, and `--port` must crawl the site it serves.
/// The text is changed before it is compiled, so every URL and pattern that
/// names the port follows, and errors still point into the file.
fn demo_target(dir: &Path, port: u16) -> Result<Arc<Target>, Exit> {
    let files = config::read_dir(dir).map_err(|e| fail(Exit::Config, e))?;
    let from = format!("127.0.0.1:{DEMO_PORT}");
    let to = format!("127.0.0.1:{port}");
    let files = files
        .into_iter()
        .map(|(path, text)| {
            let demo = path.file_stem().is_some_and(|s| s == DEMO_TARGET);
            let text = text.map(|t| if demo { t.replace(&from, &to) } else { t });
            (path, text)
        })
        .collect();
    let report = config::load_files(files, &|v| std::env::var(v).ok());
    pick_from(&report, dir, DEMO_TARGET)
}
