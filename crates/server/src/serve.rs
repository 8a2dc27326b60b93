//! The accept loop for plain-HTTP listeners.
//!
//! `axum::serve` would do, but it sets no timer on hyper's connection builder, and without one
//! hyper's header-read timeout never fires: a client that sends its request headers a byte at
//! a time (slowloris) could hold a connection open for as long as it likes. This loop is the
//! same thing with the timer set, so a connection that has not delivered its headers within
//! [`HEADER_READ_TIMEOUT`] is closed; once the headers are in, `server.request_timeout` bounds
//! the rest. It also keeps serving when `accept` fails (for example out of file descriptors),
//! and drains connections on shutdown like `axum::serve` does.

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::ServiceExt as _;

/// Longest time in-flight requests get to finish after shutdown is asked.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// A connection builder for HTTP/1.1 and HTTP/2 with the timeouts set.
pub fn builder(header_timeout: Duration) -> Builder<TokioExecutor> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)));
    builder
}

/// Serves `app` on `listener` until `shutdown` resolves, then lets in-flight requests finish
/// (up to [`DRAIN_TIMEOUT`]). Handlers see the peer address as
/// `ConnectInfo<std::net::SocketAddr>`.
///
/// # Errors
/// Never in practice: accept errors are logged and retried.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    header_timeout: Duration,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let builder = builder(header_timeout);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service =
            tower::service_fn(move |mut request: http::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                let app = app.clone();
                async move {
                    app.oneshot(request)
                        .await
                        .map_err(|e: Infallible| match e {})
                }
            });
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(service))
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, peer = %peer, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some connections were still busy after the drain timeout");
    }
    Ok(())
}
