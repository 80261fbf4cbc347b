//! `clock_check`: a sender whose times are far from when its events arrive (or a whole number
//! of hours off: another zone), and the appliance's own clock going back. Checked on arrival.

use chrono::Duration;
use store::Event;

use crate::Severity;
use crate::engine::{Engine, human};
use crate::{Alert, RuleId};

impl Engine {
    /// Clocks that are wrong: a live sender whose times are far from when its events arrive,
    /// and the appliance's own clock going back.
    pub(crate) fn clocks(&mut self, event: &Event) -> Vec<Alert> {
        let mut out = Vec::new();
        let live = event.log_source.as_deref().is_some_and(|s| {
            s.starts_with("udp://") || s.starts_with("tcp://") || s.starts_with("tls://")
        });
        let skew = event.timestamp - event.ingested;
        let sender = event
            .host
            .as_deref()
            .or(event.log_source.as_deref())
            .unwrap_or("-");
        let wrong_zone = live
            .then(|| {
                self.zones
                    .observe(sender, event.timestamp, event.ingested, self.clinic.zone)
            })
            .flatten();
        if let Some(w) = wrong_zone {
            let how = if w.hours < 0 { "behind" } else { "ahead of" };
            let mut a = self.alert(RuleId::ClockCheck, Severity::Low, event, self.clinic.site_of(event).as_deref(), format!(
                "{sender} の時刻は受信時刻よりちょうど {} 時間{}; タイムゾーンの指定がない時刻を {} で書いている可能性があります。[[syslog.sources]] の timezone を設定してください。 / {sender} sends times exactly {} hours {how} when they arrive: it probably writes times without a zone in {}; set its timezone under [[syslog.sources]]",
                w.hours.abs(),
                if w.hours < 0 { "遅れています" } else { "進んでいます" },
                w.zone,
                w.hours.abs(),
                w.zone,
            ));
            a.user = None;
            a.subject = Some(sender.to_owned());
            a.first_seen = event.ingested;
            a.last_seen = event.ingested;
            out.push(a);
        } else if live && (skew > Duration::minutes(10) || skew < -Duration::days(1)) {
            let host = event.host.as_deref().unwrap_or("an unnamed sender");
            let how = if skew > Duration::zero() {
                format!("{} ahead", human(skew))
            } else {
                format!("{} behind", human(-skew))
            };
            let mut a = self.alert(RuleId::ClockCheck, Severity::Low, event, self.clinic.site_of(event).as_deref(), format!(
                "{host} sends times {how} of when its events arrive (event dated {}, received {}); its clock needs setting, and its events' times cannot be trusted",
                self.clinic.local(event.timestamp).format("%Y-%m-%d %H:%M"),
                self.clinic.local(event.ingested).format("%Y-%m-%d %H:%M"),
            ));
            a.user = None;
            a.subject = Some(host.to_owned());
            a.first_seen = event.ingested;
            a.last_seen = event.ingested;
            out.push(a);
        }
        if let Some(last) = self.last_ingested
            && event.ingested < last - Duration::minutes(5)
        {
            let mut a = self.alert(RuleId::ClockCheck, Severity::Medium, event, None, format!(
                "this appliance's clock went back {} (from {} to {}); check its time source (NTP)",
                human(last - event.ingested),
                self.clinic.local(last).format("%Y-%m-%d %H:%M"),
                self.clinic.local(event.ingested).format("%Y-%m-%d %H:%M"),
            ));
            a.user = None;
            a.subject = Some("this appliance".to_owned());
            a.first_seen = event.ingested;
            a.last_seen = event.ingested;
            out.push(a);
        }
        self.last_ingested = Some(
            self.last_ingested
                .map_or(event.ingested, |l| l.max(event.ingested)),
        );
        out
    }
}
