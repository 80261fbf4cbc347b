//! HTTPS for the UI and the API: the bounded listener's connections wrapped in TLS (rustls),
//! each handshake in a task of its own with a deadline, so a slow or silent client never holds
//! up the others; a certificate from the config, or one made for the appliance at first start.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::listener::{Bounded, BoundedListener, ClientAddr};

/// Handshakes finished and waiting to be served, at most.
const READY: usize = 64;

pub struct TlsListener {
    ready: mpsc::Receiver<(Bounded<TlsStream<TcpStream>>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Serves `listener`'s connections over TLS; a handshake not done within `deadline` is
    /// dropped (counted by the caller's metrics as a closed connection).
    pub fn new(
        mut listener: BoundedListener,
        acceptor: TlsAcceptor,
        deadline: Duration,
    ) -> std::io::Result<TlsListener> {
        use axum::serve::Listener;
        let local = listener.local_addr()?;
        let (tx, ready) = mpsc::channel(READY);
        tokio::spawn(async move {
            loop {
                let (io, addr) = listener.accept().await;
                let (acceptor, ready) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    if let Ok(Ok(stream)) = tokio::time::timeout(deadline, io.tls(&acceptor)).await
                    {
                        let _ = ready.send((stream, addr)).await;
                    }
                });
                if tx.is_closed() {
                    return;
                }
            }
        });
        Ok(TlsListener { ready, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = Bounded<TlsStream<TcpStream>>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            // The accepting task ended (the runtime is stopping): wait to be dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TlsListener>>
    for ClientAddr
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, TlsListener>) -> Self {
        ClientAddr(*stream.remote_addr())
    }
}

/// A certificate for the appliance (its names and addresses), made once and kept in `dir`
/// (`cert.pem`, `key.pem`, the key readable by the owner only): (cert, key) paths. Browsers
/// will warn until the clinic trusts it or installs its own (`http.tls_cert`).
pub fn self_signed(
    dir: &Path,
    names: &[String],
) -> Result<(std::path::PathBuf, std::path::PathBuf), String> {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    if cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut subject_names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    subject_names.extend(names.iter().cloned());
    let made = rcgen::generate_simple_self_signed(subject_names)
        .map_err(|e| format!("cannot make a certificate: {e}"))?;
    let write = |path: &Path, text: String, private: bool| {
        use std::io::Write;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        if private {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        options
            .open(path)
            .and_then(|mut f| f.write_all(text.as_bytes()).and_then(|()| f.sync_all()))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
    };
    write(&key, made.signing_key.serialize_pem(), true)?;
    write(&cert, made.cert.pem(), false)?;
    Ok((cert, key))
}
