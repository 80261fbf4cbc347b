//! A receiving SMTP server for the demo's mailbox: plain SMTP on a loopback port, each message
//! written whole to the mailbox directory. It accepts any sender and recipient; it is never an
//! open relay because it relays nothing, and it is bounded (connections, line length, message
//! size, idle time) like every other input.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tracing::warn;

use super::{MAX_MESSAGE_BYTES, Mailbox};

/// Connections served at once; more wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 16;
/// A command line longer than this ends the connection (RFC 5321 allows 512 bytes).
const MAX_LINE: u64 = 4096;
/// Recipients kept per message.
const MAX_RECIPIENTS: usize = 100;
/// Silence longer than this ends a connection.
const IDLE: Duration = Duration::from_secs(60);

/// The running receiver; dropping it stops it.
pub struct Receiver {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    /// Listens on `addr` (port 0 picks one) and writes what it receives into `mailbox`.
    pub async fn start(addr: SocketAddr, mailbox: Mailbox) -> std::io::Result<Receiver> {
        std::fs::create_dir_all(mailbox.dir())?;
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let mailbox = Arc::new(mailbox);
        let task = tokio::spawn(async move {
            loop {
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    return;
                };
                let (stream, _) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        warn!(error = %e, "mailbox: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let mailbox = mailbox.clone();
                tokio::spawn(async move {
                    if let Err(e) = session(stream, &mailbox).await {
                        warn!(error = %e, "mailbox: a connection ended with an error");
                    }
                    drop(permit);
                });
            }
        });
        Ok(Receiver { addr, task })
    }
}

/// Reads one line (at most [`MAX_LINE`] bytes) within [`IDLE`]; `None` at the end.
async fn line<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
) -> std::io::Result<Option<()>> {
    buf.clear();
    let read = tokio::time::timeout(IDLE, reader.take(MAX_LINE).read_until(b'\n', buf))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "idle"))??;
    if read == 0 {
        return Ok(None);
    }
    if !buf.ends_with(b"\n") {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "line too long",
        ));
    }
    Ok(Some(()))
}

async fn session(stream: TcpStream, mailbox: &Mailbox) -> std::io::Result<()> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    write.write_all(b"220 mimamori-demo ESMTP\r\n").await?;
    let mut buf = Vec::new();
    let mut from = String::new();
    let mut to: Vec<String> = Vec::new();
    while line(&mut reader, &mut buf).await?.is_some() {
        let text = String::from_utf8_lossy(&buf).trim_end().to_owned();
        let verb = text
            .split([' ', ':'])
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        let answer: &[u8] = match verb.as_str() {
            "EHLO" => b"250-mimamori-demo\r\n250-8BITMIME\r\n250 SIZE 10485760\r\n",
            "HELO" => b"250 mimamori-demo\r\n",
            "MAIL" => {
                from = address(&text);
                to.clear();
                b"250 OK\r\n"
            }
            "RCPT" if to.len() < MAX_RECIPIENTS => {
                to.push(address(&text));
                b"250 OK\r\n"
            }
            "RCPT" => b"452 too many recipients\r\n",
            "DATA" if to.is_empty() => b"503 RCPT first\r\n",
            "DATA" => {
                write.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await?;
                let message = data(&mut reader, &mut buf).await?;
                let answer: &[u8] = match message {
                    None => b"552 message too big\r\n",
                    Some(body) => {
                        let n = NEXT.fetch_add(1, Ordering::Relaxed);
                        match mailbox.keep(&from, &to, &body, n) {
                            Ok(()) => b"250 kept\r\n",
                            Err(e) if e.kind() == std::io::ErrorKind::StorageFull => {
                                warn!(error = %e, "mailbox: full, a message was refused");
                                b"452 mailbox full\r\n"
                            }
                            Err(e) => {
                                warn!(error = %e, "mailbox: a message could not be kept");
                                b"451 cannot keep the message now\r\n"
                            }
                        }
                    }
                };
                to.clear();
                answer
            }
            "RSET" => {
                to.clear();
                b"250 OK\r\n"
            }
            "NOOP" => b"250 OK\r\n",
            "QUIT" => {
                write.write_all(b"221 bye\r\n").await?;
                return Ok(());
            }
            _ => b"502 not implemented\r\n",
        };
        write.write_all(answer).await?;
    }
    Ok(())
}

/// The address in `MAIL FROM:<a@b> SIZE=1` or `RCPT TO:<a@b>`.
fn address(command: &str) -> String {
    let start = command.find('<').map(|i| i + 1).unwrap_or(0);
    let end = command[start..]
        .find('>')
        .map(|i| start + i)
        .unwrap_or(command.len());
    command[start..end].chars().take(254).collect()
}

/// The message up to the lone dot, unstuffed; `None` when it passed [`MAX_MESSAGE_BYTES`]
/// (read to its end all the same, so the session goes on).
async fn data<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
) -> std::io::Result<Option<Vec<u8>>> {
    let mut body = Vec::new();
    let mut too_big = false;
    loop {
        if line(reader, buf).await?.is_none() {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        // Only CRLF.CRLF ends the data (a bare LF dot is data: no smuggled second message).
        if buf.as_slice() == b".\r\n" {
            return Ok((!too_big).then_some(body));
        }
        let text = buf.strip_prefix(b".").unwrap_or(buf);
        if body.len() + text.len() > MAX_MESSAGE_BYTES {
            too_big = true;
            body = Vec::new();
        }
        if !too_big {
            body.extend_from_slice(text);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_read_from_the_commands() {
        assert_eq!(address("MAIL FROM:<a@b.example> SIZE=10"), "a@b.example");
        assert_eq!(address("RCPT TO:<院長@demo.invalid>"), "院長@demo.invalid");
        assert_eq!(address("MAIL FROM:<>"), "");
    }
}
