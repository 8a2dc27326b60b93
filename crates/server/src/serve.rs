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

use crate::router::{admin_app, app};
use crate::start::ServerError;
use crate::{AppState, cleanup};

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

/// Serves the public and admin routers until `shutdown` resolves, then drains in-flight
/// requests and flushes last-use times.
///
/// # Errors
/// [`ServerError::Io`] if serving fails.
pub async fn run(
    state: AppState,
    public: TcpListener,
    admin: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    tracing::info!(public = %public.local_addr()?, admin = %admin.local_addr()?, mode = state.config.mode.as_str(), "moat listening");
    let jobs = tokio::spawn(cleanup::run_periodic(state.clone(), wait(rx.clone())));
    let sms_worker = tokio::spawn(state.account_service.sms_worker().run(wait(rx.clone())));
    let public_srv: std::pin::Pin<Box<dyn Future<Output = std::io::Result<()>> + Send>> =
        match &state.config.tls {
            None => Box::pin(serve(
                public,
                app(state.clone()),
                state.config.header_timeout,
                wait(rx.clone()),
            )),
            Some(tls) => {
                let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
                let config =
                    axum_server::tls_rustls::RustlsConfig::from_pem_file(&tls.cert, &tls.key)
                        .await
                        .map_err(|e| ServerError::Setup(format!("server.tls: {e}")))?;
                let handle = axum_server::Handle::new();
                let stopper = handle.clone();
                let mut stop_rx = rx.clone();
                tokio::spawn(async move {
                    let _ = stop_rx.wait_for(|stop| *stop).await;
                    stopper.graceful_shutdown(Some(DRAIN_TIMEOUT));
                });
                let mut server =
                    axum_server::from_tcp_rustls(public.into_std()?, config)?.handle(handle);
                // As in `serve`: without a timer hyper's header-read timeout never fires.
                server
                    .http_builder()
                    .http1()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(state.config.header_timeout);
                let make = app(state.clone())
                    .into_make_service_with_connect_info::<std::net::SocketAddr>();
                Box::pin(async move { server.serve(make).await })
            }
        };
    let admin_srv = serve(
        admin,
        admin_app(state.clone()),
        state.config.header_timeout,
        wait(rx.clone()),
    );
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutting down: draining in-flight requests");
        let _ = tx.send(true);
    });
    let (a, b) = tokio::join!(public_srv, admin_srv);
    let _ = jobs.await;
    let _ = sms_worker.await;
    a?;
    b?;
    Ok(())
}
