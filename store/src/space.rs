//! The free-space guard: below a reserve, the log refuses new data before the disk is full, so
//! the index, the alert database and what is already stored keep room to work.

use std::path::Path;

/// Free and total bytes of the filesystem holding `path`.
pub fn free_space(path: &Path) -> std::io::Result<(u64, u64)> {
    let stat = rustix::fs::statvfs(path).map_err(std::io::Error::from)?;
    let unit = stat.f_frsize.max(1);
    Ok((stat.f_bavail * unit, stat.f_blocks * unit))
}

/// The reserve for a filesystem of `total` bytes: `min_free_bytes` or `min_free_percent` of
/// it, whichever is smaller (so a small disk is not refused outright).
pub fn reserve(total: u64, min_free_bytes: u64, min_free_percent: u8) -> u64 {
    let percent = total / 100 * u64::from(min_free_percent);
    min_free_bytes.min(percent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reserve_is_the_smaller_of_the_two() {
        assert_eq!(reserve(100 << 30, 1 << 30, 5), 1 << 30);
        assert_eq!(reserve(48 << 20, 1 << 30, 5), (48 << 20) / 100 * 5);
        assert_eq!(reserve(48 << 20, 1 << 30, 0), 0);
        let (free, total) = free_space(Path::new(".")).unwrap();
        assert!(total >= free && total > 0);
    }
}
