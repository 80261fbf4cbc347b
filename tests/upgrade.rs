//! The Debian package on a real systemd: a Debian system (debootstrap) booted with
//! systemd-nspawn, with no network but its own loopback. The package is installed and started
//! by dpkg, given events, alerts and an account, upgraded to a newer version while it runs
//! (dpkg restarts it), and then refused a downgrade; searches, alerts, accounts, `verify` and
//! the edited config are the same throughout. Both versions carry the binary under test (the
//! data formats' own upgrades are tested in `faults.rs` with a data directory kept from an
//! older release).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A Debian root with systemd, adduser, procps and curl, made once by debootstrap and kept under
/// `target/tmp` (about 250 MB) for later runs.
fn debian_root() -> PathBuf {
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("debian-root");
    if cache.join("usr/lib/systemd/systemd").exists() {
        return cache;
    }
    let os = std::fs::read_to_string("/etc/os-release").unwrap();
    let suite = os
        .lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .unwrap_or("bookworm")
        .trim_matches('"')
        .to_owned();
    let partial = cache.with_extension(format!("partial-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&partial);
    let out = Command::new("debootstrap")
        .args([
            "--variant=minbase",
            "--include=systemd,systemd-sysv,dbus,adduser,curl,procps",
            &suite,
        ])
        .arg(&partial)
        .arg("http://deb.debian.org/debian")
        .output()
        .expect("debootstrap is installed (.ci/run installs it)");
    assert!(
        out.status.success(),
        "debootstrap {suite}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&cache);
    std::fs::rename(&partial, &cache).unwrap();
    cache
}

/// A booted copy of the Debian root; shut down and removed when dropped.
struct Machine {
    nspawn: Child,
    init: u32,
    _root: tempfile::TempDir,
}

/// Every process below `pid`.
fn descendants(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    let mut next = vec![pid];
    while let Some(p) = next.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let children =
                std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            for child in children.split_whitespace().filter_map(|c| c.parse().ok()) {
                found.push(child);
                next.push(child);
            }
        }
    }
    found
}

impl Machine {
    fn boot() -> Machine {
        let cache = debian_root();
        let root = tempfile::tempdir().unwrap();
        let copied = Command::new("cp")
            .arg("-a")
            .arg(cache.join("."))
            .arg(root.path())
            .status()
            .unwrap();
        assert!(copied.success());
        let name = format!("mimamori-upgrade-{}", std::process::id());
        // Under `timeout`: a test killed before its Drop runs leaves no machine behind for long.
        let nspawn = Command::new("timeout")
            .args([
                "--kill-after=30",
                "900",
                "systemd-nspawn",
                "--quiet",
                "--register=no",
                "--keep-unit",
                "--private-network",
                "--console=passive",
                "--boot",
                "--machine",
                &name,
                "--directory",
            ])
            .arg(root.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("systemd-nspawn is installed (.ci/run installs systemd-container)");
        let started = Instant::now();
        let init = loop {
            let init = descendants(nspawn.id()).into_iter().find(|p| {
                std::fs::read_to_string(format!("/proc/{p}/comm"))
                    .is_ok_and(|c| c.trim() == "systemd")
            });
            if let Some(init) = init {
                break init;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the container's systemd did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        let machine = Machine {
            nspawn,
            init,
            _root: root,
        };
        // Until systemd's own bus is up, systemctl cannot ask it.
        loop {
            let state = machine.run("systemctl is-system-running --wait");
            let said = String::from_utf8_lossy(&state.stdout);
            if matches!(said.trim(), "running" | "degraded") {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the container did not finish booting: {said}{}",
                String::from_utf8_lossy(&state.stderr)
            );
            std::thread::sleep(Duration::from_millis(250));
        }
        machine
    }

    /// `sh -c script` inside, as root.
    fn run(&self, script: &str) -> Output {
        Command::new("nsenter")
            .args([
                "--target",
                &self.init.to_string(),
                "--all",
                "--",
                "/bin/sh",
                "-c",
                script,
            ])
            .output()
            .unwrap()
    }

    /// `run`, which must succeed; its standard output.
    fn ok(&self, script: &str) -> String {
        let out = self.run(script);
        assert!(
            out.status.success(),
            "{script}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn copy_in(&self, file: &Path, name: &str) {
        std::fs::copy(file, self._root.path().join("root").join(name)).unwrap();
    }

    /// Waits until `script` succeeds.
    fn wait(&self, what: &str, script: &str) {
        let started = Instant::now();
        while !self.run(script).status.success() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "timed out: {what}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn service_invocation(&self) -> String {
        self.ok("systemctl show --property=InvocationID --value mimamori")
            .trim()
            .to_owned()
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        // SIGTERM asks nspawn to shut the container down in order.
        let _ = Command::new("kill")
            .arg(self.nspawn.id().to_string())
            .status();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(20) {
            if self.nspawn.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.nspawn.kill();
        let _ = self.nspawn.wait();
    }
}

const CLI: &str = "mimamori --config /etc/mimamori/mimamori.toml";

/// What must stay the same: every event, every alert, every account, and `verify`'s verdict.
fn state(machine: &Machine) -> (Vec<String>, String, String, String) {
    let mut events: Vec<String> = machine
        .ok(&format!(
            "{CLI} search '*' --from 1970-01-01T00:00:00Z --limit 100000 --json"
        ))
        .lines()
        .map(str::to_owned)
        .collect();
    events.sort();
    let alerts = machine.ok(&format!("{CLI} alerts --since 3650d --limit 10000 --json"));
    let users = machine.ok(&format!("{CLI} user list"));
    let verify = machine.ok(&format!("{CLI} verify"));
    let verdict = verify
        .lines()
        .find(|l| l.starts_with("verified:"))
        .unwrap_or_else(|| panic!("verify: {verify}"))
        .to_owned();
    (events, alerts, users, verdict)
}

#[test]
fn the_package_installs_upgrades_a_running_service_keeping_its_data_and_refuses_a_downgrade() {
    let tmp = tempfile::tempdir().unwrap();
    let version = env!("CARGO_PKG_VERSION");
    let (older, newer) = (format!("{version}-1"), format!("{version}-2"));
    common::deb::build(&tmp.path().join("older.deb"), Some(&older));
    common::deb::build(&tmp.path().join("newer.deb"), Some(&newer));
    let machine = Machine::boot();
    machine.copy_in(&tmp.path().join("older.deb"), "older.deb");
    machine.copy_in(&tmp.path().join("newer.deb"), "newer.deb");

    // Installed: the user, the data directory, the service started by dpkg under systemd.
    machine.ok("dpkg -i /root/older.deb");
    machine.wait("service up", "curl -sf http://127.0.0.1:8480/healthz");
    assert_eq!(
        machine.ok("systemctl is-enabled mimamori").trim(),
        "enabled"
    );
    assert_eq!(
        machine.ok("stat -c '%U:%G %a' /var/lib/mimamori").trim(),
        "mimamori:mimamori 750"
    );
    assert_eq!(
        machine
            .ok("stat -c '%U:%G %a' /etc/mimamori/mimamori.toml")
            .trim(),
        "root:mimamori 640"
    );

    // Data: events over syslog (two raise alerts), an account added by root with the CLI.
    machine.ok(
        "bash -c 'now=$(date -u +%FT%TZ); { for i in $(seq 1 300); do \
         echo \"<134>1 $now ehr01 ehr - - - user=n00$((i % 7)) action=VIEW_CHART patient=P$i src=10.10.1.23 record $i\"; done; \
         echo \"<134>1 $now ehr01 ehr - - - user=r001 action=EXPORT count=300 src=10.10.1.12\"; \
         echo \"<134>1 $now ehr01 ehr - - - user=n002 action=VIEW_CHART patient=P0099 src=10.10.1.23\"; \
         } > /dev/tcp/127.0.0.1/5514'",
    );
    let added = machine.run(&format!(
        "echo kanri-sha-2026 | {CLI} user add sato --role auditor --password-stdin"
    ));
    assert!(added.status.success(), "{added:?}");
    assert!(
        String::from_utf8_lossy(&added.stderr).contains("running as mimamori"),
        "root acts as the data's owner: {added:?}"
    );
    machine.wait(
        "events searchable",
        &format!("test $({CLI} search '*' --limit 1000 --json | wc -l) -eq 302"),
    );
    machine.wait(
        "alerts raised",
        &format!("{CLI} alerts --since 1d --json | grep -q bulk_export"),
    );
    assert_eq!(
        machine.ok("find /var/lib/mimamori ! -user mimamori").trim(),
        "",
        "no file in the data directory is root's"
    );
    // The vendor's edit of the config must survive the upgrade.
    machine.ok("sed -i 's/^commit_interval_ms = 1000$/commit_interval_ms = 500/' /etc/mimamori/mimamori.toml && systemctl restart mimamori");
    machine.wait("service up again", "curl -sf http://127.0.0.1:8480/healthz");
    let before = state(&machine);
    assert_eq!(before.0.len(), 302);
    assert!(before.2.contains("sato"));
    let running = machine.service_invocation();

    // Upgrade while it runs: dpkg restarts it, and nothing is different.
    let upgraded = machine.ok("dpkg -i /root/newer.deb 2>&1");
    assert!(
        upgraded.contains("the data in /var/lib/mimamori is kept"),
        "{upgraded}"
    );
    assert_eq!(machine.ok("dpkg-query -W -f '${Version}' mimamori"), newer);
    machine.wait(
        "service up after the upgrade",
        "curl -sf http://127.0.0.1:8480/healthz",
    );
    let after_upgrade = machine.service_invocation();
    assert_ne!(after_upgrade, running, "dpkg restarted the service");
    assert!(
        machine
            .ok("cat /etc/mimamori/mimamori.toml")
            .contains("\ncommit_interval_ms = 500\n")
    );
    assert_eq!(state(&machine), before, "the same data after the upgrade");

    // A downgrade is refused before anything changes.
    let downgrade = machine.run("dpkg -i /root/older.deb 2>&1");
    let said = String::from_utf8_lossy(&downgrade.stdout);
    assert!(!downgrade.status.success(), "{said}");
    assert!(
        said.contains(&format!("refusing to downgrade from {newer} to {older}")),
        "{said}"
    );
    assert_eq!(
        machine.ok("dpkg-query -W -f '${Version} ${Status}' mimamori"),
        format!("{newer} install ok installed")
    );
    assert_eq!(
        machine.service_invocation(),
        after_upgrade,
        "the running service was left alone"
    );
    assert_eq!(
        state(&machine),
        before,
        "the same data after the refused downgrade"
    );
    // Nor by removing the newer package first (its config and the data stay behind).
    machine.ok("dpkg -r mimamori");
    let reinstall = machine.run("dpkg -i /root/older.deb 2>&1");
    let said = String::from_utf8_lossy(&reinstall.stdout);
    assert!(
        !reinstall.status.success() && said.contains("refusing to downgrade"),
        "{said}"
    );
    machine.ok("dpkg -i /root/newer.deb");
    machine.wait(
        "service up after reinstalling",
        "curl -sf http://127.0.0.1:8480/healthz",
    );
    assert_eq!(state(&machine), before, "the same data after reinstalling");

    // `systemctl reload` (SIGHUP) works as the unit says.
    machine.ok("systemctl reload mimamori");
    machine.wait("reloaded", "journalctl -u mimamori | grep -q Reloaded");

    // A config the binary refuses stops the package's configuration, not the service.
    machine.ok("sed -i 's/^commit_interval_ms = 500$/commit_interval_ms = \"fast\"/' /etc/mimamori/mimamori.toml");
    let broken = machine.run("dpkg -i /root/newer.deb 2>&1");
    let said = String::from_utf8_lossy(&broken.stdout);
    assert!(!broken.status.success(), "{said}");
    assert!(
        said.contains("is not valid") && said.contains("commit_interval_ms"),
        "{said}"
    );
    machine.ok("curl -sf http://127.0.0.1:8480/healthz");
    machine.ok("sed -i 's/^commit_interval_ms = \"fast\"$/commit_interval_ms = 500/' /etc/mimamori/mimamori.toml && dpkg --configure -a");
    assert_eq!(
        machine.ok("dpkg-query -W -f '${Status}' mimamori"),
        "install ok installed"
    );
    machine.wait(
        "service up after the fix",
        "curl -sf http://127.0.0.1:8480/healthz",
    );
    assert_eq!(state(&machine), before, "the same data at the end");

    // The daily backup into a folder the README's drop-in allows: made at start (none yet).
    machine.ok(
        "install -d -o mimamori -g mimamori -m 700 /srv/usb \
         && mkdir -p /etc/systemd/system/mimamori.service.d \
         && printf '[Service]\nReadWritePaths=-/srv/usb\n' > /etc/systemd/system/mimamori.service.d/backup.conf \
         && sed -i 's|^# dir = \"/mnt/backup/mimamori\"$|dir = \"/srv/usb\"|' /etc/mimamori/mimamori.toml \
         && systemctl daemon-reload && systemctl restart mimamori",
    );
    machine.wait("a scheduled backup", "ls /srv/usb/snapshots | grep -q .");
    let checked = machine.ok(&format!("{CLI} restore --from /srv/usb --check"));
    assert!(checked.contains("all read back and match"), "{checked}");
}
