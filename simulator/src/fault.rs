//! Faults a simulated controller can suffer, by hand, from scenario files or at random.

use serde::Deserialize;

/// One fault or repair applied to a siren. In scenario files these are written in kebab case:
/// `fault = "mains-loss"` or `fault = { clock-step = { ms = 1500 } }`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum Fault {
    MainsLoss,
    MainsReturn,
    /// The battery keeps `capacity_factor` of its capacity.
    BatteryAgeing {
        capacity_factor: f64,
    },
    ChargerFault,
    ChargerRepaired,
    /// One amplifier channel fails, or every channel when `channel` is omitted.
    AmplifierFailure {
        channel: Option<u8>,
    },
    AmplifierRepaired,
    SpeakerOpen,
    SpeakerRepaired,
    DoorOpen,
    DoorClosed,
    CoolingFailure,
    CoolingRepaired,
    /// The clock jumps by `ms` (positive: ahead).
    ClockStep {
        ms: i64,
    },
    /// The clock drifts by `ppm` from now on (negative: falls behind, as a mains-locked clock
    /// does when the grid frequency sags).
    ClockDrift {
        ppm: f64,
    },
    Reboot,
    /// The controller hangs: it stops answering and publishing, but its MQTT connection is not
    /// closed (the broker notices only by keep-alive).
    SilentDeath,
    /// A hung controller recovers.
    Revive,
    /// The device's link breaks: serial drop cut, or network gone (MQTT connection dropped).
    LinkLoss,
    LinkRestore,
    /// Answers come `ms` later than the normal turnaround.
    SlowAnswers {
        ms: u64,
    },
    /// The device is provisioned with the wrong key: nothing it sends verifies.
    WrongKey,
    RightKey,
    /// An attacker replays the frames this device sent recently.
    ReplayAttack,
    /// The device's receive counter jumps `by` ahead of what the master sends (a restored
    /// backup, a second controller): it drops every command as a replay, silently.
    CounterAhead {
        by: u32,
    },
    /// Bytes on this device's serial line are corrupted at `rate` per byte (0..=1).
    LineNoise {
        rate: f64,
    },
    /// A faulty controller sounds by itself (the air-raid signal), as if triggered for
    /// `campaign` (0: a campaign number of its own making).
    SelfTrigger {
        #[serde(default)]
        campaign: u32,
    },
    /// Someone with the siren's key (stolen from a controller) arms it for `campaign`, to
    /// sound the air-raid signal `in_s` seconds from now.
    RogueArm {
        campaign: u32,
        in_s: u32,
    },
}

impl Fault {
    /// The faults that random fault injection draws from, with the repair that follows each.
    pub fn random_pairs() -> Vec<(Fault, Fault)> {
        vec![
            (Fault::MainsLoss, Fault::MainsReturn),
            (Fault::ChargerFault, Fault::ChargerRepaired),
            (Fault::AmplifierFailure { channel: None }, Fault::AmplifierRepaired),
            (Fault::AmplifierFailure { channel: Some(0) }, Fault::AmplifierRepaired),
            (Fault::SpeakerOpen, Fault::SpeakerRepaired),
            (Fault::DoorOpen, Fault::DoorClosed),
            (Fault::SilentDeath, Fault::Revive),
            (Fault::LinkLoss, Fault::LinkRestore),
            (Fault::Reboot, Fault::Revive),
        ]
    }
}
