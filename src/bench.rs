pub fn run(_events: u64, _searches: usize) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
