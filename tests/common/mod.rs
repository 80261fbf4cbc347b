//! Starts the real `mimamori` binary on ports picked at run time and talks to it over sockets.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub mod deb;
pub mod delivery;
pub mod receiver;
pub mod web;

pub const BIN: &str = env!("CARGO_BIN_EXE_mimamori");

pub struct Server {
    pub child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub tcp: SocketAddr,
    pub udp: SocketAddr,
    pub http: SocketAddr,
    pub config: PathBuf,
}

pub fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A port free for both TCP and UDP (a syslog address listens on both): a TCP-free port may be
/// some other test's UDP listener.
pub fn free_tcp_and_udp_port() -> u16 {
    loop {
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Server {
    /// Starts a server; `extra` is appended to the `[syslog]` section.
    pub fn start(extra_syslog: &str) -> Server {
        Server::start_full(extra_syslog, "", "")
    }

    /// Starts a server with lines added to `[syslog]` and `[http]`, and `tail` (more sections)
    /// at the end of the config file.
    pub fn start_full(extra_syslog: &str, extra_http: &str, tail: &str) -> Server {
        let mut server = Server::prepare(extra_syslog, extra_http, tail);
        server.spawn();
        server
    }

    /// A server's directory and config, not started yet (see [`Server::spawn`]).
    pub fn prepare(extra_syslog: &str, extra_http: &str, tail: &str) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let (tcp, udp, http) = (free_tcp_port(), free_udp_port(), free_tcp_port());
        let config = dir.path().join("mimamori.toml");
        std::fs::write(
            &config,
            format!(
                "[storage]\ndata_dir = \"{}\"\ncommit_interval_ms = 200\nindex_memory_budget_bytes = 67108864\n\
                 [syslog]\ntcp_listen = [\"127.0.0.1:{tcp}\"]\nudp_listen = [\"127.0.0.1:{udp}\"]\n{extra_syslog}\n\
                 [http]\nlisten = \"127.0.0.1:{http}\"\n{extra_http}\n{tail}\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let server = Server {
            child: None,
            tcp: SocketAddr::from(([127, 0, 0, 1], tcp)),
            udp: SocketAddr::from(([127, 0, 0, 1], udp)),
            http: SocketAddr::from(([127, 0, 0, 1], http)),
            config,
            dir,
        };
        std::fs::create_dir_all(server.data_dir()).unwrap();
        server
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn spawn(&mut self) {
        self.spawn_until(|status| status == 200);
    }

    /// Starts the server and waits until `/healthz` answers at all: for a server meant to
    /// start degraded (a stage failing from the start answers 503).
    pub fn spawn_answering(&mut self) {
        self.spawn_until(|_| true);
    }

    fn spawn_until(&mut self, ready: impl Fn(u16) -> bool) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("serve.log"))
            .unwrap();
        let child = Command::new(BIN)
            .arg("--config")
            .arg(&self.config)
            .arg("serve")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !http_get(self.http, "/healthz").is_some_and(|(s, _)| ready(s)) {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("server exited at start ({status}): {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "server not healthy: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("serve.log")).unwrap_or_default()
    }

    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            Command::new("kill")
                .arg(child.id().to_string())
                .status()
                .unwrap(); // SIGTERM
            child.wait().unwrap();
        }
    }

    /// `mimamori search QUERY --json` through the CLI, as a person would run it.
    pub fn search(&self, query: &str) -> Vec<serde_json::Value> {
        self.search_with(query, &[])
    }

    /// Every match, page after page (one answer holds at most a few MiB of events).
    pub fn search_with(&self, query: &str, flags: &[&str]) -> Vec<serde_json::Value> {
        let mut all = Vec::new();
        loop {
            let offset = all.len().to_string();
            let mut args = vec![
                "search",
                query,
                "--from",
                "1970-01-01T00:00:00Z",
                "--limit",
                "100000",
                "--offset",
                &offset,
                "--json",
            ];
            args.extend_from_slice(flags);
            let out = self.cli(&args);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "search {query}: {stderr}");
            let page: Vec<serde_json::Value> = String::from_utf8(out.stdout)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            let more = stderr.contains("more matches") && !page.is_empty();
            all.extend(page);
            if !more {
                return all;
            }
        }
    }

    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .env("MIMAMORI_DATA_DIR", self.data_dir())
            .args(args)
            .output()
            .unwrap()
    }

    /// The CLI with this server's config file (channels, subscribers, rules).
    pub fn cli_config(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .output()
            .unwrap()
    }

    /// Waits until `query` finds at least `n` events; returns what it found last.
    pub fn wait_for(&self, query: &str, n: usize) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let hits = self.search(query);
            if hits.len() >= n || Instant::now() > deadline {
                return hits;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The value of a metric line that starts with `prefix` (summed over matching lines).
    pub fn metric(&self, prefix: &str) -> f64 {
        let (_, body) = http_get(self.http, "/metrics").expect("metrics");
        body.lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A minimal HTTP/1.1 GET: (status, body).
/// A TCP connection from another loopback address (`127.0.0.2`): another peer, as the server
/// sees it.
pub fn connect_from(source: [u8; 4], addr: SocketAddr) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::from((source, 0)).into()).unwrap();
    socket.connect(&addr.into()).unwrap();
    socket.into()
}

pub fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    http_request(addr, "GET", path, &[], b"")
}

/// A minimal HTTP/1.1 GET with extra headers: (status, body).
pub fn http_get_with(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> Option<(u16, String)> {
    http_request(addr, "GET", path, headers, b"")
}

/// A minimal HTTP/1.1 POST with extra headers: (status, body).
pub fn http_post(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Option<(u16, String)> {
    http_request(addr, "POST", path, headers, body)
}

fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ok()?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if method != "GET" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).ok()?;
    // A server may answer (413) before reading the whole body; a failed write is not the end.
    let _ = stream.write_all(body);
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    if response.is_empty() {
        return None;
    }
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((status, dechunk(&body)))
}

fn dechunk(body: &str) -> String {
    // axum answers with a content-length for these routes; tolerate chunked anyway.
    if !body.contains("\r\n") {
        return body.to_owned();
    }
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            return body.to_owned();
        };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

pub fn logger(args: &[&str]) {
    let status = Command::new("logger")
        .args(args)
        .status()
        .expect("logger (util-linux/bsdutils) is installed");
    assert!(status.success(), "logger {args:?}");
}

pub fn samples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/samples")
}

pub fn token() -> String {
    format!(
        "t{}x{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos() ^ rand_seed()
    )
}

fn rand_seed() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
        % 1_000_000_007
}

/// A self-signed certificate for `localhost` and 127.0.0.1 (not a CA, so rustls takes it as
/// both the trusted root and the server's certificate): (cert path, key path).
pub fn make_cert(dir: &Path) -> (String, String) {
    let (cert, key) = (dir.join("server.crt"), dir.join("server.key"));
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl is installed");
    assert!(status.success());
    (cert.display().to_string(), key.display().to_string())
}

/// The text of a PDF, as poppler's `pdftotext` reads it.
pub fn pdf_text(pdf: &Path) -> String {
    let out = Command::new("pdftotext")
        .arg(pdf)
        .arg("-")
        .output()
        .expect("pdftotext (poppler-utils)");
    assert!(out.status.success(), "pdftotext {}: {out:?}", pdf.display());
    String::from_utf8_lossy(&out.stdout).into_owned()
}
