//! What happens to [`rules::Alert`]s once raised.
//!
//! [`runner`] runs the rules on every accepted event (live, after an import, in a backtest);
//! [`db::AlertDb`] stores alerts (SQLite) and their triage, and writes each change to the
//! [`outbox`] in the same transaction; [`delivery`] routes the outbox to the [`channels`]
//! (email, chat, signed webhooks, syslog to the SOC) with grouping, silences and retries.

pub mod channels;
pub mod db;
pub mod delivery;
pub mod document;
pub mod mailbox;
pub mod outbox;
mod record;
pub mod runner;
mod schema;
pub mod silences;
pub mod triage;
