//! Syslog over UDP. One thread only receives, so the socket is drained even while the store
//! pushes back (a receiver that waited on the log let the kernel drop what arrived meanwhile);
//! a second thread parses and hands the events to the store. Between the two, datagrams wait
//! in memory up to [`QUEUE_BYTES`]; past that they are dropped and counted
//! (`mimamori_events_rejected_total{transport="udp",reason="queue_full"}`), as the kernel's own
//! drops are (`mimamori_udp_kernel_drops_total`). The parsed events in the store's queue are
//! bounded too, by [`IN_STORE_BYTES`]: the parser waits past it, so a store that refuses data
//! (a full disk) costs at most these two budgets of memory, whatever the senders send.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, mpsc};
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
/// Bytes of parsed events in the store's queue (not yet taken by the log), at most, counted
/// as their original and message plus what an event costs besides.
const IN_STORE_BYTES: usize = 64 << 20;
const EVENT_OVERHEAD_BYTES: usize = 512;
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
        let Ok(local) = self.local_addr() else {
            error!("the syslog udp socket has no address");
            return;
        };
        info!(port = local.port(), "syslog udp listening");
        let queued = Arc::new(AtomicUsize::new(0));
        let (hand_on, received) = mpsc::sync_channel::<Vec<Datagram>>(QUEUE_BATCHES);
        let parser = {
            let (context, queued, stop) = (self.context.clone(), queued.clone(), stop.clone());
            std::thread::Builder::new()
                .name("syslog-udp-parse".into())
                .spawn(move || parse(&received, &context, &queued, &stop))
        };
        let parser = match parser {
            Ok(parser) => parser,
            Err(e) => {
                error!(error = %e, "the syslog udp parser thread could not start");
                return;
            }
        };
        self.receive(&stop, local, &hand_on, &queued);
        drop(hand_on);
        if parser.join().is_err() {
            error!("the syslog udp parser thread panicked");
        }
    }

    /// Receives until `stop` is set or the parser is gone.
    fn receive(
        &self,
        stop: &AtomicBool,
        local: SocketAddr,
        hand_on: &mpsc::SyncSender<Vec<Datagram>>,
        queued: &AtomicUsize,
    ) {
        let context = &self.context;
        // One datagram can be 64 KiB; bigger than max_message_bytes is cut to it.
        let mut buf = vec![0u8; 65_536];
        let mut pending: Vec<Datagram> = Vec::with_capacity(RECEIVE_BATCH);
        let (mut pending_bytes, mut oldest) = (0usize, Instant::now());
        let mut drops_seen = udp_kernel_drops(local).unwrap_or(0);
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
                if let Some(drops) = udp_kernel_drops(local) {
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

/// Bytes of events the parser has in the store's queue.
#[derive(Default)]
struct InStore {
    bytes: Mutex<usize>,
    taken: Condvar,
}

/// Held by a batch in the store's queue; gives its bytes back when the log is done with it.
struct Held {
    in_store: Arc<InStore>,
    bytes: usize,
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut bytes = self
            .in_store
            .bytes
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        *bytes = bytes.saturating_sub(self.bytes);
        self.in_store.taken.notify_all();
    }
}

impl InStore {
    /// Waits until `bytes` more fit (or nothing is queued), then holds them; `None` when
    /// `stop` was set meanwhile.
    fn hold(self: &Arc<Self>, bytes: usize, stop: &AtomicBool) -> Option<Held> {
        let mut queued = self.bytes.lock().unwrap_or_else(|e| e.into_inner());
        while *queued > 0 && *queued + bytes > IN_STORE_BYTES {
            if stop.load(Ordering::Relaxed) {
                return None;
            }
            queued = self
                .taken
                .wait_timeout(queued, Duration::from_millis(100))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        *queued += bytes;
        Some(Held {
            in_store: self.clone(),
            bytes,
        })
    }
}

/// The parser thread: the received datagrams' events to the store, until the receiver is done
/// or the store closes.
fn parse(
    received: &mpsc::Receiver<Vec<Datagram>>,
    context: &SyslogContext,
    queued: &AtomicUsize,
    stop: &AtomicBool,
) {
    let in_store = Arc::new(InStore::default());
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
        let events = std::mem::replace(&mut events, Vec::with_capacity(BATCH_EVENTS));
        let n = events.len() as u64;
        let bytes = events
            .iter()
            .map(|e| e.original.len() + e.message.len() + EVENT_OVERHEAD_BYTES)
            .sum();
        let Some(held) = in_store.hold(bytes, stop) else {
            // Stopping while the store takes nothing (a full disk): what is parsed goes.
            context.reject("udp", "store_closed", n);
            return;
        };
        if context
            .events_tx
            .blocking_send(Batch::new(events).holding(held))
            .is_err()
        {
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

/// Kernel drop count for the UDP socket bound to `local`, from /proc/net/udp or
/// /proc/net/udp6 (Linux). Matched by address and port, so listeners that share a port (IPv4
/// and IPv6, or two addresses) each count only their own.
pub fn udp_kernel_drops(local: SocketAddr) -> Option<u64> {
    let table = if local.is_ipv4() {
        "/proc/net/udp"
    } else {
        "/proc/net/udp6"
    };
    let text = std::fs::read_to_string(table).ok()?;
    let mut total = None;
    for line in text.lines().skip(1) {
        let columns: Vec<&str> = line.split_whitespace().collect();
        let bound = columns.get(1).and_then(|a| proc_address(a));
        if bound == Some(local)
            && let Some(drops) = columns.last().and_then(|d| d.parse::<u64>().ok())
        {
            *total.get_or_insert(0) += drops;
        }
    }
    total
}

/// An address as /proc/net/udp{,6} writes it: the IP as 32-bit words in host order (little
/// endian here), in hex, then `:` and the port in hex.
fn proc_address(text: &str) -> Option<SocketAddr> {
    let (ip, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let words: Option<Vec<[u8; 4]>> = (0..ip.len() / 8)
        .map(|i| {
            ip.get(i * 8..i * 8 + 8)
                .and_then(|w| u32::from_str_radix(w, 16).ok())
                .map(u32::to_le_bytes)
        })
        .collect();
    let bytes: Vec<u8> = words?.concat();
    let ip: std::net::IpAddr = match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes.as_slice()).ok()?.into(),
        16 => <[u8; 16]>::try_from(bytes.as_slice()).ok()?.into(),
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_udp_addresses_are_read_back() {
        assert_eq!(
            proc_address("0100007F:0202"),
            Some("127.0.0.1:514".parse().unwrap())
        );
        assert_eq!(
            proc_address("00000000000000000000000001000000:ADB4"),
            Some("[::1]:44468".parse().unwrap())
        );
        assert_eq!(proc_address("zz:1"), None);
        // A socket of this process, found with its drop count.
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        assert_eq!(udp_kernel_drops(socket.local_addr().unwrap()), Some(0));
    }

    #[test]
    fn the_parser_waits_while_its_events_in_the_store_queue_are_over_budget() {
        let in_store = Arc::new(InStore::default());
        let stop = AtomicBool::new(false);
        let first = in_store.hold(IN_STORE_BYTES - 10, &stop).unwrap();
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let waiter = {
            let in_store = in_store.clone();
            std::thread::spawn(move || {
                let stop = AtomicBool::new(false);
                let held = in_store.hold(100, &stop);
                tx.send(()).unwrap();
                held.is_some()
            })
        };
        assert!(
            rx.recv_timeout(Duration::from_millis(300)).is_err(),
            "waits"
        );
        drop(first); // the log took the first batch
        assert!(rx.recv_timeout(Duration::from_secs(5)).is_ok());
        assert!(waiter.join().unwrap());
        // A batch bigger than the budget passes alone; stopping ends a wait.
        let big = in_store.hold(2 * IN_STORE_BYTES, &stop);
        assert!(big.is_some());
        stop.store(true, Ordering::Relaxed);
        assert!(in_store.hold(1, &stop).is_none());
    }
}
