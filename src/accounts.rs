//! `mimamori user add|list|passwd` and `mimamori token add|list|revoke`: the web UI's
//! accounts and the API's tokens from the command line (works while the server runs: the
//! account database is SQLite in WAL mode).

use std::io::BufRead;

use anyhow::Context;
use web::accounts::{AccountDb, Role, accounts_db_path, random_token};

use crate::Failure;
use crate::config::Checked;

fn open(checked: &Checked) -> Result<AccountDb, Failure> {
    let path = accounts_db_path(&checked.config.storage.data_dir);
    std::fs::create_dir_all(&checked.config.storage.data_dir)
        .with_context(|| {
            format!(
                "cannot create {}",
                checked.config.storage.data_dir.display()
            )
        })
        .map_err(Failure::Runtime)?;
    AccountDb::open(&path).map_err(|e| Failure::Runtime(e.into()))
}

/// The password: one line of stdin with `--password-stdin`, else a new random one (printed
/// once).
fn password(from_stdin: bool) -> Result<(String, bool), Failure> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from stdin")
            .map_err(Failure::Runtime)?;
        return Ok((line.trim_end_matches(['\r', '\n']).to_owned(), false));
    }
    Ok((random_token()[..20].to_owned(), true))
}

/// The person at the terminal, recorded as who created an account.
fn operator() -> String {
    format!(
        "cli:{}",
        std::env::var("SUDO_USER")
            .or_else(|_| std::env::var("USER"))
            .unwrap_or_else(|_| "unknown".into())
    )
}

pub fn add(checked: &Checked, name: &str, role: &str, from_stdin: bool) -> Result<(), Failure> {
    let role: Role = role
        .parse()
        .map_err(|e: web::accounts::AccountError| Failure::Usage(format!("--role: {e}")))?;
    let db = open(checked)?;
    let (password, generated) = password(from_stdin)?;
    db.add(name, role, &password, &operator())
        .map_err(|e| Failure::Usage(e.to_string()))?;
    println!("account {name} added ({})", role.as_str());
    if generated {
        println!("password (shown once): {password}");
    }
    Ok(())
}

pub fn passwd(checked: &Checked, name: &str, from_stdin: bool) -> Result<(), Failure> {
    let db = open(checked)?;
    let (password, generated) = password(from_stdin)?;
    db.set_password(name, &password)
        .map_err(|e| Failure::Usage(e.to_string()))?;
    println!("password of {name} changed; its sessions ended");
    if generated {
        println!("password (shown once): {password}");
    }
    Ok(())
}

pub fn list(checked: &Checked) -> Result<(), Failure> {
    let db = open(checked)?;
    for account in db.list().map_err(|e| Failure::Runtime(e.into()))? {
        let state = if account.disabled {
            "disabled".to_owned()
        } else if let Some(until) = &account.locked_until {
            format!("locked until {until}")
        } else {
            "active".to_owned()
        };
        println!("{}\t{}\t{state}", account.name, account.role.as_str());
    }
    Ok(())
}

pub fn add_token(checked: &Checked, name: &str, scopes: &[String]) -> Result<(), Failure> {
    let scopes = scopes
        .iter()
        .map(|s| s.parse::<web::api_tokens::Scope>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Failure::Usage(format!("--scope: {e}")))?;
    let db = open(checked)?;
    let token = db
        .add_token(name, &scopes, &operator())
        .map_err(|e| Failure::Usage(e.to_string()))?;
    println!("token {name} added; it is shown this once, keep it in the client's secret store:");
    println!("{token}");
    Ok(())
}

pub fn list_tokens(checked: &Checked) -> Result<(), Failure> {
    let db = open(checked)?;
    for t in db.tokens().map_err(|e| Failure::Runtime(e.into()))? {
        let scopes: Vec<&str> = t.scopes.iter().map(|s| s.as_str()).collect();
        println!(
            "{}\t{}\t{}\tcreated {} by {}\tlast used {}",
            t.name,
            scopes.join(","),
            if t.revoked { "revoked" } else { "live" },
            t.created_at,
            t.created_by,
            t.last_used_at.as_deref().unwrap_or("never")
        );
    }
    Ok(())
}

pub fn revoke_token(checked: &Checked, name: &str) -> Result<(), Failure> {
    open(checked)?
        .revoke_token(name)
        .map_err(|e| Failure::Usage(e.to_string()))?;
    println!("token {name} revoked");
    Ok(())
}
