//! `mimamori verify` and `mimamori reindex`: the operator's tools for the stored audit trail.

use std::io::IsTerminal;

use anyhow::anyhow;

use crate::Failure;
use crate::config::Checked;

pub fn verify(checked: &Checked) -> Result<(), Failure> {
    let storage = &checked.config.storage;
    let key = storage
        .read_chain_key()
        .map_err(|(k, e)| Failure::Usage(format!("storage.{k}: expected {e}")))?;
    let terminal = std::io::stderr().is_terminal();
    let report = store::verify::verify(&storage.data_dir, key.as_deref(), &mut |n| {
        if terminal {
            eprint!("\r{n} records checked");
        }
    })
    .map_err(|e| Failure::Runtime(e.into()))?;
    if terminal {
        eprintln!();
    }
    let range = match (report.first_seq, report.last_seq) {
        (Some(a), Some(b)) => format!("records {a} to {b}"),
        _ => "no records".into(),
    };
    println!(
        "log: {} segments, {} records ({range}); index: {} events, committed at record {}{}",
        report.num_segments,
        report.num_records,
        report.num_index_events,
        report.checkpoint.seq,
        if report.signed {
            ", head signature holds"
        } else {
            ""
        }
    );
    if report.findings.is_empty() {
        println!("verified: nothing was changed, removed or inserted");
        return Ok(());
    }
    for finding in &report.findings {
        println!("FINDING {:?}: {finding}", finding.kind);
    }
    Err(Failure::Runtime(anyhow!(
        "{} findings: the stored audit trail is not what was accepted",
        report.findings.len()
    )))
}

pub fn reindex(checked: &Checked) -> Result<(), Failure> {
    crate::serve::init_tracing();
    let terminal = std::io::stderr().is_terminal();
    let mut last_shown = (0, std::time::Instant::now());
    let (num_events, old) = store::reindex(&checked.config.storage, &mut |done, total| {
        if terminal && done != last_shown.0 {
            last_shown.0 = done;
            eprint!("\rindexed {done} of {total} log records");
        } else if !terminal && last_shown.1.elapsed() >= std::time::Duration::from_secs(5) {
            // A log file or a pipe gets a line every 5 seconds instead.
            last_shown.1 = std::time::Instant::now();
            eprintln!("indexed {done} of {total} log records");
        }
    })
    .map_err(|e| Failure::Runtime(e.into()))?;
    if terminal {
        eprintln!();
    }
    println!("index rebuilt from the write-ahead log: {num_events} events searchable");
    if let Some(old) = old {
        println!(
            "the previous index is kept in {} (it may hold events the log lost to damage); remove it when you no longer need it",
            old.display()
        );
    }
    Ok(())
}
