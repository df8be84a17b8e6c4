//! A self-driving demonstration of tower-drain: `cargo run --example demo`.
//!
//! A Tower service wrapped in `DrainLayer` takes five slow requests; then the pool starts
//! draining: a new request is refused at once, the five in flight run to their end, and the
//! wait for the pool to empty ends only after the last of them.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use tower::{service_fn, ServiceBuilder, ServiceExt};
use tower_drain::{Drain, Rejected};

#[tokio::main]
async fn main() {
    let start = Instant::now();
    let log = move |message: String| println!("[{:>5} ms] {message}", start.elapsed().as_millis());

    let drain = Drain::new();
    let service = ServiceBuilder::new()
        .layer(drain.layer())
        .service(service_fn(|id: u64| async move {
            // A slow handler: request n takes n * 100 ms.
            tokio::time::sleep(Duration::from_millis(id * 100)).await;
            Ok::<_, Infallible>(format!("response {id}"))
        }));

    let mut requests = Vec::new();
    for id in 1..=5 {
        let service = service.clone();
        requests.push(tokio::spawn(async move { service.oneshot(id).await }));
    }
    tokio::task::yield_now().await;
    while drain.in_flight() < 5 {
        tokio::task::yield_now().await;
    }
    log(format!("5 requests in flight: {drain:?}"));

    assert!(drain.start_draining());
    log("draining begins: new work is refused".into());
    match service.clone().oneshot(6).await {
        Err(err) if err.is::<Rejected>() => log(format!("request 6 refused: {err}")),
        other => panic!("request 6 should have been refused, got {other:?}"),
    }

    let waiter = tokio::spawn({
        let drain = drain.clone();
        async move {
            drain.until_empty().await;
            log("until_empty() resolved: the pool is empty".into());
        }
    });
    for request in requests {
        let response = request.await.expect("request task").expect("response");
        log(format!(
            "{response} finished; {} still in flight",
            drain.in_flight()
        ));
    }
    waiter.await.unwrap();

    let s = drain.snapshot();
    println!(
        "\nstarted {}, completed {}, cancelled {}, rejected {}, in flight {}: the server may exit.",
        s.started, s.completed, s.cancelled, s.rejected, s.in_flight
    );
}
