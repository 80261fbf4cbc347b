//! The detections, one file each. A detection's config section shares the `enabled` and
//! `severity` keys ([`detection_config!`]); its check is a method of [`Engine`] in its own file,
//! over the per-user state the detections share, reached through the small [`Detection`] trait.

/// A detection's config section: `enabled` (default true) and `severity`, written once, then
/// its own settings with their defaults.
macro_rules! detection_config {
    (
        $(#[$meta:meta])*
        $name:ident, $severity:ident {
            $($(#[$fmeta:meta])* $field:ident: $ty:ty = $default:expr,)*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, serde::Deserialize)]
        #[serde(deny_unknown_fields, default)]
        pub struct $name {
            pub enabled: bool,
            pub severity: $crate::Severity,
            $($(#[$fmeta])* pub $field: $ty,)*
        }

        impl Default for $name {
            fn default() -> Self {
                $name {
                    enabled: true,
                    severity: $crate::Severity::$severity,
                    $($field: $default,)*
                }
            }
        }
    };
}

/// A [`Detection`]: a unit struct, when the config has it on, and its check. The short forms
/// name the `[detections.*]` section whose `enabled` switches it (or `always`, for the checks
/// whose state is followed even while they are off) and the [`Engine`] method that checks,
/// called with the event, the account, its name and its site.
macro_rules! detection {
    ($(#[$meta:meta])* $name:ident, on: $section:ident, check: $method:ident) => {
        detection! {
            $(#[$meta])*
            $name,
            enabled: |config| config.$section.enabled,
            check: |engine, event, who| engine
                .$method(event, who.user, who.name, who.site)
                .into_iter()
                .collect(),
        }
    };
    ($(#[$meta:meta])* $name:ident, always, check: $method:ident) => {
        detection! {
            $(#[$meta])*
            $name,
            enabled: |_config| true,
            check: |engine, event, who| engine
                .$method(event, who.user, who.name, who.site)
                .into_iter()
                .collect(),
        }
    };
    (
        $(#[$meta:meta])*
        $name:ident,
        enabled: |$config:ident| $enabled:expr,
        check: |$engine:ident, $event:ident, $who:ident| $check:expr $(,)?
    ) => {
        $(#[$meta])*
        pub(crate) struct $name;

        impl super::Detection for $name {
            fn enabled($config: &super::DetectionsConfig) -> bool {
                $enabled
            }

            fn check(
                $engine: &mut crate::engine::Engine,
                $event: &store::Event,
                $who: &crate::engine::Who<'_>,
            ) -> Vec<crate::Alert> {
                $check
            }
        }
    };
}

pub mod bulk;
pub mod clocks;
pub mod concurrent;
pub mod custom;
pub mod logins;
pub mod off_hours;
pub mod outside_role;
pub mod records;
pub mod spray;
pub mod zones;

use serde::Deserialize;
use store::Event;

pub use self::bulk::BulkConfig;
pub use self::concurrent::ConcurrentConfig;
pub use self::custom::{CustomRule, CustomRuleConfig};
pub use self::logins::{FailuresConfig, NewWorkstationConfig};
pub use self::off_hours::OffHoursConfig;
pub use self::outside_role::RoleCheckConfig;
pub use self::records::{Appointments, SensitiveConfig, TreatmentConfig};
pub use self::spray::SprayConfig;
use crate::Alert;
use crate::clinic::Invalid;
use crate::engine::{Engine, Who};

/// One detection evaluated per person on event time: whether the config has it on, and its
/// check (which raises its rule, or rules for the pairs that share what they follow).
pub(crate) trait Detection {
    fn enabled(config: &DetectionsConfig) -> bool;
    fn check(engine: &mut Engine, event: &Event, who: &Who<'_>) -> Vec<Alert>;
}

/// `[detections]`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectionsConfig {
    /// How long a live event is held so that events arriving out of order are evaluated in
    /// event-time order (see [`crate::reorder`]); alerts come this much later. Read at start.
    pub lateness_seconds: u32,
    pub off_hours_login: OffHoursConfig,
    pub access_outside_role: RoleCheckConfig,
    pub concurrent_sessions: ConcurrentConfig,
    pub bulk_export: BulkConfig,
    pub login_failures: FailuresConfig,
    pub password_spray: SprayConfig,
    pub new_workstation: NewWorkstationConfig,
    pub sensitive_records: SensitiveConfig,
    pub treatment_relationship: TreatmentConfig,
}

impl Default for DetectionsConfig {
    fn default() -> Self {
        DetectionsConfig {
            lateness_seconds: 10,
            off_hours_login: OffHoursConfig::default(),
            access_outside_role: RoleCheckConfig::default(),
            concurrent_sessions: ConcurrentConfig::default(),
            bulk_export: BulkConfig::default(),
            login_failures: FailuresConfig::default(),
            password_spray: SprayConfig::default(),
            new_workstation: NewWorkstationConfig::default(),
            sensitive_records: SensitiveConfig::default(),
            treatment_relationship: TreatmentConfig::default(),
        }
    }
}

/// Longest `detections.lateness_seconds`: alerts come this much later, and events are held in
/// memory meanwhile.
pub const MAX_LATENESS_SECONDS: u32 = 3600;

impl DetectionsConfig {
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.lateness_seconds > MAX_LATENESS_SECONDS {
            return Err((
                "detections.lateness_seconds".into(),
                format!("at most {MAX_LATENESS_SECONDS} (alerts are held this long)"),
            ));
        }
        if self.bulk_export.max_records == 0 {
            return Err((
                "detections.bulk_export.max_records".into(),
                "at least 1".into(),
            ));
        }
        if self.bulk_export.distinct_patients == 0 || self.bulk_export.window_minutes == 0 {
            return Err((
                "detections.bulk_export.distinct_patients".into(),
                "at least 1, with window_minutes at least 1".into(),
            ));
        }
        if self.password_spray.accounts < 2 || self.password_spray.window_minutes == 0 {
            return Err((
                "detections.password_spray.accounts".into(),
                "at least 2, with window_minutes at least 1".into(),
            ));
        }
        if self.concurrent_sessions.session_idle_minutes == 0 {
            return Err((
                "detections.concurrent_sessions.session_idle_minutes".into(),
                "at least 1".into(),
            ));
        }
        Ok(())
    }
}
