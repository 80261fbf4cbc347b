use std::net::SocketAddr;

use serde::Deserialize;

/// Syslog listeners (`[syslog]` in the config file).
///
/// Defaults: `udp_listen = ["127.0.0.1:5514"]`, `tcp_listen = ["127.0.0.1:5514"]`,
/// `max_message_bytes = 65536`, `max_connections = 2048`, `idle_timeout_secs = 900`,
/// `udp_receive_buffer_bytes = 33554432`, `timezone = "Asia/Tokyo"`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyslogConfig {
    pub udp_listen: Vec<SocketAddr>,
    pub tcp_listen: Vec<SocketAddr>,
    pub max_message_bytes: usize,
    pub max_connections: usize,
    pub idle_timeout_secs: u64,
    pub udp_receive_buffer_bytes: usize,
    /// IANA zone for RFC 3164 timestamps, which carry no zone.
    pub timezone: String,
}

impl Default for SyslogConfig {
    fn default() -> Self {
        let local = SocketAddr::from(([127, 0, 0, 1], 5514));
        SyslogConfig {
            udp_listen: vec![local],
            tcp_listen: vec![local],
            max_message_bytes: 64 << 10,
            max_connections: 2048,
            idle_timeout_secs: 900,
            udp_receive_buffer_bytes: 32 << 20,
            timezone: "Asia/Tokyo".to_owned(),
        }
    }
}

impl SyslogConfig {
    /// Checks values serde cannot: returns (key, what is expected) for the first bad one.
    pub fn validate(&self) -> Result<chrono_tz::Tz, (&'static str, String)> {
        if !(480..=(16 << 20)).contains(&self.max_message_bytes) {
            return Err((
                "max_message_bytes",
                "from 480 (RFC 5424's minimum) to 16777216".into(),
            ));
        }
        if !(1..=65_536).contains(&self.max_connections) {
            return Err(("max_connections", "from 1 to 65536".into()));
        }
        if self.idle_timeout_secs == 0 {
            return Err(("idle_timeout_secs", "at least 1".into()));
        }
        self.timezone.parse::<chrono_tz::Tz>().map_err(|_| {
            (
                "timezone",
                format!(
                    "an IANA time zone such as \"Asia/Tokyo\", not \"{}\"",
                    self.timezone
                ),
            )
        })
    }
}
