//! `DrainLayer` over any Tower service: counting, refusal, errors, composition.

use std::convert::Infallible;
use std::time::Duration;

use tokio_test::{assert_pending, assert_ready, assert_ready_ok};
use tower::util::BoxCloneService;
use tower::{service_fn, ServiceBuilder, ServiceExt};
use tower_drain::{BoxError, Drain, Rejected};
use tower_test::{assert_request_eq, mock};

#[tokio::test]
async fn counts_a_request_from_call_until_its_future_completes() {
    let drain = Drain::new();
    let (mut service, mut handle) = mock::spawn_layer::<&str, &str, _>(drain.layer());

    assert_ready_ok!(service.poll_ready());
    assert_eq!(drain.in_flight(), 0, "poll_ready counts nothing");

    let mut response = tokio_test::task::spawn(service.call("hello"));
    assert_eq!(drain.in_flight(), 1, "counted from call");
    assert_pending!(response.poll());

    assert_request_eq!(handle, "hello").send_response("world");
    assert_eq!(drain.in_flight(), 1, "counted until the future completes");
    assert_eq!(assert_ready_ok!(response.poll()), "world");
    assert_eq!(drain.in_flight(), 0);
    assert_eq!(drain.snapshot().completed, 1);
}

#[tokio::test]
async fn a_draining_pool_refuses_without_calling_the_inner_service() {
    let drain = Drain::new();
    let (mut service, mut handle) = mock::spawn_layer::<&str, &str, _>(drain.layer());
    drain.start_draining();

    assert_ready_ok!(service.poll_ready(), "draining never makes it unready");
    let err = service.call("late").await.unwrap_err();
    let rejected = err.downcast_ref::<Rejected>().expect("a Rejected error");
    assert_eq!(rejected.to_string(), "service is draining");

    drop(service);
    assert!(
        handle.next_request().await.is_none(),
        "the inner service never saw the request"
    );
    assert_eq!(drain.snapshot().rejected, 1);
    assert_eq!(drain.snapshot().started, 0);
}

#[tokio::test]
async fn poll_ready_is_the_inner_services() {
    let drain = Drain::new();
    let (mut service, mut handle) = mock::spawn_layer::<(), (), _>(drain.layer());
    handle.allow(0);
    assert_pending!(service.poll_ready());
    assert_eq!(drain.in_flight(), 0);

    handle.allow(1);
    assert!(service.is_woken());
    assert_ready_ok!(service.poll_ready());

    let (mut failing, mut failing_handle) = mock::spawn_layer::<(), (), _>(drain.layer());
    failing_handle.send_error("broken");
    let err = assert_ready!(failing.poll_ready()).unwrap_err();
    assert_eq!(err.to_string(), "broken");
}

#[tokio::test]
async fn an_inner_error_releases_the_request_as_completed() {
    let drain = Drain::new();
    let (mut service, mut handle) = mock::spawn_layer::<(), (), _>(drain.layer());
    assert_ready_ok!(service.poll_ready());
    let response = service.call(());
    assert_request_eq!(handle, ()).send_error("boom");
    let err = response.await.unwrap_err();
    assert_eq!(err.to_string(), "boom");
    assert_eq!(drain.in_flight(), 0);
    assert_eq!(drain.snapshot().completed, 1);
}

#[tokio::test]
async fn a_dropped_response_future_counts_as_cancelled() {
    let drain = Drain::new();
    let (mut service, _handle) = mock::spawn_layer::<(), (), _>(drain.layer());
    assert_ready_ok!(service.poll_ready());
    let response = service.call(());
    assert_eq!(drain.in_flight(), 1);
    drop(response);
    assert_eq!(drain.in_flight(), 0);
    assert_eq!(drain.snapshot().cancelled, 1);
}

#[tokio::test]
async fn a_panicking_inner_future_releases_its_slot() {
    let drain = Drain::new();
    let service = ServiceBuilder::new()
        .layer(drain.layer())
        .service(service_fn(|fail: bool| async move {
            if fail {
                panic!("handler panicked");
            }
            Ok::<_, Infallible>(())
        }));
    let task = tokio::spawn(service.oneshot(true));
    assert!(task.await.unwrap_err().is_panic());
    assert_eq!(drain.in_flight(), 0);
    assert_eq!(drain.snapshot().cancelled, 1);
}

#[tokio::test]
async fn requests_in_flight_when_draining_begins_finish_normally() {
    let drain = Drain::new();
    let (mut service, mut handle) = mock::spawn_layer::<u32, u32, _>(drain.layer());
    assert_ready_ok!(service.poll_ready());
    let first = service.call(1);
    assert_ready_ok!(service.poll_ready());
    let second = service.call(2);
    drain.start_draining();
    let mut empty = tokio_test::task::spawn(drain.until_empty());
    assert_pending!(empty.poll());

    assert_request_eq!(handle, 1).send_response(10);
    assert_eq!(first.await.unwrap(), 10);
    assert_pending!(empty.poll());
    assert_request_eq!(handle, 2).send_response(20);
    assert_eq!(second.await.unwrap(), 20);
    assert_ready!(empty.poll());
}

#[tokio::test]
async fn composes_with_tower_middleware() {
    let drain = Drain::new();
    let service: BoxCloneService<u32, u32, BoxError> = ServiceBuilder::new()
        .boxed_clone()
        .buffer(8)
        .concurrency_limit(4)
        .timeout(Duration::from_secs(5))
        .layer(drain.layer())
        .service(service_fn(
            |x: u32| async move { Ok::<_, Infallible>(x + 1) },
        ));

    assert_eq!(service.clone().oneshot(1).await.unwrap(), 2);
    drain.start_draining();
    let err = service.oneshot(1).await.unwrap_err();
    assert!(err.is::<Rejected>(), "the refusal passes through: {err}");
    assert_eq!(drain.snapshot().completed, 1);
    assert_eq!(drain.snapshot().rejected, 1);
}

#[tokio::test(start_paused = true)]
async fn a_timeout_outside_the_layer_counts_as_cancelled() {
    let drain = Drain::new();
    let service = ServiceBuilder::new()
        .timeout(Duration::from_secs(1))
        .layer(drain.layer())
        .service(service_fn(|()| {
            std::future::pending::<Result<(), Infallible>>()
        }));
    let err = service.oneshot(()).await.unwrap_err();
    assert!(err.is::<tower::timeout::error::Elapsed>());
    assert_eq!(drain.in_flight(), 0);
    assert_eq!(drain.snapshot().cancelled, 1);
}

#[test]
fn layer_and_service_are_clone_and_debug() {
    let drain = Drain::new();
    let layer = drain.layer();
    let service = tower::Layer::layer(
        &layer.clone(),
        service_fn(|()| async { Ok::<_, Infallible>(()) }),
    );
    let mut cloned = service.clone();
    let _ = format!("{layer:?}");
    let _: &_ = cloned.get_ref();
    let _: &mut _ = cloned.get_mut();
    let _inner = cloned.into_inner();
}
