//! What happens to [`rules::Alert`]s once raised.
//!
//! [`runner`] runs the rules on every accepted event (live, after an import, in a backtest);
//! [`db::AlertDb`] stores alerts (SQLite) and their triage; delivery to email, chat and the SOC
//! is not built yet (until then each new alert is a log line).

pub mod db;
pub mod runner;
