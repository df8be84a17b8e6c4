//! `Shutdown::run_server`: a stock server (`axum::serve`) keeps accepting through the drain,
//! so that new clients are answered rather than refused, and the whole run ends within
//! `unready_for + grace + close_within` whatever its clients do. Real axum servers, real hyper
//! clients; the timing-only cases on a paused clock with stand-in servers.
#![cfg(feature = "http")]

mod support;

use std::future::IntoFuture;
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use http::StatusCode;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tower_drain::Drain;

use support::{bounded, get_request, http1_connection};

/// An axum app whose `/hold` answers when `release` fires, behind `drain`'s layer.
fn app(drain: &Drain, release: std::sync::Arc<tokio::sync::Notify>) -> Router {
    Router::new()
        .route("/", get(|| async { "hello" }))
        .route(
            "/hold",
            get(move || async move {
                release.notified().await;
                "held"
            }),
        )
        .route("/never", get(std::future::pending::<&'static str>))
        .layer(drain.http_layer())
}

#[tokio::test]
async fn axum_serve_keeps_accepting_while_draining_and_answers_new_connections_503() {
    let drain = Drain::new();
    let release = std::sync::Arc::new(tokio::sync::Notify::new());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (signal, signalled) = oneshot::channel::<()>();
    let app = app(&drain, release.clone());
    let server = tokio::spawn(
        drain
            .shutdown()
            .grace(Duration::from_secs(5))
            .run_server(
                async {
                    signalled.await.ok();
                },
                |closing| axum::serve(listener, app).with_graceful_shutdown(closing),
            )
            .into_future(),
    );

    let mut held = http1_connection(addr).await;
    let in_flight = tokio::spawn(async move { held.send_request(get_request("/hold")).await });
    bounded("the request in flight", drain.until(|s| s.in_flight == 1)).await;
    signal.send(()).unwrap();
    bounded("draining", drain.draining()).await;

    // A new client during the drain: answered, not refused.
    let mut late = http1_connection(addr).await;
    let refused = bounded("the refusal", late.send_request(get_request("/")))
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        !server.is_finished(),
        "the server closes only once the pool is empty"
    );

    release.notify_one();
    let response = bounded("the request in flight", in_flight)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let report = bounded("run_server returns", server)
        .await
        .unwrap()
        .unwrap();
    assert!(!report.timed_out());
    assert_eq!(report.rejected, 1);
    assert_eq!(report.completed, 1);
}

#[tokio::test]
async fn draining_handed_to_axum_serve_refuses_new_connections_which_run_server_does_not() {
    // What the docs used to suggest, kept as the contrast: the listener closes when draining
    // begins, so a new client's connection is refused.
    let drain = Drain::new();
    let release = std::sync::Arc::new(tokio::sync::Notify::new());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = app(&drain, release.clone());
    let server = tokio::spawn(
        axum::serve(listener, app)
            .with_graceful_shutdown(drain.draining())
            .into_future(),
    );
    let mut held = http1_connection(addr).await;
    let in_flight = tokio::spawn(async move { held.send_request(get_request("/hold")).await });
    bounded("the request in flight", drain.until(|s| s.in_flight == 1)).await;
    drain.start_draining();
    let refused = bounded("a refused connection", async {
        loop {
            match tokio::net::TcpStream::connect(addr).await {
                Err(error) => break error,
                Ok(_) => tokio::task::yield_now().await,
            }
        }
    })
    .await;
    assert!(
        matches!(
            refused.kind(),
            std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::ConnectionReset
        ),
        "{refused}"
    );
    release.notify_one();
    bounded("in flight", in_flight).await.unwrap().unwrap();
    bounded("axum returns", server).await.unwrap().unwrap();
}

#[tokio::test]
async fn run_server_returns_within_the_bound_when_a_request_never_ends() {
    let drain = Drain::new();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = app(&drain, Default::default());
    let (unready, grace, close_within) = (
        Duration::from_millis(200),
        Duration::from_millis(300),
        Duration::from_millis(300),
    );
    let (signal, signalled) = oneshot::channel::<()>();
    let server = tokio::spawn(
        drain
            .shutdown()
            .unready_for(unready)
            .grace(grace)
            .run_server(
                async {
                    signalled.await.ok();
                },
                |closing| axum::serve(listener, app).with_graceful_shutdown(closing),
            )
            .close_within(close_within)
            .into_future(),
    );
    let mut client = http1_connection(addr).await;
    let _never = tokio::spawn(async move { client.send_request(get_request("/never")).await });
    bounded("the request in flight", drain.until(|s| s.in_flight == 1)).await;

    let start = Instant::now();
    signal.send(()).unwrap();
    let report = bounded("run_server returns", server)
        .await
        .unwrap()
        .unwrap();
    let took = start.elapsed();
    assert!(report.timed_out());
    assert_eq!(report.abandoned, 1);
    assert!(took >= unready + grace + close_within, "{took:?}");
    // The margin: scheduling on a busy machine.
    assert!(
        took < unready + grace + close_within + Duration::from_millis(700),
        "{took:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn closing_completes_only_once_the_pool_is_empty() {
    let drain = Drain::new();
    let guard = drain.guard();
    let (closed_tx, mut closed_rx) = oneshot::channel::<()>();
    let (signal, signalled) = oneshot::channel::<()>();
    let run = tokio::spawn(
        drain
            .shutdown()
            .unready_for(Duration::from_secs(1))
            .grace(Duration::from_secs(10))
            .run_server(
                async {
                    signalled.await.ok();
                },
                |closing| async move {
                    closing.await;
                    closed_tx.send(()).unwrap();
                    Ok::<_, std::io::Error>(())
                },
            )
            .into_future(),
    );
    signal.send(()).unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(drain.is_draining());
    assert!(closed_rx.try_recv().is_err(), "not closing while in flight");
    drop(guard);
    bounded("closing", &mut closed_rx).await.unwrap();
    let report = run.await.unwrap().unwrap();
    assert!(!report.timed_out());
    assert_eq!(report.elapsed, Duration::from_secs(5));
}

#[tokio::test(start_paused = true)]
async fn a_server_that_never_closes_is_dropped_close_within_after_the_grace_period() {
    let drain = Drain::new();
    let _stuck = drain.guard();
    let (dropped_tx, dropped_rx) = oneshot::channel::<()>();
    let start = tokio::time::Instant::now();
    let report = drain
        .shutdown()
        .unready_for(Duration::from_secs(2))
        .grace(Duration::from_secs(10))
        .run_server(async {}, |_closing| async move {
            // A server that ignores its graceful shutdown; it tells when it is dropped.
            let _dropped = dropped_tx;
            std::future::pending::<Result<(), std::io::Error>>().await
        })
        .close_within(Duration::from_secs(3))
        .await
        .unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(15));
    assert!(report.timed_out());
    assert!(dropped_rx.await.is_err(), "the server's future was dropped");
}

#[tokio::test(start_paused = true)]
async fn a_grace_period_that_began_elsewhere_bounds_the_close() {
    // The pool's shutdown was started by another caller with a 4 s grace; this one asks for
    // none, and joins that run: it closes by the run's deadline, not never.
    let drain = Drain::new();
    let _stuck = drain.guard();
    let first = tokio::spawn(drain.shutdown().grace(Duration::from_secs(4)).into_future());
    tokio::task::yield_now().await;
    let start = tokio::time::Instant::now();
    let report = drain
        .shutdown()
        .run_server(async {}, |_closing| {
            std::future::pending::<Result<(), std::io::Error>>()
        })
        .await
        .unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(5));
    assert!(report.timed_out());
    assert_eq!(first.await.unwrap(), report);
}

#[tokio::test(start_paused = true)]
async fn a_server_error_is_returned_as_it_was() {
    let drain = Drain::new();
    let error = drain
        .shutdown()
        .run_server(std::future::pending(), |_closing| async {
            Err::<(), _>(std::io::Error::other("address in use"))
        })
        .await
        .unwrap_err();
    assert_eq!(error.to_string(), "address in use");
    assert!(!drain.is_draining(), "no shutdown ran");
}

#[tokio::test(start_paused = true)]
async fn a_server_that_ends_before_its_signal_drains_what_it_left() {
    let drain = Drain::new();
    let guard = drain.guard();
    let report = tokio::spawn(
        drain
            .shutdown()
            .grace(Duration::from_secs(30))
            .run_server(std::future::pending(), |_closing| async {
                Ok::<_, std::io::Error>(())
            })
            .into_future(),
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(drain.is_draining());
    drop(guard);
    let report = report.await.unwrap().unwrap();
    assert_eq!(report.completed, 1);
    assert!(!report.timed_out());
}

/// What the handlers of a Unix-socket server learn about their peer, as axum's
/// `unix-domain-socket` example does it.
#[cfg(unix)]
#[derive(Clone, Debug)]
struct UdsConnectInfo {
    peer_unnamed: bool,
}

#[cfg(unix)]
impl
    axum::extract::connect_info::Connected<
        axum::serve::IncomingStream<'_, tokio::net::UnixListener>,
    > for UdsConnectInfo
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, tokio::net::UnixListener>) -> Self {
        Self {
            peer_unnamed: stream.remote_addr().is_unnamed(),
        }
    }
}

#[cfg(unix)]
#[tokio::test]
async fn axum_serve_on_a_unix_socket_with_connect_info_keeps_the_promises() {
    use axum::extract::ConnectInfo;
    use http_body_util::BodyExt;

    let dir = std::env::temp_dir().join(format!("tower-drain-rs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("axum.sock");
    let _ = std::fs::remove_file(&path);
    let drain = Drain::new();
    let release = std::sync::Arc::new(tokio::sync::Notify::new());
    let app = app(&drain, release.clone()).route(
        "/peer",
        get(
            |ConnectInfo(info): ConnectInfo<UdsConnectInfo>| async move {
                format!("unnamed: {}", info.peer_unnamed)
            },
        ),
    );
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    let (signal, signalled) = oneshot::channel::<()>();
    let server = tokio::spawn(
        drain
            .shutdown()
            .grace(Duration::from_secs(5))
            .run_server(
                async {
                    signalled.await.ok();
                },
                |closing| {
                    axum::serve(
                        listener,
                        app.into_make_service_with_connect_info::<UdsConnectInfo>(),
                    )
                    .with_graceful_shutdown(closing)
                },
            )
            .into_future(),
    );
    let unix_client = |path: std::path::PathBuf| async move {
        let unix = tokio::net::UnixStream::connect(path).await.unwrap();
        let (client, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(unix))
                .await
                .unwrap();
        tokio::spawn(connection);
        client
    };

    let mut client = unix_client(path.clone()).await;
    let response = client.send_request(get_request("/peer")).await.unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "unnamed: true");

    let mut held = unix_client(path.clone()).await;
    let in_flight = tokio::spawn(async move { held.send_request(get_request("/hold")).await });
    bounded("the request in flight", drain.until(|s| s.in_flight == 1)).await;
    signal.send(()).unwrap();
    bounded("draining", drain.draining()).await;
    let mut late = unix_client(path.clone()).await;
    let refused = late.send_request(get_request("/")).await.unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    release.notify_one();
    let response = bounded("in flight", in_flight).await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let report = bounded("run_server returns", server)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((report.completed, report.rejected), (1, 1));
    let _ = std::fs::remove_file(&path);
}
