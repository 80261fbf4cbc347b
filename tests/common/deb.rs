//! The Debian package, built by `cargo deb` from the binary the tests built.

use std::path::Path;
use std::process::Command;

/// Writes the package to `out`, as `version` when given (else Cargo.toml's), with the binary
/// stripped as `cargo deb` does for a release. A release build would take minutes more; the
/// package's layout and scripts do not depend on the profile.
pub fn build(out: &Path, version: Option<&str>) {
    let mut cargo = Command::new(env!("CARGO"));
    cargo.current_dir(env!("CARGO_MANIFEST_DIR")).args([
        "deb",
        "--no-build",
        "--profile",
        "dev",
        "--fast",
        "--output",
    ]);
    cargo.arg(out);
    if let Some(version) = version {
        cargo.args(["--deb-version", version]);
    }
    let built = cargo
        .output()
        .expect("cargo-deb is installed (.ci/run installs it)");
    assert!(
        built.status.success(),
        "cargo deb: {}",
        String::from_utf8_lossy(&built.stderr)
    );
}
