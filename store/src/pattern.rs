//! Matching an event's addresses and host names against what a config names: CIDR ranges
//! (`10.10.1.0/24`, a bare address) and host-name patterns with `*` (`MAIN-PC*`). Used to tell
//! log sources apart and to place events at a site.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An address range: `10.10.0.0/16`, `fe80::/10`, or one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = PatternError;

    fn from_str(s: &str) -> Result<Cidr, PatternError> {
        let bad = || format!("an address or CIDR range such as \"10.10.1.0/24\", not {s:?}");
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s.trim(), None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().ok().filter(|&p| p <= max).ok_or_else(bad)?,
            None => max,
        };
        Ok(Cidr { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// A host-name pattern: `*` matches any run of characters; comparison ignores case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    lower: String,
}

impl Glob {
    pub fn new(pattern: &str) -> Glob {
        Glob {
            lower: pattern.trim().to_lowercase(),
        }
    }

    pub fn matches(&self, text: &str) -> bool {
        glob_match(self.lower.as_bytes(), text.to_lowercase().as_bytes())
    }

    pub fn as_str(&self) -> &str {
        &self.lower
    }
}

fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    // Iterative matcher with one backtrack point: linear in practice, no recursion.
    let (mut p, mut t) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some(p);
            mark = t;
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some(s) = star {
            p = s + 1;
            mark += 1;
            t = mark;
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_ranges() {
        let net: Cidr = "10.10.1.0/24".parse().unwrap();
        assert!(net.contains("10.10.1.77".parse().unwrap()));
        assert!(net.contains("::ffff:10.10.1.77".parse().unwrap()));
        assert!(!net.contains("10.10.2.1".parse().unwrap()));
        let one: Cidr = "192.168.0.5".parse().unwrap();
        assert!(one.contains("192.168.0.5".parse().unwrap()));
        assert!(!one.contains("192.168.0.6".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        let v6: Cidr = "fe80::/10".parse().unwrap();
        assert!(v6.contains("fe80::1".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("ten".parse::<Cidr>().unwrap_err().0.contains("CIDR"));
    }

    #[test]
    fn globs() {
        let g = Glob::new("MAIN-PC*");
        assert!(g.matches("main-pc07"));
        assert!(g.matches("MAIN-PC"));
        assert!(!g.matches("ANNEX-PC01"));
        assert!(Glob::new("*.clinic.local").matches("ehr01.clinic.local"));
        assert!(Glob::new("a*b*c").matches("aXXbYYc"));
        assert!(!Glob::new("a*b*c").matches("aXXbYY"));
        assert!(Glob::new("exact").matches("EXACT"));
    }
}

crate::reason_error! {
    /// What is wrong with an address range.
    PatternError
}
