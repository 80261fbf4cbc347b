//! The systemd unit in `deploy/`: valid for systemd and hardened as the README says.

mod common;

use std::process::Command;

/// The unit with its `ExecStart` pointed at the binary under test (verify checks it exists).
fn unit_here(dir: &std::path::Path) -> std::path::PathBuf {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/mimamori.service"
    ))
    .unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/mimamori "));
    let path = dir.join("mimamori.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/mimamori", common::BIN)).unwrap();
    path
}

#[test]
fn the_unit_verifies_and_is_hardened() {
    let tmp = tempfile::tempdir().unwrap();
    let unit = unit_here(tmp.path());
    let text = std::fs::read_to_string(&unit).unwrap();
    for line in [
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/mimamori",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "SystemCallFilter=@system-service",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} is set");
    }
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .expect("systemd-analyze is installed (.ci/run installs systemd)");
    assert!(
        verify.status.success() && verify.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let security = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&unit)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&security.stdout);
    let score: f64 = out
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for mimamori.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level: {out}"));
    // The README records 2.6 ("OK"); anything above 3 means the hardening was weakened.
    assert!(score <= 3.0, "exposure {score}: {out}");
}
