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
    assert!(unit.contains("ExecStart=/usr/bin/mimamori "));
    let path = dir.join("mimamori.service");
    std::fs::write(&path, unit.replace("/usr/bin/mimamori", common::BIN)).unwrap();
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

/// `dpkg-deb ARGS...`, its standard output; panics unless it works.
fn dpkg_deb(args: &[&std::ffi::OsStr]) -> String {
    let out = Command::new("dpkg-deb").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn cargo_deb_packages_the_binary_unit_conffile_and_maintainer_scripts() {
    let tmp = tempfile::tempdir().unwrap();
    let deb = tmp.path().join("mimamori.deb");
    common::deb::build(&deb, None);
    let contents = dpkg_deb(&["-c".as_ref(), deb.as_os_str()]);
    for (mode, path) in [
        ("-rwxr-xr-x", "./usr/bin/mimamori"),
        ("-rw-r-----", "./etc/mimamori/mimamori.toml"),
        ("-rw-r--r--", "./usr/lib/systemd/system/mimamori.service"),
        ("-rw-r--r--", "./usr/share/doc/mimamori/README.md"),
    ] {
        assert!(
            contents
                .lines()
                .any(|l| l.starts_with(mode) && l.ends_with(path)),
            "{mode} {path} in:\n{contents}"
        );
    }
    let control = tmp.path().join("control");
    dpkg_deb(&["-e".as_ref(), deb.as_os_str(), control.as_os_str()]);
    let read = |name: &str| std::fs::read_to_string(control.join(name)).unwrap();
    assert_eq!(read("conffiles").trim(), "/etc/mimamori/mimamori.toml");
    let depends = read("control");
    assert!(
        depends.contains("Depends: adduser") && depends.contains("procps"),
        "{depends}"
    );
    let postinst = read("postinst");
    assert!(postinst.contains("adduser --system --group --home /var/lib/mimamori"));
    assert!(postinst.contains("install -d -o mimamori -g mimamori -m 750 /var/lib/mimamori"));
    assert!(postinst.contains("deb-systemd-helper enable mimamori.service"));
    assert!(
        postinst.contains("restart") && postinst.contains("mimamori.service"),
        "the service is (re)started on install and upgrade:\n{postinst}"
    );
    assert!(
        read("preinst").contains("refusing to downgrade"),
        "an older package over a newer one is refused"
    );
    assert!(
        postinst.find("config check") < postinst.find("deb-systemd-invoke"),
        "the config is checked before the service is (re)started"
    );
    let postrm = read("postrm");
    assert!(postrm.contains("purge") && !postrm.contains("rm -rf /var/lib/mimamori"));
    for script in ["preinst", "postinst", "prerm", "postrm"] {
        let check = Command::new("sh")
            .arg("-n")
            .arg(control.join(script))
            .output()
            .unwrap();
        assert!(check.status.success(), "{script} is valid sh");
    }
    // The packaged unit is the one in deploy/ (checked above).
    let unit = tmp.path().join("root");
    dpkg_deb(&["-x".as_ref(), deb.as_os_str(), unit.as_os_str()]);
    // The binary is stripped: no symbol table, no debug information.
    let sections = Command::new("readelf")
        .args(["--section-headers", "--wide"])
        .arg(unit.join("usr/bin/mimamori"))
        .output()
        .expect("readelf (binutils) is installed");
    let sections = String::from_utf8_lossy(&sections.stdout);
    assert!(sections.contains(".text"), "{sections}");
    assert!(
        !sections.contains(".symtab") && !sections.contains(".debug_info"),
        "stripped: {sections}"
    );
    assert_eq!(
        std::fs::read_to_string(unit.join("usr/lib/systemd/system/mimamori.service")).unwrap(),
        std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/deploy/mimamori.service"
        ))
        .unwrap()
    );
    assert_eq!(
        std::fs::read_to_string(unit.join("etc/mimamori/mimamori.toml")).unwrap(),
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/mimamori.toml"))
            .unwrap()
    );
}
