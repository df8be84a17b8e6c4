//! Zero heap allocations per request on both layers, counted by a global allocator.
//!
//! Only allocations made by this test's own thread while it is counting are seen, so the test
//! harness's other threads cannot disturb the count. Futures are polled by hand with a no-op
//! waker: no runtime allocates on our behalf.
#![cfg(feature = "http")]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::convert::Infallible;
use std::future::{ready, Future};
use std::pin::pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use http_body_util::Full;
use tower::{service_fn, Layer, Service};
use tower_drain::Drain;

struct Counting;

thread_local! {
    // Both per thread: tests run in parallel, each counting only its own allocations.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.try_with(Cell::get).unwrap_or(false) {
            let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        }
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const REQUESTS: usize = 10_000;

/// Allocations made by `f` on this thread.
fn count<F: FnMut()>(mut f: F) -> usize {
    ALLOCATIONS.with(|n| n.set(0));
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCATIONS.with(Cell::get)
}

fn poll_now<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(futures::task::noop_waker_ref());
    match future.as_mut().poll(&mut cx) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("an always-ready service should not be pending"),
    }
}

#[test]
fn the_counter_sees_allocations() {
    assert_eq!(count(|| drop(std::hint::black_box(Box::new(7u64)))), 1);
    // Boxing each response future, as some peers do, would show up here.
    assert_eq!(
        count(|| drop(std::hint::black_box(Box::pin(ready(1u8))))),
        1
    );
}

#[test]
fn drain_layer_allocates_nothing_per_request() {
    let drain = Drain::new();
    let mut service = drain
        .layer()
        .layer(service_fn(|x: u64| ready(Ok::<_, Infallible>(x))));
    let mut one_request = |i: u64| {
        poll_now(std::future::poll_fn(|cx| service.poll_ready(cx))).unwrap();
        assert_eq!(poll_now(service.call(i)).unwrap(), i);
    };
    for i in 0..100 {
        one_request(i); // warm-up
    }
    let allocations = count(|| {
        for i in 0..REQUESTS as u64 {
            one_request(i);
        }
    });
    assert_eq!(allocations, 0, "over {REQUESTS} requests");
    assert_eq!(drain.snapshot().completed, REQUESTS as u64 + 100);
}

#[test]
fn http_drain_layer_allocates_nothing_per_request() {
    let drain = Drain::new();
    let mut service = drain.http_layer().layer(service_fn(|_: Request<()>| {
        ready(Ok::<_, Infallible>(Response::new(Full::new(
            Bytes::from_static(b"hello"),
        ))))
    }));
    let mut one_request = || {
        poll_now(std::future::poll_fn(|cx| service.poll_ready(cx))).unwrap();
        let response = poll_now(service.call(Request::new(()))).unwrap();
        // Read the body to its end, as a server would.
        let mut body = pin!(response.into_body());
        let mut cx = Context::from_waker(futures::task::noop_waker_ref());
        while let Poll::Ready(Some(frame)) = body.as_mut().poll_frame(&mut cx) {
            frame.unwrap();
        }
    };
    for _ in 0..100 {
        one_request();
    }
    let allocations = count(|| {
        for _ in 0..REQUESTS {
            one_request();
        }
    });
    assert_eq!(allocations, 0, "over {REQUESTS} requests");
    assert_eq!(drain.snapshot().completed, REQUESTS as u64 + 100);
    assert_eq!(drain.in_flight(), 0);
}
