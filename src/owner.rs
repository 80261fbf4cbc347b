//! `sudo mimamori ...` on an installed appliance: root working in a data directory that the
//! service's user owns acts as that user, so no file in it (a SQLite journal, a log segment, a
//! lock) ever becomes root's and locks the service out of its own data.

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

/// The effective user id, from `/proc/self/status` (`Uid: real effective saved fs`).
pub fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// The account name of `uid` from `/etc/passwd`, for the message.
fn user_name(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        (fields.nth(1)? == uid.to_string()).then(|| name.to_owned())
    })
}

/// Runs this same command again as the owner of `data_dir` when root runs it there and the
/// directory belongs to another user (returns only if nothing needs changing, or with why it
/// could not). Supplementary groups are dropped; the group is the directory's.
pub fn act_as_owner(data_dir: &Path) -> anyhow::Result<()> {
    if effective_uid() != Some(0) {
        return Ok(());
    }
    let Ok(meta) = std::fs::metadata(data_dir) else {
        return Ok(());
    };
    if meta.uid() == 0 {
        return Ok(());
    }
    let who = user_name(meta.uid()).unwrap_or_else(|| format!("uid {}", meta.uid()));
    eprintln!(
        "mimamori: {} belongs to {who}; running as {who} so that the service can use every file this command writes",
        data_dir.display()
    );
    let err = Command::new("/proc/self/exe")
        .args(std::env::args_os().skip(1))
        .uid(meta.uid())
        .gid(meta.gid())
        .exec();
    anyhow::bail!(
        "could not run as {who}, the owner of {}: {err}",
        data_dir.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process_user_and_names_root() {
        let uid = effective_uid().expect("/proc/self/status has a Uid line");
        let me = std::fs::metadata("/proc/self").unwrap().uid();
        assert_eq!(uid, me);
        assert_eq!(user_name(0).as_deref(), Some("root"));
    }
}
