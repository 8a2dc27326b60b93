//! A bare reverse proxy on the same HTTP stack as Moat (hyper server, hyper-util pooled
//! client, tokio's multi-threaded runtime) that checks nothing: the floor under Moat's own
//! cost, measured beside nginx by `bench/perf.sh`.

use std::convert::Infallible;

use anyhow::Result;
use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

/// Serves on `listen`, forwarding every request to `upstream` (`http://host:port`).
pub async fn run(listen: &str, upstream: &str) -> Result<()> {
    let upstream: http::Uri = upstream.parse()?;
    let authority = upstream
        .authority()
        .ok_or_else(|| anyhow::anyhow!("upstream has no host"))?
        .clone();
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Incoming> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(256)
        .build(connector);
    let listener = TcpListener::bind(listen).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let (client, authority) = (client.clone(), authority.clone());
        let service = hyper::service::service_fn(move |mut request: http::Request<Incoming>| {
            let client = client.clone();
            let uri = http::Uri::builder()
                .scheme("http")
                .authority(authority.clone())
                .path_and_query(
                    request
                        .uri()
                        .path_and_query()
                        .map_or("/", http::uri::PathAndQuery::as_str),
                )
                .build();
            async move {
                let Ok(uri) = uri else {
                    return Ok::<_, Infallible>(bad_gateway());
                };
                *request.uri_mut() = uri;
                Ok(match client.request(request).await {
                    Ok(response) => response.map(Body::new),
                    Err(_) => bad_gateway(),
                })
            }
        });
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn bad_gateway() -> http::Response<Body> {
    let mut response = http::Response::new(Body::empty());
    *response.status_mut() = http::StatusCode::BAD_GATEWAY;
    response
}
