//! Syslog over UDP. One thread only receives, so the socket is drained even while the store
//! pushes back (a receiver that waited on the log let the kernel drop what arrived meanwhile);
//! a second thread parses and hands the events to the store. Between the two, datagrams wait
//! in memory up to [`QUEUE_BYTES`]; past that they are dropped and counted
//! (`mimamori_ingest_rejected_total{transport="udp",reason="queue_full"}`), as the kernel's own
//! drops are (`mimamori_udp_kernel_drops_total`).

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};
use store::Batch;
use tracing::{error, info, warn};

use super::{BATCH_EVENTS, SyslogContext};
use crate::error::IngestError;
use crate::framing::{Frame, FrameFlaw};
use crate::syslog::Origin;

/// Bytes of datagrams received and not yet parsed, at most.
const QUEUE_BYTES: usize = 64 << 20;
/// Datagrams handed from the receiver to the parser at once, at most.
const RECEIVE_BATCH: usize = 256;
/// Batches waiting for the parser, at most (the bytes are bounded first, by [`QUEUE_BYTES`]).
const QUEUE_BATCHES: usize = 16_384;
/// How long a received datagram waits for others before it is handed on.
const HAND_ON_AFTER: Duration = Duration::from_millis(5);

/// One datagram as received.
struct Datagram {
    bytes: Vec<u8>,
    too_long: bool,
    peer: SocketAddr,
}

/// Reads one UDP socket on its own thread; stops when `stop` is set or the store goes away.
pub struct UdpSyslogListener {
    socket: UdpSocket,
    context: Arc<SyslogContext>,
}

impl UdpSyslogListener {
    pub fn bind(
        addr: SocketAddr,
        context: Arc<SyslogContext>,
        receive_buffer_bytes: usize,
    ) -> Result<UdpSyslogListener, IngestError> {
        let bind_error = |source| IngestError::Bind {
            transport: "udp",
            addr,
            source,
        };
        let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))
            .map_err(bind_error)?;
        if let Err(e) = socket.set_recv_buffer_size(receive_buffer_bytes) {
            warn!(error = %e, "could not enlarge the UDP receive buffer");
        }
        socket.bind(&addr.into()).map_err(bind_error)?;
        let effective = socket.recv_buffer_size().unwrap_or(0);
        if effective < receive_buffer_bytes {
            info!(
                requested = receive_buffer_bytes,
                effective,
                "UDP receive buffer capped by the kernel (raise net.core.rmem_max for more headroom)"
            );
        }
        let socket: UdpSocket = socket.into();
        socket
            .set_read_timeout(Some(Duration::from_millis(20)))
            .map_err(bind_error)?;
        Ok(UdpSyslogListener { socket, context })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    pub fn run(self, stop: Arc<AtomicBool>) {
        let port = self.local_addr().map(|a| a.port()).unwrap_or(0);
        info!(port, "syslog udp listening");
        let queued = Arc::new(AtomicUsize::new(0));
        let (hand_on, received) = mpsc::sync_channel::<Vec<Datagram>>(QUEUE_BATCHES);
        let parser = {
            let (context, queued) = (self.context.clone(), queued.clone());
            std::thread::Builder::new()
                .name("syslog-udp-parse".into())
                .spawn(move || parse(&received, &context, &queued))
        };
        let parser = match parser {
            Ok(parser) => parser,
            Err(e) => {
                error!(error = %e, "the syslog udp parser thread could not start");
                return;
            }
        };
        self.receive(&stop, port, &hand_on, &queued);
        drop(hand_on);
        if parser.join().is_err() {
            error!("the syslog udp parser thread panicked");
        }
    }

    /// Receives until `stop` is set or the parser is gone.
    fn receive(
        &self,
        stop: &AtomicBool,
        port: u16,
        hand_on: &mpsc::SyncSender<Vec<Datagram>>,
        queued: &AtomicUsize,
    ) {
        let context = &self.context;
        // One datagram can be 64 KiB; bigger than max_message_bytes is cut to it.
        let mut buf = vec![0u8; 65_536];
        let mut pending: Vec<Datagram> = Vec::with_capacity(RECEIVE_BATCH);
        let (mut pending_bytes, mut oldest) = (0usize, Instant::now());
        let mut drops_seen = udp_kernel_drops(port).unwrap_or(0);
        let mut drops_checked = Instant::now();
        loop {
            let stopping = stop.load(Ordering::Relaxed);
            if !stopping {
                match self.socket.recv_from(&mut buf) {
                    Ok((n, peer)) => {
                        let len = n.min(context.max_message_bytes);
                        let bytes = trim_datagram(&buf[..len]);
                        if bytes.is_empty() {
                            context.reject("udp", "empty", 1);
                        } else {
                            if pending.is_empty() {
                                oldest = Instant::now();
                            }
                            pending_bytes += bytes.len();
                            pending.push(Datagram {
                                bytes: bytes.to_vec(),
                                too_long: n > context.max_message_bytes,
                                peer,
                            });
                        }
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) => {}
                    Err(e) => warn!(error = %e, "syslog udp receive failed"),
                }
            }
            let due = pending.len() >= RECEIVE_BATCH || oldest.elapsed() >= HAND_ON_AFTER;
            if !pending.is_empty() && (due || stopping) {
                let n = pending.len() as u64;
                if queued.load(Ordering::Relaxed) + pending_bytes > QUEUE_BYTES {
                    context.reject("udp", "queue_full", n);
                    pending.clear();
                } else {
                    queued.fetch_add(pending_bytes, Ordering::Relaxed);
                    let batch = std::mem::replace(&mut pending, Vec::with_capacity(RECEIVE_BATCH));
                    match hand_on.try_send(batch) {
                        Ok(()) => {}
                        Err(mpsc::TrySendError::Full(_)) => {
                            queued.fetch_sub(pending_bytes, Ordering::Relaxed);
                            context.reject("udp", "queue_full", n);
                        }
                        // The parser is gone: the store closed.
                        Err(mpsc::TrySendError::Disconnected(_)) => return,
                    }
                }
                pending_bytes = 0;
            }
            if stopping {
                return;
            }
            if drops_checked.elapsed() >= Duration::from_secs(1) {
                drops_checked = Instant::now();
                if let Some(drops) = udp_kernel_drops(port) {
                    context
                        .metrics
                        .udp_kernel_drops
                        .inc_by(drops.saturating_sub(drops_seen));
                    drops_seen = drops;
                }
            }
        }
    }
}

/// The parser thread: the received datagrams' events to the store, until the receiver is done
/// or the store closes.
fn parse(received: &mpsc::Receiver<Vec<Datagram>>, context: &SyslogContext, queued: &AtomicUsize) {
    let mut events = Vec::with_capacity(BATCH_EVENTS);
    // A sender's origin is made once for its run of datagrams, not once for each.
    let mut last: Option<(SocketAddr, Origin)> = None;
    while let Ok(batch) = received.recv() {
        let bytes: usize = batch.iter().map(|d| d.bytes.len()).sum();
        for datagram in batch {
            if last.as_ref().is_none_or(|(peer, _)| *peer != datagram.peer) {
                let origin = Origin {
                    transport: "udp",
                    peer_ip: Some(datagram.peer.ip().to_canonical().to_string()),
                    address: Some(format!("udp://{}", datagram.peer)),
                };
                last = Some((datagram.peer, origin));
            }
            let Some((_, origin)) = &last else { continue };
            let frame = Frame {
                bytes: datagram.bytes,
                flaw: datagram.too_long.then_some(FrameFlaw::TooLong),
            };
            context.push_events(&frame, origin, &mut events);
        }
        queued.fetch_sub(bytes, Ordering::Relaxed);
        if events.is_empty() {
            continue;
        }
        let batch = Batch::new(std::mem::replace(
            &mut events,
            Vec::with_capacity(BATCH_EVENTS),
        ));
        let n = batch.events.len() as u64;
        if context.events_tx.blocking_send(batch).is_err() {
            context.reject("udp", "store_closed", n);
            return;
        }
    }
}

/// A datagram without a trailing LF/CR/NUL.
fn trim_datagram(bytes: &[u8]) -> &[u8] {
    let end = bytes
        .iter()
        .rposition(|&b| !matches!(b, b'\n' | b'\r' | 0))
        .map_or(0, |i| i + 1);
    &bytes[..end]
}

/// Kernel drop count for UDP sockets bound to `port`, from /proc/net/udp{,6} (Linux).
pub fn udp_kernel_drops(port: u16) -> Option<u64> {
    let mut total = None;
    for table in ["/proc/net/udp", "/proc/net/udp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let columns: Vec<&str> = line.split_whitespace().collect();
            let local_port = columns
                .get(1)
                .and_then(|a| a.rsplit(':').next())
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if local_port == Some(port)
                && let Some(drops) = columns.last().and_then(|d| d.parse::<u64>().ok())
            {
                *total.get_or_insert(0) += drops;
            }
        }
    }
    total
}
