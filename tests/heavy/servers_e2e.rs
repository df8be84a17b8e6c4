//! The servers beside the README's, run as a user runs them: `examples/axum_serve.rs` (the stock
//! `axum::serve` under `run_server`) and `examples/unix.rs` (`serve` on a Unix socket), each
//! as a process with real clients (hyper over TCP and over a Unix socket, and curl), a slow
//! request, a request that never ends, and SIGTERM. For each: `ConnectInfo` reaches the
//! handler; a request in flight at the signal completes; a request on a new connection during
//! the drain gets `503`, not a refused connection; and the process exits by itself, with its
//! report, within `UNREADY_MS + GRACE_MS + 1 s` of the signal (plus `EXIT_MARGIN_MS`).
#![cfg(all(unix, feature = "serve", feature = "signal", feature = "axum"))]

#[path = "../support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::net::{TcpStream, UnixStream};
use tokio::process::{Child, ChildStdout, Command};

use support::{bounded, example, get_request};

const UNREADY_MS: u64 = 300;
const GRACE_MS: u64 = 1_500;
/// What `run_server` and `serve` allow a server to close in after the grace period.
const CLOSE_WITHIN_MS: u64 = 1_000;
/// For the process to leave once the server has returned: print the report, drop the runtime,
/// exit; and for the test to see it.
const EXIT_MARGIN_MS: u64 = 500;
/// Long enough to be in flight through the unready period and into the drain (so that the
/// drain lasts, and a new connection can be refused meanwhile), short enough to end well
/// within the grace period.
const SLOW_MS: u64 = 1_000;

/// A running example: its process, the lines it prints, and what it said first.
struct Running {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    listening: String,
    signalled: Option<Instant>,
}

impl Running {
    async fn start(name: &str, env: &[(&str, &str)]) -> Running {
        let mut child = Command::new(example(name))
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let listening = bounded("the listening line", lines.next_line())
            .await
            .unwrap()
            .expect("the example printed nothing");
        assert!(listening.starts_with("listening on "), "{listening}");
        Running {
            child,
            lines,
            listening,
            signalled: None,
        }
    }

    /// `axum_serve` on a free port, with the test's unready and grace periods.
    async fn axum_serve(grace_ms: u64) -> (Running, SocketAddr) {
        let server = Running::start(
            "axum_serve",
            &[
                ("PORT", "0"),
                ("UNREADY_MS", &UNREADY_MS.to_string()),
                ("GRACE_MS", &grace_ms.to_string()),
            ],
        )
        .await;
        let addr = server
            .listening
            .strip_prefix("listening on http://")
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| panic!("no address in {:?}", server.listening));
        (server, addr)
    }

    /// `unix` on `socket`, with the test's unready and grace periods.
    async fn unix(socket: &Path, grace_ms: u64) -> Running {
        let server = Running::start(
            "unix",
            &[
                ("SOCKET", socket.to_str().unwrap()),
                ("UNREADY_MS", &UNREADY_MS.to_string()),
                ("GRACE_MS", &grace_ms.to_string()),
            ],
        )
        .await;
        assert_eq!(
            server.listening,
            format!("listening on unix:{}", socket.display())
        );
        server
    }

    /// Waits for a line starting with `prefix`; returns it.
    async fn line(&mut self, prefix: &str) -> String {
        bounded(&format!("a line {prefix:?}"), async {
            loop {
                let line = self.lines.next_line().await.unwrap();
                let line = line.unwrap_or_else(|| panic!("ended before {prefix:?}"));
                if line.starts_with(prefix) {
                    return line;
                }
            }
        })
        .await
    }

    /// Sends SIGTERM, as Kubernetes, systemd and `docker stop` do; the clock starts now.
    fn terminate(&mut self) {
        let pid = self.child.id().unwrap().to_string();
        // Before `kill` runs: the server may take the signal, and start its unready period,
        // before `kill` has exited and been reaped, which under load took longer than the
        // margin of the lower bounds measured from here (a draining phase 1 ms "early").
        self.signalled = Some(Instant::now());
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit by itself, successfully and within `within` of the
    /// signal; returns how long it took.
    async fn exits_within(&mut self, within: Duration) -> Duration {
        let status = bounded("the process exits", self.child.wait())
            .await
            .unwrap();
        let took = self.signalled.expect("not signalled").elapsed();
        assert!(status.success(), "{status}");
        assert!(
            took < within,
            "exited {took:?} after the signal, over {within:?}"
        );
        took
    }
}

/// The bound both servers promise: unready + grace + the close period, and the margin.
fn exit_bound(grace_ms: u64) -> Duration {
    Duration::from_millis(UNREADY_MS + grace_ms + CLOSE_WITHIN_MS + EXIT_MARGIN_MS)
}

/// A socket path of this test's own in the temporary directory, with no file left from before.
fn socket_path(test: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("td-{}-{test}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}

/// An HTTP/1.1 client connection over the Unix socket at `path`.
async fn unix_connection(path: &Path) -> http1::SendRequest<Empty<Bytes>> {
    let stream = UnixStream::connect(path).await.unwrap();
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(connection);
    sender
}

/// An HTTP/1.1 client connection over TCP, and the address it connects from.
async fn tcp_connection(addr: SocketAddr) -> (http1::SendRequest<Empty<Bytes>>, SocketAddr) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let local = tcp.local_addr().unwrap();
    let (sender, connection) = http1::handshake(TokioIo::new(tcp)).await.unwrap();
    tokio::spawn(connection);
    (sender, local)
}

/// `GET path` on `client`: the status and the whole body.
async fn get(client: &mut http1::SendRequest<Empty<Bytes>>, path: &str) -> (StatusCode, String) {
    bounded(&format!("GET {path}"), async {
        let response = client.send_request(get_request(path)).await.unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    })
    .await
}

/// curl, as a user runs it, with `args`: the status code it got (`000` when it could not
/// connect) and the body.
async fn curl(args: &[&str]) -> (String, String) {
    let output = bounded(
        "curl",
        Command::new("/usr/bin/curl")
            .args([
                "--silent",
                "--max-time",
                "5",
                "--write-out",
                "\n%{http_code}",
            ])
            .args(args)
            .output(),
    )
    .await
    .unwrap();
    let output = String::from_utf8(output.stdout).unwrap();
    let (body, status) = output.rsplit_once('\n').unwrap();
    (status.to_owned(), body.to_owned())
}

#[tokio::test]
async fn axum_serve_greets_each_peer_by_its_connect_info_address() {
    let (mut server, addr) = Running::axum_serve(GRACE_MS).await;
    let (mut client, local) = tcp_connection(addr).await;
    assert_eq!(local.ip(), addr.ip());
    assert_eq!(
        get(&mut client, "/").await,
        (StatusCode::OK, format!("hello {local}\n"))
    );
    let (status, body) = curl(&[&format!("http://{addr}/")]).await;
    assert_eq!(status, "200");
    assert!(body.starts_with("hello 127.0.0.1:"), "{body:?}");
    assert_ne!(
        body,
        format!("hello {local}\n"),
        "curl has a port of its own"
    );

    // Nothing in flight: the drain is over as soon as the unready period is.
    server.terminate();
    let report = server.line("drained in").await;
    assert!(report.ends_with("0 cancelled, 0 rejected"), "{report}");
    server
        .exits_within(Duration::from_millis(
            UNREADY_MS + CLOSE_WITHIN_MS + EXIT_MARGIN_MS,
        ))
        .await;
}

#[tokio::test]
async fn axum_serve_completes_in_flight_requests_and_refuses_new_connections_while_draining() {
    let (mut server, addr) = Running::axum_serve(GRACE_MS).await;
    let (mut ready, _) = tcp_connection(addr).await;
    assert_eq!(get(&mut ready, "/ready").await.0, StatusCode::OK);
    // Sent before the signal, so served: anything that arrives before draining begins is.
    let (mut slow, _) = tcp_connection(addr).await;
    let slow = tokio::spawn(async move { get(&mut slow, &format!("/slow/{SLOW_MS}")).await });

    server.terminate();
    assert_eq!(server.line("phase:").await, "phase: unready");
    let (mut fresh, _) = tcp_connection(addr).await;
    assert_eq!(
        get(&mut fresh, "/ready").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );

    // Draining, with the slow request still in flight: axum still accepts, and the layer
    // answers a request on a new connection.
    assert_eq!(server.line("phase:").await, "phase: draining");
    let draining = server.signalled.unwrap().elapsed();
    assert!(
        draining >= Duration::from_millis(UNREADY_MS),
        "{draining:?}"
    );
    let (mut fresh, _) = tcp_connection(addr).await;
    let response = bounded("the refusal", fresh.send_request(get_request("/")))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    // And so does curl, as a user sees it.
    let (status, _) = curl(&[&format!("http://{addr}/")]).await;
    assert_eq!(status, "503");
    assert!(
        !slow.is_finished(),
        "the refusals came while the slow request was in flight"
    );

    let answered = bounded("the slow request", slow).await.unwrap();
    assert_eq!(answered, (StatusCode::OK, format!("slept {SLOW_MS} ms\n")));
    // Then the pool is empty: axum is told to close, and the process exits at once, not at
    // the end of the grace period.
    let report = server.line("drained in").await;
    assert!(
        report.contains("1 completed, 0 cancelled, 2 rejected"),
        "{report}"
    );
    let took = server.exits_within(exit_bound(GRACE_MS)).await;
    assert!(
        took < Duration::from_millis(SLOW_MS + EXIT_MARGIN_MS),
        "held after the drain: {took:?}"
    );
}

#[tokio::test]
async fn axum_serve_exits_in_bounds_when_a_request_never_ends() {
    let (mut server, addr) = Running::axum_serve(GRACE_MS).await;
    let (mut forever, _) = tcp_connection(addr).await;
    let forever =
        tokio::spawn(async move { forever.send_request(get_request("/slow/600000")).await });

    server.terminate();
    assert_eq!(server.line("phase:").await, "phase: unready");
    assert_eq!(server.line("phase:").await, "phase: draining");
    let report = server.line("grace period over").await;
    assert!(report.contains("1 abandoned"), "{report}");
    let took = server.exits_within(exit_bound(GRACE_MS)).await;
    assert!(
        took >= Duration::from_millis(UNREADY_MS + GRACE_MS),
        "the grace period was cut short: {took:?}"
    );
    let cut = bounded("the endless request ends", forever).await.unwrap();
    assert!(cut.is_err(), "the endless request was cut: {cut:?}");
}

#[tokio::test]
async fn unix_replaces_a_stale_socket_and_greets_each_peer_by_its_connect_info_address() {
    let socket = socket_path("hello");
    // A server that died left its socket file behind: nothing answers on it.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(socket.exists());
    let mut server = Running::unix(&socket, GRACE_MS).await;

    // A client socket is not bound to a path: its address is unnamed.
    let mut client = unix_connection(&socket).await;
    assert_eq!(
        get(&mut client, "/").await,
        (StatusCode::OK, "hello (unnamed)\n".to_owned())
    );
    let socket_arg = socket.to_str().unwrap();
    let answered = curl(&["--unix-socket", socket_arg, "http://localhost/"]).await;
    assert_eq!(answered, ("200".to_owned(), "hello (unnamed)\n".to_owned()));

    server.terminate();
    let report = server.line("drained in").await;
    assert!(report.ends_with("0 cancelled, 0 rejected"), "{report}");
    server
        .exits_within(Duration::from_millis(
            UNREADY_MS + CLOSE_WITHIN_MS + EXIT_MARGIN_MS,
        ))
        .await;
    assert!(!socket.exists(), "the socket file is removed at exit");
}

#[tokio::test]
async fn unix_refuses_to_start_on_a_socket_another_server_answers_on() {
    let socket = socket_path("taken");
    let mut first = Running::unix(&socket, GRACE_MS).await;
    let second = bounded(
        "the second server gives up",
        Command::new(example("unix"))
            .env("SOCKET", &socket)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap();
    assert!(!second.status.success());
    let error = String::from_utf8(second.stderr).unwrap();
    assert!(error.contains("a server is listening on"), "{error}");

    // The first one serves on, unharmed, and its socket file is its own to remove.
    let mut client = unix_connection(&socket).await;
    assert_eq!(get(&mut client, "/").await.0, StatusCode::OK);
    first.terminate();
    first.line("drained in").await;
    first
        .exits_within(Duration::from_millis(
            UNREADY_MS + CLOSE_WITHIN_MS + EXIT_MARGIN_MS,
        ))
        .await;
    assert!(!socket.exists(), "the socket file is removed at exit");
}

#[tokio::test]
async fn unix_completes_in_flight_requests_and_refuses_new_connections_while_draining() {
    let socket = socket_path("drain");
    let mut server = Running::unix(&socket, GRACE_MS).await;
    let socket_arg = socket.to_str().unwrap();
    let mut ready = unix_connection(&socket).await;
    assert_eq!(get(&mut ready, "/ready").await.0, StatusCode::OK);
    // Sent before the signal, so served: anything that arrives before draining begins is.
    let mut slow = unix_connection(&socket).await;
    let slow = tokio::spawn(async move { get(&mut slow, &format!("/slow/{SLOW_MS}")).await });

    server.terminate();
    assert_eq!(server.line("phase:").await, "phase: unready");
    let (status, _) = curl(&["--unix-socket", socket_arg, "http://localhost/ready"]).await;
    assert_eq!(status, "503");

    // Draining, with the slow request still in flight: the listener is open, and a request
    // on a new connection is answered with the refusal.
    assert_eq!(server.line("phase:").await, "phase: draining");
    let draining = server.signalled.unwrap().elapsed();
    assert!(
        draining >= Duration::from_millis(UNREADY_MS),
        "{draining:?}"
    );
    let (status, body) = curl(&["--unix-socket", socket_arg, "http://localhost/"]).await;
    assert_eq!(status, "503", "{body}");
    let mut fresh = unix_connection(&socket).await;
    let response = bounded("the refusal", fresh.send_request(get_request("/")))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    assert_eq!(response.headers()[header::CONNECTION], "close");
    assert!(
        !slow.is_finished(),
        "the refusals came while the slow request was in flight"
    );

    let answered = bounded("the slow request", slow).await.unwrap();
    assert_eq!(answered, (StatusCode::OK, format!("slept {SLOW_MS} ms\n")));
    let report = server.line("drained in").await;
    assert!(
        report.contains("1 completed, 0 cancelled, 2 rejected"),
        "{report}"
    );
    let took = server.exits_within(exit_bound(GRACE_MS)).await;
    assert!(
        took < Duration::from_millis(SLOW_MS + EXIT_MARGIN_MS),
        "held after the drain: {took:?}"
    );
    assert!(!socket.exists(), "the socket file is removed at exit");
}

#[tokio::test]
async fn unix_exits_in_bounds_when_a_request_never_ends() {
    let socket = socket_path("forever");
    let mut server = Running::unix(&socket, GRACE_MS).await;
    let mut forever = unix_connection(&socket).await;
    let forever =
        tokio::spawn(async move { forever.send_request(get_request("/slow/600000")).await });

    server.terminate();
    assert_eq!(server.line("phase:").await, "phase: unready");
    assert_eq!(server.line("phase:").await, "phase: draining");
    let report = server.line("grace period over").await;
    assert!(report.contains("1 abandoned"), "{report}");
    let took = server.exits_within(exit_bound(GRACE_MS)).await;
    assert!(
        took >= Duration::from_millis(UNREADY_MS + GRACE_MS),
        "the grace period was cut short: {took:?}"
    );
    let cut = bounded("the endless request ends", forever).await.unwrap();
    assert!(cut.is_err(), "the endless request was cut: {cut:?}");
    assert!(!socket.exists(), "the socket file is removed at exit");
}
