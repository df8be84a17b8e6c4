//! An axum app on a Unix domain socket that drains gracefully on Ctrl-C or SIGTERM:
//! `cargo run --example unix --features axum,serve,signal`, then
//! `curl --unix-socket /tmp/tower-drain.sock http://localhost/`.
//!
//! `tower_drain::serve` takes a tokio `UnixListener` as it takes a `TcpListener`, and gives
//! every request its peer's address as axum's `ConnectInfo<tokio::net::unix::SocketAddr>`
//! (a client that did not bind its socket is `(unnamed)`). On the signal, `/ready` turns `503`
//! for `UNREADY_MS` while every request is still served; then a new request, on a new
//! connection too, gets `503`, never a refused connection. In-flight requests run to their end
//! within `GRACE_MS`; then the server closes, removes its socket file and prints the report.
//! It exits within `UNREADY_MS + GRACE_MS` and one second, whatever the requests do.
//!
//! Settings: `SOCKET` (the socket's path; `tower-drain.sock` in the temporary directory),
//! `UNREADY_MS` (5000), `GRACE_MS` (30000).

#[path = "support/settings.rs"]
mod settings;

use std::io;
use std::path::{Path as FsPath, PathBuf};
use std::time::Duration;

use axum::extract::{ConnectInfo, Path};
use axum::routing::get;
use axum::Router;
use tokio::net::{unix, UnixListener};
use tower_drain::{signal, Drain};

use settings::setting;

#[tokio::main]
async fn main() -> io::Result<()> {
    let path = std::env::var_os("SOCKET").map_or_else(
        || std::env::temp_dir().join("tower-drain.sock"),
        PathBuf::from,
    );
    let unready = Duration::from_millis(setting("UNREADY_MS", 5_000));
    let grace = Duration::from_millis(setting("GRACE_MS", 30_000));

    let drain = Drain::new();
    let app = Router::new()
        .route(
            "/",
            get(
                |ConnectInfo(peer): ConnectInfo<unix::SocketAddr>| async move {
                    format!("hello {peer:?}\n")
                },
            ),
        )
        .route(
            "/slow/{ms}",
            get(|Path(ms): Path<u64>| async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                format!("slept {ms} ms\n")
            }),
        )
        // Count each request until its response body ends; while draining, answer new ones
        // with 503.
        .layer(drain.http_layer().retry_after(Duration::from_secs(1)))
        // After the layer, so never refused: the load balancer's readiness check.
        .route_service("/ready", drain.readiness());

    // Caught from here on: a SIGTERM the moment the server is up drains it too.
    let stop = signal::terminate();
    remove_stale(&path)?;
    let listener = UnixListener::bind(&path)?;
    println!("listening on unix:{}", path.display());
    let mut phases = drain.watch_phase();
    tokio::spawn(async move {
        while phases.changed().await.is_ok() {
            println!("phase: {}", *phases.borrow_and_update());
        }
    });

    let shutdown = drain.shutdown().unready_for(unready).grace(grace);
    let report = tower_drain::serve(listener, app, shutdown)
        .with_graceful_shutdown(stop)
        .await;
    println!("{report}");
    // The listener is closed: the file would only make the next `bind` fail.
    std::fs::remove_file(&path)
}

/// Removes the socket file a server left at `path` when it died, so that `bind` can succeed.
/// Fails if a server still answers there, or if `path` is not a socket.
fn remove_stale(path: &FsPath) -> io::Result<()> {
    use std::os::unix::fs::FileTypeExt;

    match std::fs::symlink_metadata(path) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(error),
        Ok(metadata) if !metadata.file_type().is_socket() => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} is not a socket", path.display()),
            ));
        }
        Ok(_) => {}
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("a server is listening on {}", path.display()),
        ));
    }
    std::fs::remove_file(path)
}
