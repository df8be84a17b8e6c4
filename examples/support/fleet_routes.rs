//! The routes of the fleet and upgrade examples: `/` answers at once, `/slow` after about
//! 50 ms, `/stream` sends 10 chunks over about 50 ms.

use std::time::Duration;

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use bytes::Bytes;

pub fn routes() -> Router {
    Router::new()
        .route("/", get(|| async { "hello\n" }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                "slow, but finished\n"
            }),
        )
        .route(
            "/stream",
            get(|| async {
                let chunks = futures::stream::unfold(0u8, |i| async move {
                    if i == 10 {
                        return None;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    let chunk = Bytes::from(format!("chunk {i}\n"));
                    Some((Ok::<_, std::convert::Infallible>(chunk), i + 1))
                });
                Body::from_stream(chunks)
            }),
        )
}
