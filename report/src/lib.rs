//! The weekly access-review report (MHLW guideline: review the access logs regularly): what
//! the week's logs say, in sections a clinic director reads in five minutes, each with a
//! one-line summary on top. [`weekly::WeeklyReport::build`] counts with the store's
//! aggregations and reads the alert database; [`render`] writes it as HTML that email clients
//! show (no script, no external images), CSV or JSON, in Japanese or English.

pub mod alerts;
pub mod archive;
pub mod deliver;
pub mod dormant;
pub mod heat;
pub mod lang;
pub mod pdf;
pub mod period;
pub mod render;
pub mod schedule;
pub mod shown;
pub mod silence;
pub mod spot;
pub mod weekly;

pub use lang::Lang;
pub use period::{Period, Span};
pub use render::{Format, render, render_bytes};
pub use weekly::WeeklyReport;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("week: {0}")]
    BadWeek(String),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Alerts(#[from] alerting::db::AlertDbError),
    #[error(transparent)]
    Archive(#[from] archive::ArchiveError),
    #[error("the report cannot be written: {0}")]
    Render(String),
}
