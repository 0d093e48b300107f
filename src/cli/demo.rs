//! `crawld demo`: serves the demo shop in `examples/shop` on 127.0.0.1 and
//! crawls it with the example target `shop`, so a fresh clone shows the
//! whole job with no internet.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use tower_http::services::ServeDir;

use super::{crawl_target, fail, open_store, pick_target};
use crate::error::Exit;
use crate::store::RunMode;

/// The example target the demo crawls.
const DEMO_TARGET: &str = "shop";

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
                format!("cannot serve the demo site on {addr}: {e} (the example target points at port 8088; free it, or use --port with a target of your own)"),
            )
        }
    };
    let app = axum::Router::new().fallback_service(ServeDir::new(&site));
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    errln!("demo shop served from {} at http://{addr}/", site.display());

    if serve_only {
        errln!("serving until Ctrl-C");
        let _ = tokio::signal::ctrl_c().await;
        server.abort();
        return Exit::Ok;
    }
    let configs = configs.unwrap_or_else(|| bundled("configs"));
    let target = match pick_target(&configs, DEMO_TARGET) {
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
