//! The HTTP listener, bounded: at most `http.max_connections` at once (more are closed at once
//! and counted), and a connection that sends or takes nothing for `http.idle_timeout_secs` is
//! closed (a slow or stalled client cannot hold a slot forever). The server reads too while it
//! works on a request (to notice a client that went away), so a request that takes longer than
//! the idle time is cut as well; none of the API's should come near the default minute. A
//! request's headers must all arrive within `http.header_timeout_secs` of its first byte (of
//! the connection's opening, for the first request), so a client trickling a byte at a time
//! cannot hold a slot either.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use ingest::{PeerCounts, PeerSlot};
use prometheus::{IntCounter, IntGauge, Registry};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// How many HTTP connections, from whom, for how long.
pub struct HttpLimits {
    pub max_connections: usize,
    pub per_peer: usize,
    pub idle: Duration,
    pub header_timeout: Duration,
}

#[derive(Clone)]
struct HttpMetrics {
    open: IntGauge,
    refused: IntCounter,
    idle_closed: IntCounter,
    slow_headers: IntCounter,
}

pub struct BoundedListener {
    inner: TcpListener,
    slots: Arc<Semaphore>,
    peers: PeerCounts,
    per_peer: usize,
    idle: Duration,
    header_timeout: Duration,
    metrics: HttpMetrics,
}

impl BoundedListener {
    pub fn new(
        inner: TcpListener,
        limits: HttpLimits,
        registry: &Registry,
    ) -> prometheus::Result<BoundedListener> {
        let HttpLimits {
            max_connections,
            per_peer,
            idle,
            header_timeout,
        } = limits;
        let r = store::Registrar(registry);
        let metrics = HttpMetrics {
            open: r.gauge("mimamori_http_connections", "Open HTTP connections")?,
            refused: r.counter(
                "mimamori_http_connections_refused_total",
                "HTTP connections closed at once because http.max_connections (or http.max_connections_per_peer from one address) were open",
            )?,
            idle_closed: r.counter(
                "mimamori_http_idle_closed_total",
                "HTTP connections closed after http.idle_timeout_secs without progress",
            )?,
            slow_headers: r.counter(
                "mimamori_http_slow_headers_total",
                "HTTP connections closed because a request's headers took longer than http.header_timeout_secs",
            )?,
        };
        Ok(BoundedListener {
            inner,
            slots: Arc::new(Semaphore::new(max_connections)),
            peers: PeerCounts::default(),
            per_peer,
            idle,
            header_timeout,
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
            // One host cannot take every slot (a browser needs a handful).
            let Some(peer_slot) = self.peers.take(addr.ip().to_canonical(), self.per_peer) else {
                self.metrics.refused.inc();
                drop(stream);
                continue;
            };
            self.metrics.open.inc();
            let io = Bounded {
                stream,
                _slot: slot,
                _peer_slot: peer_slot,
                idle: self.idle,
                deadline: Box::pin(tokio::time::sleep(self.idle)),
                header_timeout: self.header_timeout,
                headers: Headers::Reading {
                    deadline: Box::pin(tokio::time::sleep(self.header_timeout)),
                    tail: 0,
                },
                metrics: self.metrics.clone(),
                _open: Open(self.metrics.open.clone()),
            };
            return (io, addr);
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A connection holding one slot until it closes: plain TCP, or TLS over it
/// ([`Bounded::tls`]), the limits watching what the HTTP layer reads either way.
pub struct Bounded<S = TcpStream> {
    stream: S,
    _slot: OwnedSemaphorePermit,
    _peer_slot: PeerSlot,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
    header_timeout: Duration,
    headers: Headers,
    metrics: HttpMetrics,
    _open: Open,
}

/// Counts the connection open while it lives.
struct Open(IntGauge);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Bounded<TcpStream> {
    /// The same connection (its slots and limits) after a TLS handshake; the request's header
    /// deadline starts after it.
    pub async fn tls(
        self,
        acceptor: &tokio_rustls::TlsAcceptor,
    ) -> io::Result<Bounded<tokio_rustls::server::TlsStream<TcpStream>>> {
        let Bounded {
            stream,
            _slot,
            _peer_slot,
            idle,
            deadline,
            header_timeout,
            headers: _,
            metrics,
            _open,
        } = self;
        let stream = acceptor.accept(stream).await?;
        Ok(Bounded {
            stream,
            _slot,
            _peer_slot,
            idle,
            deadline,
            header_timeout,
            headers: Headers::Reading {
                deadline: Box::pin(tokio::time::sleep(header_timeout)),
                tail: 0,
            },
            metrics,
            _open,
        })
    }
}

/// Where the connection is in its current request, as far as the bytes show.
enum Headers {
    /// Between requests (after an answer): the next byte starts a request's headers.
    Waiting,
    /// Headers are arriving; they must end (a blank line) by the deadline. `tail` holds how
    /// much of `\r\n\r\n` the bytes read so far end with.
    Reading { deadline: Pin<Box<Sleep>>, tail: u8 },
    /// Headers complete: the body and the answer are governed by the idle time only.
    Done,
}

/// How much of `\r\n\r\n` (or a bare `\n\n`) the stream ends with after `bytes`, given
/// `tail` before them; 4 when the end of the headers was seen.
fn header_end(mut tail: u8, bytes: &[u8]) -> u8 {
    for &b in bytes {
        tail = match (tail, b) {
            (_, b'\r') if tail.is_multiple_of(2) => tail + 1,
            (1 | 3, b'\n') => tail + 1,
            (0, b'\n') => 2,
            (2, b'\n') => 4,
            _ => 0,
        };
        if tail == 4 {
            return 4;
        }
    }
    tail
}

impl<S> Bounded<S> {
    /// An answer is being written: whatever is read next is another request (after an
    /// interim `100 Continue`, the body still is).
    fn answered(&mut self, written: &[u8]) {
        if matches!(self.headers, Headers::Done) && !written.starts_with(b"HTTP/1.1 100 ") {
            self.headers = Headers::Waiting;
        }
    }

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

impl<S> Bounded<S> {
    /// Follows the request's headers through the bytes just read; an error once they have
    /// taken too long.
    fn watch_headers(&mut self, cx: &mut Context<'_>, read: &[u8]) -> Option<io::Error> {
        if matches!(self.headers, Headers::Waiting) && !read.is_empty() {
            self.headers = Headers::Reading {
                deadline: Box::pin(tokio::time::sleep(self.header_timeout)),
                tail: 0,
            };
        }
        let Headers::Reading { deadline, tail } = &mut self.headers else {
            return None;
        };
        *tail = header_end(*tail, read);
        if *tail == 4 {
            self.headers = Headers::Done;
            return None;
        }
        if deadline.as_mut().poll(cx).is_ready() {
            self.metrics.slow_headers.inc();
            return Some(io::Error::new(
                io::ErrorKind::TimedOut,
                "HTTP request headers took too long",
            ));
        }
        None
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Bounded<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.stream).poll_read(cx, buf);
        let read = match &poll {
            Poll::Ready(Ok(())) => &buf.filled()[before..],
            _ => &[],
        };
        if let Some(e) = this.watch_headers(cx, read) {
            return Poll::Ready(Err(e));
        }
        this.track(cx, poll)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Bounded<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.stream).poll_write(cx, buf);
        this.answered(buf);
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
        let first: &[u8] = bufs.iter().find(|b| !b.is_empty()).map_or(&[], |b| &b[..]);
        this.answered(first);
        this.track(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::header_end;

    #[test]
    fn the_end_of_headers_is_found_across_reads() {
        assert_eq!(header_end(0, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"), 4);
        let t = header_end(0, b"GET / HTTP/1.1\r\nHost: x\r");
        let t = header_end(t, b"\n\r");
        assert_eq!(header_end(t, b"\n"), 4);
        assert_eq!(header_end(0, b"GET / HTTP/1.0\n\n"), 4);
        assert_ne!(header_end(0, b"GET / HTTP/1.1\r\nHost: x\r\n"), 4);
        assert_ne!(header_end(0, b"a\r\rb\n"), 4);
    }
}

/// The address of the client a request came from (`ConnectInfo<ClientAddr>`), for sign-in
/// throttling, the first-run setup's loopback check and the audit trail.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub std::net::SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, BoundedListener>>
    for ClientAddr
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, BoundedListener>) -> Self {
        ClientAddr(*stream.remote_addr())
    }
}
