//! A small HTTP client for the web UI's pages: it keeps cookies like a browser and reads the
//! CSRF token from a page's forms.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Stdio;
use std::time::Duration;

use super::Server;

pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The value of the first hidden `csrf` input on the page.
    pub fn csrf(&self) -> String {
        let at = self
            .body
            .find("name=\"csrf\" value=\"")
            .unwrap_or_else(|| panic!("no form with a csrf token: {}", self.body));
        let rest = &self.body[at + "name=\"csrf\" value=\"".len()..];
        rest[..rest.find('"').unwrap()].to_owned()
    }
}

pub struct Browser {
    pub addr: SocketAddr,
    pub cookies: BTreeMap<String, String>,
    pub headers: Vec<(String, String)>,
}

/// Percent-encodes a form value.
pub fn enc(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b => format!("%{b:02X}"),
        })
        .collect()
}

impl Browser {
    pub fn new(addr: SocketAddr) -> Browser {
        Browser {
            addr,
            cookies: BTreeMap::new(),
            headers: Vec::new(),
        }
    }

    pub fn get(&mut self, path: &str) -> Answer {
        self.request("GET", path, &[], "")
    }

    /// Posts `fields` as a form.
    pub fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Answer {
        let body: Vec<String> = fields
            .iter()
            .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
            .collect();
        self.request(
            "POST",
            path,
            &[("Content-Type", "application/x-www-form-urlencoded")],
            &body.join("&"),
        )
    }

    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        extra: &[(&str, &str)],
        body: &str,
    ) -> Answer {
        let mut stream = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        if !extra.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
            head.push_str(&format!("Host: {}\r\n", self.addr));
        }
        if !self.cookies.is_empty() {
            let jar: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            head.push_str(&format!("Cookie: {}\r\n", jar.join("; ")));
        }
        for (k, v) in self
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .chain(extra.iter().copied())
        {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(body.as_bytes()).unwrap();
        let mut raw = Vec::new();
        let _ = stream.read_to_end(&mut raw);
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        for (k, v) in &headers {
            if k.eq_ignore_ascii_case("set-cookie") {
                let pair = v.split(';').next().unwrap_or("");
                if let Some((name, value)) = pair.split_once('=') {
                    if value.is_empty() || v.contains("Max-Age=0") {
                        self.cookies.remove(name);
                    } else {
                        self.cookies.insert(name.to_owned(), value.to_owned());
                    }
                }
            }
        }
        Answer {
            status,
            headers,
            body: body.to_owned(),
        }
    }

    /// Signs in through the form; panics unless it works.
    pub fn sign_in(&mut self, name: &str, password: &str) {
        let page = self.get("/login");
        let token = page.csrf();
        let answer = self.post(
            "/login",
            &[
                ("csrf", &token),
                ("name", name),
                ("password", password),
                ("next", "/search"),
            ],
        );
        assert_eq!(answer.status, 303, "sign-in of {name}: {}", answer.body);
    }
}

pub const ADMIN_PASSWORD: &str = "kanri-sha-2026";

/// `mimamori user add NAME --role ROLE --password-stdin`.
pub fn add_user(server: &Server, name: &str, role: &str, password: &str) {
    let mut child = std::process::Command::new(super::BIN)
        .args(["--config"])
        .arg(&server.config)
        .args(["user", "add", name, "--role", role, "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "user add {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The first-run setup through its form: the admin account, signed in.
pub fn setup(server: &Server) -> Browser {
    let mut admin = Browser::new(server.http);
    let home = admin.get("/");
    assert_eq!(home.status, 303);
    assert_eq!(home.header("location"), Some("/setup"));
    let page = admin.get("/setup");
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("初期設定"), "Japanese by default");
    let token = page.csrf();
    let mismatch = admin.post(
        "/setup",
        &[
            ("csrf", &token),
            ("name", "admin"),
            ("password", ADMIN_PASSWORD),
            ("password2", "something-else"),
        ],
    );
    assert!(mismatch.body.contains("一致しません"), "{}", mismatch.body);
    let token = mismatch.csrf();
    let done = admin.post(
        "/setup",
        &[
            ("csrf", &token),
            ("name", "admin"),
            ("password", ADMIN_PASSWORD),
            ("password2", ADMIN_PASSWORD),
        ],
    );
    assert_eq!(done.status, 303, "{}", done.body);
    assert!(admin.cookies.contains_key("mimamori_session"));
    admin
}

pub fn audit_count(server: &Server, query: &str) -> usize {
    server
        .search(&format!("event.dataset:mimamori.audit AND {query}"))
        .len()
}
