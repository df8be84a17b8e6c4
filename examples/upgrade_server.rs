//! A server upgraded in place on one machine, with no load balancer:
//! `cargo run --example upgrade_server --features upgrade`, then `kill -HUP <pid>` (after
//! replacing the binary, for a real upgrade).
//!
//! HTTP/1.1 and h2c on one port; `/`, `/slow` and `/stream` as in `examples/fleet_server.rs`,
//! and `/pid`, the process that answered. On SIGHUP a new process starts with the listening
//! socket inherited (one kernel accept queue: nothing is refused or lost); once it says it is
//! ready, this one stops accepting, moves its HTTP/1.1 keep-alive clients off during
//! `UNREADY_MS` (`Connection: close` on a rising share of responses), sends HTTP/2 clients
//! `GOAWAY`, lets what is in flight finish within `GRACE_MS`, prints its report and exits. A
//! new process that fails before it is ready leaves this one serving. SIGTERM or Ctrl-C drains
//! and exits the same way, with no successor.
//!
//! Settings: `PORT` (3000; a fixed port, so that every version binds the same address),
//! `UNREADY_MS` (1000), `GRACE_MS` (10000), `TOWER_DRAIN=off` for the control (the same
//! handover, then axum's own graceful shutdown, no drain layer), and `UPGRADE_FAIL_FILE`: a
//! process started by an upgrade exits before it is ready while that file exists (to show a
//! failed upgrade), `UPGRADE_DELAY_MS`: a process started by an upgrade waits that long
//! before it is ready (a slow start), `PIDFILE`: where to write the id of the process serving
//! (for systemd).

#[path = "support/fleet_routes.rs"]
mod fleet_routes;
#[path = "support/settings.rs"]
mod settings;

use std::time::Duration;

use axum::routing::get;
use tower_drain::upgrade::Upgrade;
use tower_drain::{signal, Drain};

use fleet_routes::routes;
use settings::setting;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port = setting("PORT", 3000) as u16;
    let unready = Duration::from_millis(setting("UNREADY_MS", 1_000));
    let grace = Duration::from_millis(setting("GRACE_MS", 10_000));
    let drain_on = std::env::var("TOWER_DRAIN").as_deref() != Ok("off");
    let pid = std::process::id();

    let mut upgrade = Upgrade::new()?;
    if let Some(path) = std::env::var_os("PIDFILE") {
        upgrade = upgrade.pid_file(path);
    }
    if upgrade.is_upgrade() {
        if let Some(file) = std::env::var_os("UPGRADE_FAIL_FILE") {
            if std::path::Path::new(&file).exists() {
                println!("[{pid}] failing to start on purpose ({file:?} exists)");
                std::process::exit(1);
            }
        }
        println!("[{pid}] starting as an upgrade");
        tokio::time::sleep(Duration::from_millis(setting("UPGRADE_DELAY_MS", 0))).await;
    }
    // Caught from here on: a SIGTERM the moment the server is up drains it too.
    let terminated = signal::terminate();
    let listener = upgrade.listen(([127, 0, 0, 1], port).into())?;
    let inherited = upgrade.is_upgrade();
    let handed_over = match upgrade.ready() {
        Ok(handed_over) => handed_over,
        Err(error) => {
            println!("[{pid}] not ready: {error}");
            return Err(error);
        }
    };
    println!(
        "[{pid}] listening on http://{} (inherited: {}, tower-drain {})",
        listener.local_addr()?,
        inherited,
        if drain_on { "on" } else { "off" }
    );
    // Replaced by a new process (SIGHUP), or stopped (SIGTERM, Ctrl-C). Stopped first, the
    // `select!` drops `handed_over`, which cancels an upgrade under way: no successor stays.
    let stop = async move {
        tokio::select! {
            handed = handed_over => match handed {
                Ok(()) => println!("[{pid}] a new process is ready: handing over"),
                Err(error) => println!("[{pid}] upgrades failed ({error}): stopping"),
            },
            () = terminated => println!("[{pid}] stopping"),
        }
    };
    let app = routes().route("/pid", get(move || async move { format!("{pid}\n") }));

    if !drain_on {
        // The control: the same handover, then only axum's own graceful shutdown.
        axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await?;
        println!("[{pid}] exited (axum's graceful shutdown only)");
        return Ok(());
    }

    let drain = Drain::new();
    let app = app
        .layer(drain.http_layer().gradual_close())
        .route_service("/ready", drain.readiness());
    let shutdown = drain.shutdown().unready_for(unready).grace(grace);
    let report = tower_drain::serve(listener, app, shutdown)
        .close_listener_on_signal() // the new process accepts from now on
        .with_graceful_shutdown(stop)
        .await;
    println!("[{pid}] {report}");
    Ok(())
}
