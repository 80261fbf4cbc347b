//! The HTTP listener, bounded: at most `http.max_connections` at once (more are closed at once
//! and counted), and a connection that sends or takes nothing for `http.idle_timeout_secs` is
//! closed (a slow or stalled client cannot hold a slot forever). The server reads too while it
//! works on a request (to notice a client that went away), so a request that takes longer than
//! the idle time is cut as well; none of the API's should come near the default minute.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use prometheus::{IntCounter, IntGauge, Registry};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

#[derive(Clone)]
struct HttpMetrics {
    open: IntGauge,
    refused: IntCounter,
    idle_closed: IntCounter,
}

pub struct BoundedListener {
    inner: TcpListener,
    slots: Arc<Semaphore>,
    idle: Duration,
    metrics: HttpMetrics,
}

impl BoundedListener {
    pub fn new(
        inner: TcpListener,
        max_connections: usize,
        idle: Duration,
        registry: &Registry,
    ) -> prometheus::Result<BoundedListener> {
        let metrics = HttpMetrics {
            open: IntGauge::new("mimamori_http_connections", "Open HTTP connections")?,
            refused: IntCounter::new(
                "mimamori_http_connections_refused_total",
                "HTTP connections closed at once because http.max_connections were open",
            )?,
            idle_closed: IntCounter::new(
                "mimamori_http_idle_closed_total",
                "HTTP connections closed after http.idle_timeout_secs without progress",
            )?,
        };
        registry.register(Box::new(metrics.open.clone()))?;
        registry.register(Box::new(metrics.refused.clone()))?;
        registry.register(Box::new(metrics.idle_closed.clone()))?;
        Ok(BoundedListener {
            inner,
            slots: Arc::new(Semaphore::new(max_connections)),
            idle,
            metrics,
        })
    }
}

impl axum::serve::Listener for BoundedListener {
    type Io = Bounded;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (stream, addr) = match self.inner.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(slot) = self.slots.clone().try_acquire_owned() else {
                self.metrics.refused.inc();
                drop(stream);
                continue;
            };
            self.metrics.open.inc();
            let io = Bounded {
                stream,
                _slot: slot,
                idle: self.idle,
                deadline: Box::pin(tokio::time::sleep(self.idle)),
                metrics: self.metrics.clone(),
            };
            return (io, addr);
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A connection holding one slot until it closes.
pub struct Bounded {
    stream: TcpStream,
    _slot: OwnedSemaphorePermit,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
    metrics: HttpMetrics,
}

impl Drop for Bounded {
    fn drop(&mut self) {
        self.metrics.open.dec();
    }
}

impl Bounded {
    /// After progress: the idle clock starts again.
    fn progressed(&mut self) {
        let next = Instant::now() + self.idle;
        self.deadline.as_mut().reset(next);
    }

    /// An operation's result: progress restarts the idle clock; while it waits, an error once
    /// the idle time is up.
    fn track<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if poll.is_ready() {
            self.progressed();
            return poll;
        }
        ready!(self.deadline.as_mut().poll(cx));
        self.metrics.idle_closed.inc();
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "HTTP connection idle too long",
        )))
    }
}

impl AsyncRead for Bounded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.stream).poll_read(cx, buf);
        this.track(cx, poll)
    }
}

impl AsyncWrite for Bounded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.stream).poll_write(cx, buf);
        this.track(cx, poll)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        this.track(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
