//! The HTTP listener, with every limit explicit: a cap on open connections, a time limit on
//! reading a request's headers that also closes idle keep-alive connections, a time limit on
//! each request (longer than the longest `/sync` long-poll) and on each wait for a piece of a
//! request body. Shutdown stops accepting, then lets requests in flight finish.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use axum::{extract::ConnectInfo, Router};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use tower::ServiceExt;

/// The limits of the listener.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Open connections at most; more wait in the kernel's backlog until one closes.
    pub max_connections: usize,
    /// Time to send a request's headers, counted from when the connection is ready for
    /// them: an idle keep-alive connection is closed after it too.
    pub header_timeout: Duration,
    /// How long requests in flight may take to finish at shutdown.
    pub drain_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 4096,
            header_timeout: Duration::from_secs(15),
            drain_timeout: Duration::from_secs(30),
        }
    }
}

/// Serves `router` on `listener` until `shutdown` resolves; over TLS when `tls` is given.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: &Limits,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let max = limits
        .max_connections
        .clamp(1, tokio::sync::Semaphore::MAX_PERMITS);
    let permits = Arc::new(tokio::sync::Semaphore::new(max));
    let (stopping, stop) = tokio::sync::watch::channel(false);
    // HTTP/1.1 only (TLS and HTTP/2 end at the reverse proxy): detecting the protocol would
    // wait on a silent connection before any timeout applies.
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = &mut shutdown => break,
        };
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service =
            router
                .clone()
                .map_request(move |mut req: http::Request<hyper::body::Incoming>| {
                    req.extensions_mut()
                        .insert(ConnectInfo::<SocketAddr>(remote));
                    req
                });
        let (builder, stop, tls) = (builder.clone(), stop.clone(), tls.clone());
        let handshake = limits.header_timeout;
        tokio::spawn(async move {
            let ended = match tls {
                None => serve_connection(&builder, TokioIo::new(stream), service, stop).await,
                Some(tls) => match tokio::time::timeout(handshake, tls.accept(stream)).await {
                    Ok(Ok(stream)) => {
                        serve_connection(&builder, TokioIo::new(stream), service, stop).await
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, %remote, "a TLS handshake failed");
                        Ok(())
                    }
                    Err(_) => {
                        tracing::debug!(%remote, "a TLS handshake took too long");
                        Ok(())
                    }
                },
            };
            if let Err(e) = ended {
                tracing::debug!(error = %e, %remote, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    let _ = stopping.send(true);
    // Every connection holds a permit until it ends.
    let drained = tokio::time::timeout(limits.drain_timeout, permits.acquire_many(max as u32));
    if drained.await.is_err() {
        tracing::warn!("requests still in flight at shutdown were cut off");
    }
}

/// Serves one connection until it ends, or finishes its request in flight once `stop` is set.
async fn serve_connection<IO, S>(
    builder: &hyper::server::conn::http1::Builder,
    io: IO,
    service: S,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), hyper::Error>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: tower::Service<
            http::Request<hyper::body::Incoming>,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let conn = builder
        .serve_connection(io, TowerToHyperService::new(service))
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        ended = conn.as_mut() => ended,
        _ = async { let _ = stop.wait_for(|s| *s).await; } => {
            // Finish the request in flight, then close.
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    }
}
