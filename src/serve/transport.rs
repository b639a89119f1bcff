//! The server's transport, built to survive broken and hostile clients:
//! HTTP/1.1 connections served by hyper with a header read timeout, at most
//! `max_connections` open at once (more wait in the listen backlog, so a
//! flood of idle sockets delays new clients but never the requests in
//! flight), and request bodies read whole before any handler sees them,
//! within a size limit (413) and a total time limit (408, which a body
//! trickled a byte at a time does not escape).

use super::api::ApiError;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// What one client may take.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// To send a request's headers, from its first read.
    pub header_timeout: Duration,
    /// To send a request's whole body, from the end of its headers.
    pub body_timeout: Duration,
    pub max_body_bytes: usize,
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(30),
            max_body_bytes: 64 << 20,
            max_connections: 512,
        }
    }
}

/// Serve `app` on `listener` until `shutdown` completes; then `on_shutdown`
/// runs, no connection is accepted, and what is in flight is finished.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
    on_shutdown: impl FnOnce(),
) {
    let places = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let place = tokio::select! {
            p = places.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            _ = &mut shutdown => break,
        };
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    // Out of file descriptors and the like: wait, do not spin.
                    eprintln!("infer-eval serve: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = conn.await;
            drop(place);
        });
    }
    on_shutdown();
    graceful.shutdown().await;
}

/// Middleware: the body read whole within `limits`, or 413 / 408.
pub async fn read_body(State(limits): State<Limits>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let mib = |b: usize| b as f64 / (1u64 << 20) as f64;
    let too_big = || {
        ApiError::new(
            413,
            "invalid_request_error",
            format!(
                "the request body is over the server's limit of {:.1} MiB (--max-body-mib)",
                mib(limits.max_body_bytes)
            ),
        )
        .with_param("body")
    };
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_body_bytes as u64) {
        return closing(too_big());
    }
    let read = tokio::time::timeout(
        limits.body_timeout,
        axum::body::to_bytes(body, limits.max_body_bytes),
    )
    .await;
    match read {
        Ok(Ok(bytes)) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Ok(Err(e)) => {
            let over = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            if over {
                closing(too_big())
            } else {
                closing(ApiError::bad(
                    "body",
                    format!("the request body could not be read: {e}"),
                ))
            }
        }
        Err(_) => closing(
            ApiError::new(
                408,
                "invalid_request_error",
                format!(
                    "the request body did not arrive within {} s (--body-timeout-s)",
                    limits.body_timeout.as_secs_f64()
                ),
            )
            .with_param("body"),
        ),
    }
}

/// An error after which the connection is closed: the rest of the body is
/// never read.
fn closing(e: ApiError) -> Response {
    let mut r = super::api::error_response(&e);
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}
