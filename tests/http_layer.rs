//! `HttpDrainLayer` and `DrainBody` driven directly: frames, hints, errors, refusals, options.
#![cfg(feature = "http")]

mod support;

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use futures::stream;
use http::header::{CONNECTION, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, Version};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Empty, StreamBody};
use tower::{service_fn, Layer, Service, ServiceExt};
use tower_drain::Drain;

use support::full_service;

fn request(version: Version) -> Request<()> {
    Request::builder().version(version).body(()).unwrap()
}

#[tokio::test]
async fn size_hint_and_end_of_stream_pass_through_and_the_last_frame_releases() {
    let drain = Drain::new();
    let response = full_service(drain.http_layer(), b"hello")
        .oneshot(Request::new(()))
        .await
        .unwrap();
    let mut body = response.into_body();
    assert_eq!(body.size_hint().exact(), Some(5));
    assert!(!body.is_end_stream());
    assert_eq!(drain.in_flight(), 1);

    let frame = body.frame().await.unwrap().unwrap();
    assert_eq!(frame.into_data().unwrap(), "hello");
    assert!(body.is_end_stream());
    assert_eq!(drain.in_flight(), 0, "released with the last data frame");
    assert_eq!(drain.snapshot().completed, 1);
}

#[tokio::test]
async fn trailers_pass_through_and_end_the_request() {
    let drain = Drain::new();
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    let service = drain.http_layer().layer(service_fn(move |_: Request<()>| {
        let trailers = trailers.clone();
        async move {
            let frames = vec![
                Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"payload"))),
                Ok(Frame::trailers(trailers)),
            ];
            Ok::<_, Infallible>(Response::new(StreamBody::new(stream::iter(frames))))
        }
    }));
    let mut body = service.oneshot(Request::new(())).await.unwrap().into_body();
    let data = body.frame().await.unwrap().unwrap();
    assert_eq!(data.into_data().unwrap(), "payload");
    assert_eq!(drain.in_flight(), 1, "trailers still to come");
    let trailers = body
        .frame()
        .await
        .unwrap()
        .unwrap()
        .into_trailers()
        .unwrap();
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(drain.in_flight(), 0);
    assert_eq!(drain.snapshot().completed, 1);
}

#[tokio::test]
async fn an_empty_body_completes_with_the_response_head() {
    let drain = Drain::new();
    let service = drain.http_layer().layer(service_fn(|_: Request<()>| async {
        Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new()))
    }));
    let response = service.oneshot(Request::new(())).await.unwrap();
    assert!(response.body().is_end_stream());
    assert_eq!(drain.in_flight(), 0);
    drop(response);
    let s = drain.snapshot();
    assert_eq!((s.completed, s.cancelled), (1, 0));
}

#[tokio::test]
async fn a_body_error_ends_the_request_and_a_dropped_body_cancels_it() {
    let drain = Drain::new();
    let service = drain.http_layer().layer(service_fn(|_: Request<()>| async {
        let frames = vec![
            Ok(Frame::data(Bytes::from_static(b"partial"))),
            Err(std::io::Error::other("disk gone")),
        ];
        Ok::<_, Infallible>(Response::new(StreamBody::new(stream::iter(frames))))
    }));
    let mut body = service
        .clone()
        .oneshot(Request::new(()))
        .await
        .unwrap()
        .into_body();
    body.frame().await.unwrap().unwrap();
    let err = body.frame().await.unwrap().unwrap_err();
    assert_eq!(err.to_string(), "disk gone");
    assert_eq!(drain.in_flight(), 0);

    let mut body = service.oneshot(Request::new(())).await.unwrap().into_body();
    body.frame().await.unwrap().unwrap();
    drop(body);
    let s = drain.snapshot();
    assert_eq!((s.completed, s.cancelled, s.in_flight), (1, 1, 0));
}

#[tokio::test]
async fn a_dropped_response_future_and_an_inner_error_both_release() {
    let drain = Drain::new();
    let mut pending = drain.http_layer().layer(service_fn(|_: Request<()>| {
        std::future::pending::<Result<Response<Empty<Bytes>>, Infallible>>()
    }));
    let future = pending.ready().await.unwrap().call(Request::new(()));
    assert_eq!(drain.in_flight(), 1);
    drop(future);
    assert_eq!(drain.snapshot().cancelled, 1);

    let failing = drain.http_layer().layer(service_fn(|_: Request<()>| async {
        Err::<Response<Empty<Bytes>>, _>(std::io::Error::other("inner failed"))
    }));
    let err = failing.oneshot(Request::new(())).await.unwrap_err();
    assert_eq!(err.to_string(), "inner failed");
    let s = drain.snapshot();
    assert_eq!((s.completed, s.cancelled, s.in_flight), (1, 1, 0));
}

#[tokio::test]
async fn connection_close_only_on_http1_responses_during_a_drain() {
    for (version, expect_close) in [
        (Version::HTTP_10, true),
        (Version::HTTP_11, true),
        (Version::HTTP_2, false),
    ] {
        let drain = Drain::new();
        let service = full_service(drain.http_layer(), b"hello");
        let serving = service.clone().oneshot(request(version)).await.unwrap();
        assert!(
            serving.headers().get(CONNECTION).is_none(),
            "not draining yet"
        );

        let mut service = service;
        let future = service.ready().await.unwrap().call(request(version));
        drain.start_draining();
        let response = future.await.unwrap();
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "accepted before the drain"
        );
        assert_eq!(
            response.headers().get(CONNECTION).is_some(),
            expect_close,
            "{version:?}"
        );
        let refused = service.oneshot(request(version)).await.unwrap();
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(refused.headers().get(CONNECTION).is_some(), expect_close);
        assert!(
            refused.headers().get(RETRY_AFTER).is_none(),
            "off by default"
        );
    }
}

#[tokio::test]
async fn an_upgrade_response_keeps_its_connection_header() {
    let drain = Drain::new();
    let mut service = drain.http_layer().layer(service_fn(|_: Request<()>| async {
        let response = Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(CONNECTION, "upgrade")
            .header("upgrade", "websocket")
            .body(Empty::<Bytes>::new())
            .unwrap();
        Ok::<_, Infallible>(response)
    }));
    let future = service
        .ready()
        .await
        .unwrap()
        .call(request(Version::HTTP_11));
    drain.start_draining();
    let response = future.await.unwrap();
    assert_eq!(response.headers()[CONNECTION], "upgrade");
}

#[tokio::test]
async fn grpc_requests_get_a_trailers_only_unavailable() {
    let drain = Drain::new();
    drain.start_draining();
    let grpc = Request::builder()
        .version(Version::HTTP_2)
        .header(CONTENT_TYPE, "application/grpc+proto")
        .body(())
        .unwrap();
    let response = full_service(drain.http_layer(), b"hello")
        .oneshot(grpc)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["grpc-status"], "14");
    assert_eq!(response.headers()["grpc-message"], "service is draining");
    assert_eq!(response.headers()[CONTENT_TYPE], "application/grpc");
    assert!(response.body().is_end_stream(), "trailers-only: no body");
}

#[tokio::test]
async fn a_malformed_content_type_gets_the_plain_refusal() {
    let drain = Drain::new();
    drain.start_draining();
    for content_type in [&b"application/gr"[..], b"\xffapplication/grpc", b""] {
        let request = Request::builder()
            .header(CONTENT_TYPE, HeaderValue::from_bytes(content_type).unwrap())
            .body(())
            .unwrap();
        let response = full_service(drain.http_layer(), b"hello")
            .oneshot(request)
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(response.headers().get("grpc-status").is_none());
    }
}

#[tokio::test]
async fn retry_after_rounds_up_to_whole_seconds() {
    let drain = Drain::new();
    drain.start_draining();
    for (after, header) in [
        (Duration::from_secs(3), "3"),
        (Duration::from_millis(1500), "2"),
        // Saturated, not wrapped to "come back now" (nor a panic in debug builds).
        (Duration::MAX, "18446744073709551615"),
    ] {
        let layer = drain.http_layer().retry_after(after);
        let response = full_service(layer, b"hello")
            .oneshot(Request::new(()))
            .await
            .unwrap();
        assert_eq!(response.headers()[RETRY_AFTER], header);
    }
}

#[tokio::test]
async fn reject_with_builds_the_refusal() {
    let drain = Drain::new();
    drain.start_draining();
    let layer = drain
        .http_layer()
        .retry_after(Duration::from_secs(9))
        .reject_with(|request| {
            Response::builder()
                .status(StatusCode::TOO_MANY_REQUESTS)
                .header("x-path", request.uri.path())
                .body(Bytes::from_static(b"come back later"))
                .unwrap()
        });
    let request = Request::get("/orders").body(()).unwrap();
    let response = full_service(layer, b"hello")
        .oneshot(request)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()["x-path"], "/orders");
    assert_eq!(response.headers()[RETRY_AFTER], "9");
    assert_eq!(response.headers()[CONNECTION], "close");
    let body = response.into_body();
    assert_eq!(body.size_hint().exact(), Some(15));
    assert_eq!(body.collect().await.unwrap().to_bytes(), "come back later");
    assert_eq!(drain.snapshot().rejected, 1);
}

#[tokio::test]
async fn exempt_requests_are_neither_counted_nor_refused() {
    let drain = Drain::new();
    let layer = drain
        .http_layer()
        .exempt(|request| request.uri.path() == "/ready");
    let service = full_service(layer, b"hello");
    let ready = Request::get("/ready").body(()).unwrap();
    let response = service.clone().oneshot(ready).await.unwrap();
    assert_eq!(drain.in_flight(), 0, "not counted");
    drop(response);

    drain.start_draining();
    let ready = Request::get("/ready").body(()).unwrap();
    let response = service.clone().oneshot(ready).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "not refused");
    let other = Request::get("/work").body(()).unwrap();
    let response = service.oneshot(other).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let s = drain.snapshot();
    assert_eq!((s.started, s.rejected), (0, 1));
}

#[test]
fn layer_service_and_body_are_debug_and_clone() {
    let drain = Drain::new();
    let layer = drain.http_layer().exempt(|_| false);
    let service = full_service(layer.clone(), b"hello");
    let text = format!("{layer:?}");
    assert!(text.contains("exempt: true"), "{text}");
    let _cloned = service.clone();
}
