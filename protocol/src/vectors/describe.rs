//! The vectors' messages written out with the field names of docs/protocol.md §5, so an
//! implementer reads them against the specification's tables, not this crate's types.

use core::fmt::Write as _;

use crate::message::{Message, SoundingReport, StatusReport};
use crate::pattern::Pattern;

use super::Vector;

/// `CamelCase` as the specification writes names: `SCREAMING_SNAKE`.
fn spec_name(debug: &impl core::fmt::Debug) -> String {
    let camel = format!("{debug:?}");
    let mut out = String::new();
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// An enumeration value: its code and its name.
fn code<T: Copy + core::fmt::Debug>(value: T, as_u8: impl Fn(T) -> u8) -> String {
    format!("{} (`{}`)", as_u8(value), spec_name(&value))
}

fn pattern(p: &Pattern) -> String {
    let steps: Vec<String> =
        p.steps.iter().map(|s| format!("{} `{}` {} ms", s.tone as u8, spec_name(&s.tone), s.duration_ms)).collect();
    format!("repeats {}, step_count {}, steps: {}", p.repeats, p.steps.len(), steps.join("; "))
}

/// Rows of `field | value` for one message.
fn fields(message: &Message) -> Vec<(String, String)> {
    let mut rows: Vec<(String, String)> = Vec::new();
    let mut row = |name: &str, value: String| rows.push((name.to_owned(), value));
    match message {
        Message::StatusRequest => {}
        Message::TimeSyncRequest { t1_us } => row("t1", format!("{t1_us} µs")),
        Message::ClockAdjust { sync_t1_us, offset_us } => {
            row("sync_t1", format!("{sync_t1_us} µs"));
            row("offset", format!("{offset_us} µs"));
        }
        Message::TimeSet { master_time_us } => row("master_time", format!("{master_time_us} µs")),
        Message::ArmTest(a) | Message::ArmLive(a) => {
            row("campaign", a.campaign.to_string());
            row("start", format!("{} µs", a.start_us));
            segments(&a.segments, &mut row);
        }
        Message::TriggerTest(t) | Message::TriggerLive(t) => {
            row("campaign", t.campaign.to_string());
            row("not_after", format!("{} µs", t.not_after_us));
            segments(&t.segments, &mut row);
        }
        Message::Cancel { campaign } | Message::Stop { campaign } | Message::ReportRequest { campaign } => {
            row("campaign", campaign.to_string());
        }
        Message::Ack { counter, message_type } => {
            row("counter", counter.to_string());
            row("type", format!("{message_type:#04x}"));
        }
        Message::Nak { counter, message_type, code: nak } => {
            row("counter", counter.to_string());
            row("type", format!("{message_type:#04x}"));
            row("code", code(*nak, |c| c as u8));
        }
        Message::StatusReport(s) => status(s, &mut row),
        Message::TimeSyncReply { t1_us, t2_us, t3_us } => {
            row("t1", format!("{t1_us} µs"));
            row("t2", format!("{t2_us} µs"));
            row("t3", format!("{t3_us} µs"));
        }
        Message::SoundingReport(r) => sounding(r, &mut row),
        Message::Heartbeat(h) => {
            row("boot_seq", h.boot_seq.to_string());
            row("uptime_s", h.uptime_s.to_string());
            row("state", code(h.state, |c| c as u8));
            row("faults", faults(h.faults.0));
        }
        Message::Birth(b) => {
            row("boot_seq", b.boot_seq.to_string());
            row("firmware", format!("{}.{}.{}", b.firmware.major, b.firmware.minor, b.firmware.patch));
            row("capabilities", format!("{:#06x}", b.capabilities));
            row("heartbeat_period_s", b.heartbeat_period_s.to_string());
        }
        Message::Death(d) => {
            row("boot_seq", d.boot_seq.to_string());
            row("cause", code(d.cause, |c| c as u8));
        }
    }
    rows
}

fn segments(segments: &[crate::message::Segment], row: &mut impl FnMut(&str, String)) {
    row("segment_count", segments.len().to_string());
    for (i, s) in segments.iter().enumerate() {
        row(&format!("segments[{i}]"), format!("offset {} ms; {}", s.offset_ms, pattern(&s.pattern)));
    }
}

fn faults(bits: u32) -> String {
    let names: Vec<String> = crate::message::FaultBits::NAMES
        .iter()
        .filter(|(bit, _)| bits & bit != 0)
        .map(|(_, name)| format!("`{}`", name.to_ascii_uppercase()))
        .collect();
    if names.is_empty() { format!("{bits:#010x} (none)") } else { format!("{bits:#010x} ({})", names.join(", ")) }
}

fn status(s: &StatusReport, row: &mut impl FnMut(&str, String)) {
    row("boot_seq", s.boot_seq.to_string());
    row("uptime_s", s.uptime_s.to_string());
    row("device_time", format!("{} µs", s.device_time_us));
    row("state", code(s.state, |c| c as u8));
    row("active_campaign", s.active_campaign.to_string());
    row("mains", format!("{} ({})", u8::from(s.mains_present), if s.mains_present { "present" } else { "absent" }));
    row("battery_mv", s.battery_mv.to_string());
    row("battery_soc", s.battery_soc.to_string());
    row("charger", code(s.charger, |c| c as u8));
    row("cabinet_temp", format!("{} (0.1 °C)", s.cabinet_temp_dc));
    row("door", format!("{} ({})", u8::from(s.door_open), if s.door_open { "open" } else { "closed" }));
    row("speaker", code(s.speaker, |c| c as u8));
    row("clock_sync_age_s", s.clock_sync_age_s.to_string());
    row("firmware", format!("{}.{}.{}", s.firmware.major, s.firmware.minor, s.firmware.patch));
    row("link_quality", s.link_quality.to_string());
    row("faults", faults(s.faults.0));
    row("last_campaign", s.last_campaign.to_string());
    row("last_outcome", code(s.last_outcome, |c| c as u8));
    row("channel_count", s.channels.len().to_string());
    let channels: Vec<String> = s.channels.iter().map(|c| code(*c, |c| c as u8)).collect();
    row("channels", channels.join(", "));
}

fn sounding(r: &SoundingReport, row: &mut impl FnMut(&str, String)) {
    row("campaign", r.campaign.to_string());
    row("outcome", code(r.outcome, |c| c as u8));
    row("live", format!("{} ({})", u8::from(r.live), if r.live { "LIVE" } else { "TEST" }));
    row("started", format!("{} µs", r.started_us));
    row("ended", format!("{} µs", r.ended_us));
    row("sound_level", format!("{} (0.1 dB(C))", r.sound_level_ddb));
    row("amplifier_current", format!("{} mA", r.amplifier_current_ma));
}

/// The vector's header and message as docs/protocol.md §11 prints them (Markdown).
pub fn describe(v: &Vector) -> String {
    let ty = v.message.message_type();
    let mut out = format!(
        "`{}` (type {:#04x}); destination {:#06x}, source {:#06x}, key_id {:#06x}, counter {}",
        spec_name(&ty),
        ty as u8,
        v.destination.0,
        v.source.0,
        v.key_id.0,
        v.counter
    );
    let rows = fields(&v.message);
    if !rows.is_empty() {
        out.push_str("\n\n| field | value |\n|---|---|\n");
        for (name, value) in rows {
            let _ = writeln!(out, "| `{name}` | {value} |");
        }
        out.pop();
    }
    out
}
