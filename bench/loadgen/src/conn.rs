//! A lean HTTP/1.1 client for the load generator: each worker owns one keep-alive connection
//! and drives it inside its own task, so a request costs one write and one read, with no
//! pool, no connection task and no per-request layers. Every run (nginx, Node, Moat) uses
//! it, so the client's cost is the same in each and as small as it can be: on a 2-core
//! machine the load generator shares the cores with the server it measures.

use std::net::SocketAddr;
use std::pin::Pin;

use anyhow::{Context as _, Result};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

type Connection = http1::Connection<TokioIo<TcpStream>, Full<Bytes>>;
/// The sending half and the connection future it needs polled.
type Live = (http1::SendRequest<Full<Bytes>>, Pin<Box<Connection>>);

/// One keep-alive connection to `addr`, reopened after an error.
pub struct Conn {
    addr: SocketAddr,
    host: HeaderValue,
    live: Option<Live>,
}

impl Conn {
    /// A connection to the server of `url` (`http://host:port`), opened on first use.
    pub fn new(url: &str) -> Result<Self> {
        let uri: http::Uri = url.parse().context("url")?;
        let authority = uri.authority().context("url has no host")?.as_str();
        let addr = std::net::ToSocketAddrs::to_socket_addrs(authority)?
            .next()
            .context("url host did not resolve")?;
        Ok(Self {
            addr,
            host: HeaderValue::from_str(authority)?,
            live: None,
        })
    }

    async fn open(&mut self) -> Result<()> {
        let stream = TcpStream::connect(self.addr).await?;
        stream.set_nodelay(true)?;
        let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
        self.live = Some((sender, Box::pin(conn)));
        Ok(())
    }

    /// Sends `method path_and_query` with `headers` (plus `Host`) and reads the whole
    /// response.
    pub async fn send(
        &mut self,
        method: Method,
        path_and_query: &str,
        headers: HeaderMap,
    ) -> Result<(StatusCode, Bytes)> {
        if self.live.is_none() {
            self.open().await?;
        }
        let mut request = Request::builder()
            .method(method)
            .uri(path_and_query)
            .body(Full::new(Bytes::new()))?;
        *request.headers_mut() = headers;
        request
            .headers_mut()
            .insert(http::header::HOST, self.host.clone());
        let (outcome, closed) = {
            let (sender, conn) = self.live.as_mut().context("connection")?;
            let exchange = async {
                sender.ready().await?;
                let response = sender.send_request(request).await?;
                let status = response.status();
                let body = response.into_body().collect().await?.to_bytes();
                anyhow::Ok((status, body))
            };
            // The connection is polled in this task alongside the exchange; it only finishes on
            // its own when the server closes it or it fails.
            tokio::pin!(exchange);
            tokio::select! {
                biased;
                r = &mut exchange => (r, false),
                r = conn.as_mut() => match r {
                    // The server closed after answering (`Connection: close`, e.g. nginx's
                    // `keepalive_requests`): the answer is already read, finish taking it.
                    Ok(()) => (exchange.await, true),
                    Err(e) => (Err(e.into()), true),
                },
            }
        };
        if closed || outcome.is_err() {
            self.live = None;
        }
        outcome
    }
}
