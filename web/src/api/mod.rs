//! One module per API area.

pub mod alerts;
pub mod delivery;
pub mod health;
pub mod ingest;
pub mod rules;
pub mod search;
