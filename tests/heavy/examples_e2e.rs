//! The README's wiring, run as a user runs it: `examples/axum.rs` (the README's example) as a
//! process on a free port, real hyper clients over HTTP/1.1 and h2c and curl, a request that
//! never ends, and SIGTERM. What the README promises is checked with the timings it gives.
#![cfg(all(unix, feature = "serve", feature = "signal"))]

#[path = "../support/mod.rs"]
mod support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use http::{header, StatusCode};
use http_body_util::BodyExt;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

use support::{bounded, example, get_request, http1_connection, http2_connection};

const UNREADY_MS: u64 = 400;
const GRACE_MS: u64 = 1_500;

/// A running example: its process and the lines it prints.
pub struct Running {
    pub child: Child,
    pub lines: Lines<BufReader<ChildStdout>>,
    pub port: u16,
}

impl Running {
    pub async fn start(name: &str, env: &[(&str, String)]) -> Running {
        let mut child = Command::new(example(name))
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("PORT", "0")
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = bounded("the listening line", lines.next_line())
            .await
            .unwrap()
            .expect("the example printed nothing");
        let port = first
            .rsplit(':')
            .next()
            .and_then(|port| port.split_whitespace().next())
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| panic!("no port in {first:?}"));
        Running { child, lines, port }
    }

    /// Waits for a line starting with `prefix`; returns it.
    pub async fn line(&mut self, prefix: &str) -> String {
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

    pub fn terminate(&self) {
        let pid = self.child.id().unwrap().to_string();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(status.success());
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }
}

#[tokio::test]
async fn the_readme_example_serves_unready_refuses_new_connections_and_exits_in_bounds() {
    let mut server = Running::start(
        "axum",
        &[
            ("UNREADY_MS", UNREADY_MS.to_string()),
            ("GRACE_MS", GRACE_MS.to_string()),
        ],
    )
    .await;
    let addr = server.addr();

    // Before the signal: a request that never ends, an HTTP/1.1 keep-alive connection and an
    // HTTP/2 connection, each used once.
    let forever = tokio::spawn(async move {
        let mut conn = http1_connection(addr).await;
        conn.send_request(get_request("/slow/3600000")).await
    });
    let mut h1 = http1_connection(addr).await;
    let response = h1.send_request(get_request("/")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.into_body().collect().await.unwrap();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut h2, h2_connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    let h2_closed = tokio::spawn(h2_connection);
    let response = h2.send_request(get_request("/")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.into_body().collect().await.unwrap();

    let signalled = Instant::now();
    server.terminate();
    assert_eq!(server.line("phase:").await, "phase: unready");

    // Unready: every request is served, on new connections too; readiness says 503.
    let mut fresh = http1_connection(addr).await;
    let response = fresh.send_request(get_request("/")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut fresh = http1_connection(addr).await;
    let ready = fresh.send_request(get_request("/ready")).await.unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);

    assert_eq!(server.line("phase:").await, "phase: draining");
    assert!(signalled.elapsed() >= Duration::from_millis(UNREADY_MS));

    // Draining: a new connection is accepted, and its request refused with the 503.
    let mut fresh = http1_connection(addr).await;
    let refused = fresh.send_request(get_request("/")).await.unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.headers()[header::RETRY_AFTER], "1");
    assert_eq!(refused.headers()[header::CONNECTION], "close");
    let mut fresh_h2 = http2_connection(addr).await;
    let refused = fresh_h2.send_request(get_request("/")).await.unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    // The old keep-alive connection is still open, and its next request refused and closed.
    let refused = h1.send_request(get_request("/")).await.unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.headers()[header::CONNECTION], "close");
    // The HTTP/2 connection opened before was told to go away when draining began, long
    // before the pool empties (the request that never ends keeps it from emptying).
    let ended = bounded("GOAWAY closes the idle HTTP/2 connection", h2_closed).await;
    // Closed by the server after its GOAWAY: an orderly end, or the pipe it closed.
    ended.unwrap().ok();
    assert!(h2.is_closed(), "the client knows the connection is gone");
    assert!(signalled.elapsed() < Duration::from_millis(UNREADY_MS + GRACE_MS));

    // The grace period runs out: the report names what was abandoned, and the process exits
    // within unready + grace + the one-second close margin.
    let report = server.line("grace period over").await;
    assert!(report.contains(", 1 abandoned"), "{report}");
    let status = bounded("the process exits", server.child.wait())
        .await
        .unwrap();
    let took = signalled.elapsed();
    assert!(status.success(), "{status}");
    assert!(
        took < Duration::from_millis(UNREADY_MS + GRACE_MS + 1_000 + 500),
        "exited after {took:?}"
    );
    assert!(
        forever.await.unwrap().is_err(),
        "the endless request was cut"
    );
}

#[tokio::test]
async fn the_readme_example_exits_as_soon_as_its_requests_are_done() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    // A short unready period: a request that reaches the server just after the signal is
    // still served, so there is no race with the signal to lose.
    let mut server = Running::start(
        "axum",
        &[
            ("UNREADY_MS", "200".to_string()),
            ("GRACE_MS", "30000".to_string()),
        ],
    )
    .await;
    let mut tcp = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    tcp.write_all(b"GET /slow/400 HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .unwrap();
    let signalled = Instant::now();
    server.terminate();

    // Answered during the drain: complete, and asked to close its connection, which the
    // server then does (the read ends).
    let mut response = String::new();
    bounded("the slow response", tcp.read_to_string(&mut response))
        .await
        .unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    assert!(response.contains("connection: close"), "{response}");
    assert!(response.ends_with("slept 400 ms\n"), "{response}");
    let report = server.line("drained in").await;
    assert!(report.contains("1 completed, 0 cancelled"), "{report}");
    let status = bounded("the process exits", server.child.wait())
        .await
        .unwrap();
    assert!(status.success());
    // Not the 30 s grace: as soon as the request is done.
    assert!(
        signalled.elapsed() < Duration::from_secs(2),
        "{:?}",
        signalled.elapsed()
    );
}

/// SIGTERM, then a second SIGTERM while a long call is in flight: the process does not wait
/// out the call, but ends the drain at once and reports what it abandoned.
#[tokio::test]
async fn a_second_sigterm_ends_the_drain_at_once_with_a_report_of_what_was_abandoned() {
    use tokio::io::AsyncWriteExt;

    let mut server = Running::start(
        "axum",
        &[
            ("UNREADY_MS", "200".to_string()),
            ("GRACE_MS", "30000".to_string()),
        ],
    )
    .await;
    let mut tcp = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    tcp.write_all(b"GET /slow/8000 HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .unwrap();
    server.terminate();
    server.line("phase: unready").await;
    server.line("phase: draining").await;
    let second = Instant::now();
    server.terminate();
    let report = server.line("forced after").await;
    assert!(report.contains("1 abandoned"), "{report}");
    let status = bounded("the process exits", server.child.wait())
        .await
        .unwrap();
    assert!(status.success());
    assert!(
        second.elapsed() < Duration::from_secs(2),
        "{:?}",
        second.elapsed()
    );
}

/// `examples/tonic.rs` with the stock tonic-health service and tonic's own client: health
/// says `NOT_SERVING` from `Unready` on, a `Watch` stream ends with a clean `UNAVAILABLE`
/// when draining begins instead of holding the drain, a call on a new connection during the
/// drain gets `UNAVAILABLE` (`grpc-status: 14`), and the process exits at once.
#[tokio::test]
async fn the_tonic_example_reports_health_and_ends_watch_streams_cleanly() {
    use tonic::transport::Channel;
    use tonic::Code;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;

    let mut server = Running::start(
        "tonic",
        &[
            ("UNREADY_MS", UNREADY_MS.to_string()),
            ("GRACE_MS", "30000".to_string()),
        ],
    )
    .await;
    let channel = Channel::from_shared(format!("http://{}", server.addr()))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = HealthClient::new(channel);
    let check = client.check(HealthCheckRequest::default()).await.unwrap();
    assert_eq!(check.into_inner().status(), ServingStatus::Serving);
    let mut watch = client
        .watch(HealthCheckRequest::default())
        .await
        .unwrap()
        .into_inner();
    let first = bounded("the first health", watch.message()).await.unwrap();
    assert_eq!(first.unwrap().status(), ServingStatus::Serving);

    let signalled = Instant::now();
    server.terminate();
    assert_eq!(server.line("phase:").await, "phase: unready");
    let unready = bounded("NOT_SERVING", watch.message()).await.unwrap();
    assert_eq!(unready.unwrap().status(), ServingStatus::NotServing);

    // Draining: the watch ends with a clean status, not a cut connection.
    let end = bounded("the end of the watch", watch.message())
        .await
        .unwrap_err();
    assert_eq!(end.code(), Code::Unavailable, "{end:?}");
    assert_eq!(end.message(), "server is draining");
    // The pool was empty once the watch ended: the server has drained, and is gone.
    let report = server.line("drained in").await;
    assert!(report.contains("0 cancelled"), "{report}");
    let status = bounded("the process exits", server.child.wait())
        .await
        .unwrap();
    assert!(status.success());
    assert!(
        signalled.elapsed() < Duration::from_millis(UNREADY_MS + 1_500),
        "not held for the grace period: {:?}",
        signalled.elapsed()
    );
}

/// A call on a new connection while the tonic example drains gets `UNAVAILABLE`: a call that
/// never ends (a `Watch` on a pool that does not end it) keeps it draining meanwhile.
#[tokio::test]
async fn the_tonic_example_refuses_new_calls_with_unavailable_while_draining() {
    use tonic::transport::Channel;
    use tonic::Code;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;

    let mut server = Running::start(
        "tonic",
        &[
            ("UNREADY_MS", "0".to_string()),
            ("GRACE_MS", "1500".to_string()),
        ],
    )
    .await;
    let addr = server.addr();
    // A call that never ends: its request message never finishes arriving, so the handler
    // never answers, and the pool stays draining until the grace period is over.
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut h2, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    let (_sender, body) = open_body();
    let request = http::Request::post(format!("http://{addr}/grpc.health.v1.Health/Check"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(body)
        .unwrap();
    let held = h2.send_request(request);
    // Streams of one connection reach the service in order: once a later call on the same
    // connection is answered, the held one is counted.
    let check = http::Request::post(format!("http://{addr}/grpc.health.v1.Health/Check"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(full_body(&[0, 0, 0, 0, 0]))
        .unwrap();
    let mut h2_check = h2.clone();
    let held = tokio::spawn(held);
    let answered = h2_check.send_request(check).await.unwrap();
    assert_eq!(answered.status(), http::StatusCode::OK);

    server.terminate();
    // No unready period: straight to draining.
    assert_eq!(server.line("phase:").await, "phase: draining");
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let refused = HealthClient::new(channel)
        .check(HealthCheckRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert_eq!(refused.message(), "service is draining");
    let report = server.line("grace period over").await;
    assert!(report.contains(", 1 abandoned"), "{report}");
    bounded("the process exits", server.child.wait())
        .await
        .unwrap();
    held.abort();
}

type Frame = Result<http_body::Frame<bytes::Bytes>, std::convert::Infallible>;
type OpenBody = http_body_util::StreamBody<tokio_stream::wrappers::ReceiverStream<Frame>>;

/// A request body of `bytes`, in the same body type as `open_body`'s.
fn full_body(bytes: &'static [u8]) -> OpenBody {
    let (sender, body) = open_body();
    sender
        .try_send(Ok(http_body::Frame::data(bytes::Bytes::from_static(bytes))))
        .unwrap();
    body
}

/// A request body that stays open until its sender is dropped.
fn open_body() -> (tokio::sync::mpsc::Sender<Frame>, OpenBody) {
    let (sender, receiver) = tokio::sync::mpsc::channel(1);
    let body =
        http_body_util::StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(receiver));
    (sender, body)
}

/// `examples/upgrade_server.rs`: a SIGHUP whose new process fails before it is ready leaves the
/// old one serving, unharmed; the next SIGHUP hands over to a new process, and the old one
/// drains and exits.
#[cfg(feature = "upgrade")]
#[tokio::test]
async fn a_failed_upgrade_leaves_the_old_process_serving_and_the_next_one_hands_over() {
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let fail_file = std::env::temp_dir().join(format!("tower-drain-fail-{port}"));
    std::fs::write(&fail_file, b"").unwrap();
    let mut child = Command::new(example("upgrade_server"))
        .env("PORT", port.to_string())
        .env("UNREADY_MS", "100")
        .env("GRACE_MS", "2000")
        .env("UPGRADE_FAIL_FILE", &fail_file)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    line(&mut lines, "listening on").await;
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let pid_of = |addr| async move {
        let mut client = http1_connection(addr).await;
        let response = client.send_request(get_request("/pid")).await.unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(body.to_vec()).unwrap().trim().to_owned()
    };
    let old = pid_of(addr).await;
    assert_eq!(old, child.id().unwrap().to_string());
    let hup = |pid: &str| {
        let status = std::process::Command::new("kill")
            .args(["-HUP", pid])
            .status()
            .unwrap();
        assert!(status.success());
    };

    // The new process fails before it is ready: the old one goes on serving.
    hup(&old);
    line(&mut lines, "failing to start on purpose").await;
    for _ in 0..20 {
        assert_eq!(pid_of(addr).await, old, "the old process serves on");
    }

    // The next upgrade succeeds: the new process answers, the old one drains and exits.
    std::fs::remove_file(&fail_file).unwrap();
    hup(&old);
    let new = line(&mut lines, "inherited: true").await;
    line(&mut lines, "a new process is ready: handing over").await;
    let report = line(&mut lines, "drained in").await;
    assert!(report.starts_with(&format!("[{old}]")), "{report}");
    bounded("the old process exits", child.wait())
        .await
        .unwrap();
    let new_pid = new[1..new.find(']').unwrap()].to_owned();
    assert_eq!(pid_of(addr).await, new_pid);
    let status = std::process::Command::new("kill")
        .args(["-TERM", &new_pid])
        .status()
        .unwrap();
    assert!(status.success());
    line(&mut lines, "stopping").await;
    // Its last words, so that it never writes to a closed pipe.
    line(&mut lines, "drained in").await;
}

/// The next line of `lines` that contains `text`.
/// A free port, and the upgrade example started on it with `env`; its output lines.
async fn upgrade_server(env: &[(&str, String)]) -> (Child, Lines<BufReader<ChildStdout>>, u16) {
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let mut child = Command::new(example("upgrade_server"))
        .env("PORT", port.to_string())
        .env("UNREADY_MS", "100")
        .env("GRACE_MS", "2000")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    line(&mut lines, "listening on").await;
    (child, lines, port)
}

/// Kills a process the test did not start itself when the test ends, however it ends.
struct KillOnDrop(String);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &self.0])
            .stderr(Stdio::null())
            .status();
    }
}

fn send_signal(signal: &str, pid: &str) {
    let status = std::process::Command::new("kill")
        .args([signal, pid])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Waits until nothing accepts on `port`: every process serving it has exited.
async fn nothing_listens(port: u16) {
    bounded("nothing listening", async {
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_err()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

/// SIGTERM 100 ms after SIGHUP, to a version that takes 0.5 s to start: the old process must
/// not leave its successor serving (it did: the upgrade ran on in ecdysis's thread, and the
/// successor became ready after the old one had drained and exited).
#[tokio::test]
async fn sigterm_during_an_upgrade_leaves_no_successor_serving() {
    // The old process drains for longer than its successor takes to start, so the successor
    // becomes ready while the old one is still there to be told.
    let (mut child, mut lines, port) = upgrade_server(&[
        ("UPGRADE_DELAY_MS", "500".to_string()),
        ("UNREADY_MS", "1500".to_string()),
    ])
    .await;
    let old = child.id().unwrap().to_string();
    send_signal("-HUP", &old);
    let starting = line(&mut lines, "starting as an upgrade").await;
    let new = starting[1..starting.find(']').unwrap()].to_owned();
    // If the test fails, the successor must not outlive it (it holds the test's stderr).
    let _successor = KillOnDrop(new.clone());
    send_signal("-TERM", &old);
    line(&mut lines, "stopping").await;
    bounded("the old process exits", child.wait())
        .await
        .unwrap();
    // The successor is gone too, and nothing listens on the port.
    nothing_listens(port).await;
    bounded("the successor exits", async {
        while std::path::Path::new(&format!("/proc/{new}")).exists() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

/// The pid file's directory removed while serving, then SIGHUP: the new process fails before
/// it is ready, with an error rather than a panic, and the old one goes on serving (both
/// panicked in ecdysis's pid-file writer, leaving nothing listening).
#[tokio::test]
async fn an_unwritable_pid_file_fails_the_upgrade_and_leaves_the_old_process_serving() {
    let dir = std::env::temp_dir().join(format!("tower-drain-pid-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pid_file = dir.join("app.pid");
    let (mut child, mut lines, port) =
        upgrade_server(&[("PIDFILE", pid_file.display().to_string())]).await;
    let old = child.id().unwrap().to_string();
    assert_eq!(std::fs::read_to_string(&pid_file).unwrap().trim(), old);
    std::fs::remove_dir_all(&dir).unwrap();

    send_signal("-HUP", &old);
    let refused = line(&mut lines, "not ready: cannot write the pid file").await;
    assert!(!refused.starts_with(&format!("[{old}]")), "{refused}");
    // The old process serves on, and still upgrades once the directory is back.
    for _ in 0..20 {
        let mut client = http1_connection(([127, 0, 0, 1], port).into()).await;
        let response = client.send_request(get_request("/pid")).await.unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(String::from_utf8_lossy(&body).trim(), old);
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "the old process is alive"
    );
    send_signal("-TERM", &old);
    line(&mut lines, "drained in").await;
    bounded("the old process exits", child.wait())
        .await
        .unwrap();
    nothing_listens(port).await;
}

/// At start, a pid file in a missing directory is an error from `ready()`, not a panic.
#[tokio::test]
async fn a_pid_file_in_a_missing_directory_is_an_error_at_start() {
    let missing = std::env::temp_dir().join(format!("tower-drain-missing-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&missing);
    let output = bounded(
        "the process exits",
        Command::new(example("upgrade_server"))
            .env("PORT", "0")
            .env("PIDFILE", missing.join("app.pid"))
            .output(),
    )
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("not ready: cannot write the pid file"),
        "{stdout}"
    );
}

async fn line(lines: &mut Lines<BufReader<ChildStdout>>, text: &str) -> String {
    bounded(text, async {
        loop {
            let line = lines.next_line().await.unwrap().expect("output ended");
            if line.contains(text) {
                return line;
            }
        }
    })
    .await
}
