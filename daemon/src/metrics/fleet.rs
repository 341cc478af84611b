//! Per-siren series, encoded from the fleet state at each scrape.
//!
//! The engine changes the fleet state under its write lock, so a scrape must never hold the
//! read lock while it writes to a scraper that reads slowly: the sirens are copied out a batch
//! at a time, the lock released, and the batch encoded.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use jiff::Timestamp;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

use crate::fleet::{FleetState, Siren};
use crate::liveness::State;

/// Sirens copied out of the lock at once.
const BATCH: usize = 256;

/// Encodes `siren_state`, `siren_info`, telemetry, link and per-zone series.
#[derive(Debug)]
pub(super) struct FleetCollector(pub(super) Arc<RwLock<FleetState>>);

/// A batch of sirens with their active faults, copied out of the fleet state.
struct Batch {
    sirens: Vec<Siren>,
    faults: Vec<(usize, &'static str, Timestamp)>,
    first: usize,
}

impl FleetCollector {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, FleetState> {
        self.0.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Calls `f` with every batch of sirens in fleet order; the lock is held only to copy.
    fn for_each_batch(&self, mut f: impl FnMut(&Batch) -> fmt::Result) -> fmt::Result {
        let mut first = 0;
        loop {
            let batch = {
                let fleet = self.read();
                let all = fleet.sirens();
                if first >= all.len() {
                    return Ok(());
                }
                let end = (first + BATCH).min(all.len());
                Batch { sirens: all[first..end].to_vec(), faults: fleet.faults_of(first..end).collect(), first }
            };
            first += batch.sirens.len();
            f(&batch)?;
        }
    }

    /// One gauge family with a sample (or none) per siren.
    fn family(
        &self,
        encoder: &mut DescriptorEncoder<'_>,
        name: &str,
        help: &str,
        unit: Option<&Unit>,
        mut sample: impl FnMut(&mut prometheus_client::encoding::MetricEncoder<'_>, &Siren) -> fmt::Result,
    ) -> fmt::Result {
        let mut m = encoder.encode_descriptor(name, help, unit, MetricType::Gauge)?;
        self.for_each_batch(|b| b.sirens.iter().try_for_each(|s| sample(&mut m, s)))
    }
}

#[allow(clippy::cast_precision_loss, reason = "timestamps and offsets in seconds fit f64")]
fn seconds(t: Timestamp) -> f64 {
    t.as_microsecond() as f64 / 1e6
}

impl Collector for FleetCollector {
    #[allow(clippy::too_many_lines, reason = "one family after the other, in exposition order")]
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        // The aggregates are small: computed under one short hold of the lock.
        let (links, counts) = {
            let fleet = self.read();
            (links_served(fleet.sirens()), fleet.counts_by_zone())
        };
        self.family(
            &mut encoder,
            "siren_state",
            "1 for the siren's current liveness state, 0 for the others",
            None,
            |m, s| {
                for state in State::ALL {
                    let labels = [("siren", s.id.as_str()), ("zone", s.zone.as_str()), ("state", state.as_str())];
                    m.encode_family(&labels)?.encode_gauge(&i64::from(state == s.liveness.state))?;
                }
                Ok(())
            },
        )?;
        // A gauge of 1 rather than an OpenMetrics info type: promtool and the classic text format
        // know gauges, not info.
        self.family(&mut encoder, "siren_info", "Static facts about a siren (always 1)", None, |m, s| {
            let (lat, lon, rating) =
                (format!("{:.6}", s.latitude), format!("{:.6}", s.longitude), format!("{:.1}", s.rating_db));
            // Its links joined with `+`: equal to `siren_link_info`'s `link` for a siren on one
            // link, so that Alertmanager inhibits its alerts while that link is down; a redundant
            // siren stays reachable when one link fails and is never inhibited.
            let links = s.liveness.links.join("+");
            let labels = [
                ("siren", s.id.as_str()),
                ("name", s.name.as_str()),
                ("zone", s.zone.as_str()),
                ("link", links.as_str()),
                ("latitude", lat.as_str()),
                ("longitude", lon.as_str()),
                ("rating_db", rating.as_str()),
            ];
            m.encode_family(&labels)?.encode_gauge(&1i64)
        })?;
        self.family(&mut encoder, "siren_battery", "Battery voltage", Some(&Unit::Volts), |m, s| match &s.telemetry {
            Some(t) => m.encode_family(&[("siren", s.id.as_str())])?.encode_gauge(&t.battery_volts),
            None => Ok(()),
        })?;
        self.family(
            &mut encoder,
            "siren_mains_present",
            "1 while the siren runs on mains power",
            None,
            |m, s| match &s.telemetry {
                Some(t) => m.encode_family(&[("siren", s.id.as_str())])?.encode_gauge(&i64::from(t.mains_present)),
                None => Ok(()),
            },
        )?;
        self.family(
            &mut encoder,
            "siren_door_open",
            "1 while the siren's cabinet door is open",
            None,
            |m, s| match &s.telemetry {
                Some(t) => m.encode_family(&[("siren", s.id.as_str())])?.encode_gauge(&i64::from(t.door_open)),
                None => Ok(()),
            },
        )?;
        {
            let help = "The zone a link serves: the deepest zone holding every siren on it (always 1)";
            let mut m = encoder.encode_descriptor("siren_link_info", help, None, MetricType::Gauge)?;
            for (link, zone) in &links {
                m.encode_family(&[("link", link.as_str()), ("zone", zone.as_str())])?.encode_gauge(&1i64)?;
            }
        }
        {
            let help = "When each active fault was raised (as first seen by this run of the daemon), Unix time";
            let mut m = encoder.encode_descriptor(
                "siren_fault_since_timestamp",
                help,
                Some(&Unit::Seconds),
                MetricType::Gauge,
            )?;
            self.for_each_batch(|b| {
                for &(index, fault, at) in &b.faults {
                    let s = &b.sirens[index - b.first];
                    let labels = [("siren", s.id.as_str()), ("zone", s.zone.as_str()), ("fault", fault)];
                    m.encode_family(&labels)?.encode_gauge(&seconds(at))?;
                }
                Ok(())
            })?;
        }
        let help = "1 while the siren is heard but does not answer commands (since the first one unanswered)";
        self.family(&mut encoder, "siren_command_path_failing", help, None, |m, s| match &s.command_fault {
            Some(_) => m.encode_family(&[("siren", s.id.as_str()), ("zone", s.zone.as_str())])?.encode_gauge(&1i64),
            None => Ok(()),
        })?;
        let help = "1 while an operator's acknowledgement of the siren's condition is in force: its alerts stop paging";
        let now = Timestamp::now();
        self.family(&mut encoder, "siren_acknowledged", help, None, |m, s| {
            let acknowledged = s.acknowledged.as_ref().is_some_and(|a| a.in_force(now));
            m.encode_family(&[("siren", s.id.as_str())])?.encode_gauge(&i64::from(acknowledged))
        })?;
        let help = "1 while the siren is armed or sounding and no campaign of sirend ordered it: an alarm";
        self.family(&mut encoder, "siren_uncommanded_activation", help, None, |m, s| {
            m.encode_family(&[("siren", s.id.as_str())])?.encode_gauge(&i64::from(s.uncommanded))
        })?;
        let help = "1 while a crew has the siren in maintenance: it does not page and is not sounded by tests";
        let book = self.read().maintenance().clone();
        self.family(&mut encoder, "siren_in_maintenance", help, None, |m, s| {
            let in_maintenance = book.covering(&s.id, s.zone.as_str(), now).is_some();
            m.encode_family(&[("siren", s.id.as_str())])?.encode_gauge(&i64::from(in_maintenance))
        })?;
        let help = "When the siren last sent a status report, Unix time";
        self.family(&mut encoder, "siren_last_seen_timestamp", help, Some(&Unit::Seconds), |m, s| {
            match &s.telemetry {
                Some(t) => m.encode_family(&[("siren", s.id.as_str())])?.encode_gauge(&seconds(t.at)),
                None => Ok(()),
            }
        })?;
        let help = "Siren clock minus daemon clock at its last status report";
        self.family(&mut encoder, "siren_clock_offset", help, Some(&Unit::Seconds), |m, s| match &s.telemetry {
            #[allow(clippy::cast_precision_loss, reason = "offsets in seconds fit f64")]
            Some(t) => m.encode_family(&[("siren", s.id.as_str())])?.encode_gauge(&(t.clock_offset_us as f64 / 1e6)),
            None => Ok(()),
        })?;
        {
            let zones: std::collections::BTreeSet<&str> = counts.keys().map(|(z, _)| z.as_str()).collect();
            let help = "Sirens per zone (every level of the hierarchy) and state";
            let mut m = encoder.encode_descriptor("siren_zone_sirens", help, None, MetricType::Gauge)?;
            for zone in zones {
                for state in State::ALL {
                    let n = counts.get(&(zone.to_owned(), state)).copied().unwrap_or(0);
                    m.encode_family(&[("zone", zone), ("state", state.as_str())])?
                        .encode_gauge(&i64::try_from(n).unwrap_or(i64::MAX))?;
                }
            }
        }
        Ok(())
    }
}

/// `siren_link_info`'s rows: each link with the zone it serves (the deepest zone holding all
/// its sirens), so that link alerts route to the crew of that zone.
fn links_served(sirens: &[Siren]) -> BTreeMap<String, String> {
    let mut served: BTreeMap<&str, &str> = BTreeMap::new();
    for s in sirens {
        for link in s.liveness.links.iter() {
            let zone = s.zone.as_str();
            served.entry(&**link).and_modify(|common| *common = common_zone(common, zone)).or_insert(zone);
        }
    }
    served.into_iter().map(|(l, z)| (l.to_owned(), z.to_owned())).collect()
}

/// The deepest zone path that is `a` or an ancestor of it and `b` or an ancestor of it.
fn common_zone<'a>(a: &'a str, b: &str) -> &'a str {
    let mut end = 0;
    for (x, y) in a.split('/').zip(b.split('/')) {
        if x != y {
            break;
        }
        end += x.len() + 1;
    }
    &a[..end.saturating_sub(1).min(a.len())]
}

#[cfg(test)]
mod tests {
    use super::common_zone;

    #[test]
    fn common_zone_is_the_deepest_shared_ancestor() {
        assert_eq!(common_zone("hz/c/t1", "hz/c/t2"), "hz/c");
        assert_eq!(common_zone("hz/c", "hz/c"), "hz/c");
        assert_eq!(common_zone("hz/c", "hz/cx"), "hz");
        assert_eq!(common_zone("hz", "sh"), "");
    }
}
