//! Syslog over UDP and TCP. Each TCP connection is its own task with a bounded buffer, so a slow,
//! idle or hostile client delays nobody else; the number of connections is capped. UDP is read
//! by a dedicated thread (`listener/udp.rs`).

mod udp;

pub use udp::{UdpSyslogListener, udp_kernel_drops};

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use store::{Batch, Event};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use crate::config::TcpLimits;
use crate::error::IngestError;
use crate::framing::{Frame, FrameFlaw, Framer, FramingError};
use crate::gaps::LiveGaps;
use crate::metrics::IngestMetrics;
use crate::syslog::{Origin, PARSE_FAILURE_TAG, SyslogParser};
use crate::windows::NoiseFilter;

/// Events sent to the store at once, at most.
const BATCH_EVENTS: usize = 512;

/// What every listener shares.
pub struct SyslogContext {
    pub parser: SyslogParser,
    pub max_message_bytes: usize,
    pub metrics: IngestMetrics,
    pub events_tx: mpsc::Sender<Batch>,
    pub filter: NoiseFilter,
    pub gaps: Mutex<LiveGaps>,
}

impl SyslogContext {
    pub fn new(
        parser: SyslogParser,
        max_message_bytes: usize,
        metrics: IngestMetrics,
        events_tx: mpsc::Sender<Batch>,
        filter: NoiseFilter,
    ) -> SyslogContext {
        SyslogContext {
            parser,
            max_message_bytes,
            metrics,
            events_tx,
            filter,
            gaps: Mutex::new(LiveGaps::default()),
        }
    }

    /// Parses a frame and adds what it yields to `out`: its event (unless it is noise) and a
    /// gap event when the sender's record numbering jumped.
    fn push_events(&self, frame: &Frame, origin: &Origin, out: &mut Vec<Event>) {
        let event = self.event(frame, origin);
        if let (Some(n), Some(channel)) = (
            event
                .labels
                .get("winlog.record_id")
                .and_then(|n| n.parse::<u64>().ok()),
            event.labels.get("winlog.channel"),
        ) {
            let source = format!("{}/{channel}", event.host.as_deref().unwrap_or("-"));
            let gap = self.gaps.lock().unwrap_or_else(|e| e.into_inner()).see(
                &source,
                n,
                event.host.as_deref(),
            );
            if let Some(gap) = gap {
                self.metrics
                    .sequence_gaps
                    .with_label_values(&[self.metrics.gap_sources.label(&source)])
                    .inc();
                self.metrics
                    .missing_records
                    .with_label_values(&[self.metrics.gap_sources.label(&source)])
                    .inc_by(gap.missing());
                let via = origin.address.as_deref().unwrap_or(origin.transport);
                out.push(gap.event(
                    event.timestamp,
                    event.ingested,
                    &format!("syslog from {via}"),
                ));
            }
        }
        if let Some(reason) = self.filter.reason(&event) {
            self.metrics.filtered.with_label_values(&[reason]).inc();
            return;
        }
        out.push(event);
    }

    fn event(&self, frame: &Frame, origin: &Origin) -> Event {
        let transport = origin.transport;
        self.metrics.received.with_label_values(&[transport]).inc();
        let mut event = self.parser.parse(&frame.bytes, origin, Utc::now());
        if event.tags.iter().any(|t| t == PARSE_FAILURE_TAG) {
            self.metrics
                .parse_failures
                .with_label_values(&[transport, "syslog"])
                .inc();
        }
        if let Some(flaw) = frame.flaw {
            let reason = match flaw {
                FrameFlaw::TooLong => "too_long",
                FrameFlaw::CutOff => "cut_off",
            };
            self.metrics
                .truncated
                .with_label_values(&[transport, reason])
                .inc();
            event.tags.push(format!("truncated_{reason}"));
        }
        event
    }

    fn reject(&self, transport: &str, reason: &str, n: u64) {
        self.metrics
            .rejected
            .with_label_values(&[transport, reason])
            .inc_by(n);
    }
}

/// Accepts syslog TCP connections until the task is aborted (which closes them all).
pub struct TcpSyslogListener {
    listener: TcpListener,
    context: Arc<SyslogContext>,
    limits: TcpLimits,
    tls: Option<TlsAcceptor>,
}

/// Open connections per peer address; a slot is given back when its guard drops. Shared by
/// the syslog TCP listeners and the HTTP listener.
#[derive(Clone, Default)]
pub struct PeerCounts(Arc<Mutex<HashMap<IpAddr, usize>>>);

/// One connection's place in [`PeerCounts`].
pub struct PeerSlot {
    counts: PeerCounts,
    ip: IpAddr,
}

impl PeerCounts {
    /// A slot for one more connection from `ip`, unless it has `max` open.
    pub fn take(&self, ip: IpAddr, max: usize) -> Option<PeerSlot> {
        let mut counts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = counts.entry(ip).or_default();
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(PeerSlot {
            counts: self.clone(),
            ip,
        })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = counts.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

impl TcpSyslogListener {
    pub async fn bind(
        addr: SocketAddr,
        context: Arc<SyslogContext>,
        limits: TcpLimits,
    ) -> Result<TcpSyslogListener, IngestError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| IngestError::Bind {
                transport: "tcp",
                addr,
                source,
            })?;
        Ok(TcpSyslogListener {
            listener,
            context,
            limits,
            tls: None,
        })
    }

    /// Makes this a syslog-over-TLS (RFC 5425) listener.
    pub fn with_tls(mut self, acceptor: TlsAcceptor) -> TcpSyslogListener {
        self.tls = Some(acceptor);
        self
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub async fn run(self) {
        let slots = Arc::new(Semaphore::new(self.limits.max_connections));
        let peers = PeerCounts::default();
        let mut connections = JoinSet::new();
        let transport = if self.tls.is_some() { "tls" } else { "tcp" };
        info!(addr = %self.local_addr().map(|a| a.to_string()).unwrap_or_default(), transport, "syslog listening");
        loop {
            // Reap finished connections so the set does not grow.
            while connections.try_join_next().is_some() {}
            let (stream, peer) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    warn!(error = %e, "syslog tcp accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                self.context.metrics.tcp_connections_refused.inc();
                warn!(peer = %peer, max = self.limits.max_connections, "syslog tcp connection refused: too many open");
                drop(stream);
                continue;
            };
            let ip = peer.ip().to_canonical();
            let Some(peer_slot) = peers.take(ip, self.limits.per_peer) else {
                self.context.metrics.tcp_connections_refused.inc();
                debug!(peer = %peer, max = self.limits.per_peer, "syslog tcp connection refused: too many open from this address");
                drop(stream);
                continue;
            };
            let context = self.context.clone();
            let limits = self.limits;
            let tls = self.tls.clone();
            connections.spawn(async move {
                context.metrics.tcp_connections.inc();
                let opened = tokio::time::Instant::now();
                match tls {
                    None => read_connection(stream, peer, "tcp", &context, limits, opened).await,
                    Some(acceptor) => {
                        // A client that never finishes the handshake holds a slot no longer than
                        // it may take for its first message.
                        let handshake =
                            tokio::time::timeout(limits.first_frame, acceptor.accept(stream)).await;
                        match handshake {
                            Ok(Ok(tls_stream)) => {
                                read_connection(tls_stream, peer, "tls", &context, limits, opened)
                                    .await;
                            }
                            Ok(Err(e)) => {
                                context.metrics.tls_handshake_failures.inc();
                                debug!(peer = %peer, error = %e, "syslog TLS handshake failed");
                            }
                            Err(_) => {
                                context.metrics.tls_handshake_failures.inc();
                                debug!(peer = %peer, "syslog TLS handshake timed out");
                            }
                        }
                    }
                }
                context.metrics.tcp_connections.dec();
                drop(peer_slot);
                drop(slot);
            });
        }
    }
}

/// Reads frames until the peer closes, goes quiet for `limits.idle`, or has not sent a whole
/// first frame `limits.first_frame` after `opened`.
async fn read_connection<S: AsyncRead + Unpin>(
    mut stream: S,
    peer: SocketAddr,
    transport: &'static str,
    context: &SyslogContext,
    limits: TcpLimits,
    opened: tokio::time::Instant,
) {
    let origin = Origin {
        transport,
        peer_ip: Some(peer.ip().to_canonical().to_string()),
        address: Some(format!("{transport}://{peer}")),
    };
    let mut framer = Framer::new(context.max_message_bytes);
    let mut chunk = vec![0u8; 16 << 10];
    let (mut frames, mut errors) = (Vec::new(), Vec::new());
    let mut framed_any = false;
    loop {
        let deadline = if framed_any {
            tokio::time::Instant::now() + limits.idle
        } else {
            opened + limits.first_frame
        };
        let read = tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await;
        let n = match read {
            Ok(Ok(0)) => break,
            Ok(Ok(n)) => n,
            Ok(Err(e)) => {
                debug!(peer = %peer, error = %e, "syslog tcp read failed");
                break;
            }
            Err(_) => {
                context.metrics.tcp_idle_closed.inc();
                debug!(peer = %peer, "syslog tcp connection idle; closed");
                break;
            }
        };
        framer.push(&chunk[..n], &mut frames, &mut errors);
        framed_any |= !frames.is_empty();
        if !send_frames(context, &origin, &mut frames, &mut errors).await {
            return;
        }
    }
    framer.finish(&mut frames);
    send_frames(context, &origin, &mut frames, &mut errors).await;
}

/// Parses and sends what was framed; false when the store has gone away.
async fn send_frames(
    context: &SyslogContext,
    origin: &Origin,
    frames: &mut Vec<Frame>,
    errors: &mut Vec<FramingError>,
) -> bool {
    for error in errors.drain(..) {
        let reason = match error {
            FramingError::Empty => "empty",
            FramingError::BadOctetCount => {
                warn!(
                    peer = origin.address.as_deref().unwrap_or("-"),
                    "bad octet count; reading the connection as lines"
                );
                "bad_octet_count"
            }
        };
        context.reject(origin.transport, reason, 1);
    }
    while !frames.is_empty() {
        let take = frames.len().min(BATCH_EVENTS);
        let mut events = Vec::with_capacity(take);
        for frame in frames.drain(..take) {
            context.push_events(&frame, origin, &mut events);
        }
        if events.is_empty() {
            continue;
        }
        let n = events.len() as u64;
        if context.events_tx.send(Batch::new(events)).await.is_err() {
            context.reject(origin.transport, "store_closed", n);
            return false;
        }
    }
    true
}
