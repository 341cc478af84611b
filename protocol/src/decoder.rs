//! Incremental decoder for the serial envelope.
//!
//! Takes bytes in chunks of any size, finds SYNC, waits for the announced length, checks the
//! CRC and hands out bare frames. Anything else is skipped byte by byte so that the decoder
//! resynchronises on the next real frame after noise, a collision or a partial frame. It never
//! buffers more than one maximal envelope beyond the chunk it was just given.

use std::ops::Range;
use std::time::{Duration, Instant};

use crate::error::RejectReason;
use crate::frame::{CRC_LEN, CRC16, Header, MAX_ENVELOPE, SYNC};

/// The shortest idle gap a receiver that reads through an operating system should use
/// (docs/protocol.md §3.1): USB-serial adapters hand bytes over in bursts (every 16 ms by
/// default on the common ones), and a reading task can be scheduled late, so a gap of a few
/// byte times is seen inside envelopes that were sent without a pause.
pub const MIN_HOST_IDLE_GAP: Duration = Duration::from_millis(100);

/// 3.5 byte times at `baud` (8N1: 10 bits a byte), the gap of the wire itself.
pub fn wire_idle_gap(baud: u32) -> Duration {
    Duration::from_nanos(35_000_000_000 / u64::from(baud.max(1)))
}

/// The idle gap a host receiver uses at `baud` when none is configured: the larger of 3.5
/// byte times and [`MIN_HOST_IDLE_GAP`].
pub fn default_idle_gap(baud: u32) -> Duration {
    wire_idle_gap(baud).max(MIN_HOST_IDLE_GAP)
}

/// Incremental serial envelope decoder.
#[derive(Debug, Default)]
pub struct SerialDecoder {
    buf: Vec<u8>,
    /// Start of the unconsumed bytes in `buf`.
    pos: usize,
    noise_bytes: u64,
    /// The line went idle after the last byte: a partial envelope will never complete.
    idle: bool,
    /// With a gap, bytes carry their arrival time and a pause longer than it ends whatever
    /// envelope was incomplete (§3.1).
    idle_gap: Option<Duration>,
    last_byte_at: Option<Instant>,
    /// Bytes that arrived after an idle gap, held until the bytes before it are resolved.
    after_gap: Vec<u8>,
}

impl SerialDecoder {
    /// An empty decoder that learns of idle lines only through [`Self::line_idle`].
    pub fn new() -> Self {
        Self { buf: Vec::with_capacity(MAX_ENVELOPE * 2), ..Self::default() }
    }

    /// An empty decoder that applies the idle rule itself: an incomplete envelope is
    /// truncated once `gap` passes without a byte (bytes come in with [`Self::push_at`],
    /// time with [`Self::poll_idle`]).
    pub fn with_idle_gap(gap: Duration) -> Self {
        Self { idle_gap: Some(gap), ..Self::new() }
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.compact();
        self.buf.extend_from_slice(bytes);
        self.idle = false;
    }

    /// Appends bytes that arrived at `at`. If the line was idle for longer than the gap
    /// before them, an incomplete envelope buffered is truncated first: the next calls to
    /// [`Self::next_frame`] resolve the bytes before the gap, then go on with these.
    pub fn push_at(&mut self, bytes: &[u8], at: Instant) {
        if bytes.is_empty() {
            return;
        }
        let unresolved = self.idle && self.pos < self.buf.len();
        let gap_passed = unresolved || self.idle_deadline().is_some_and(|deadline| at > deadline);
        self.last_byte_at = Some(at);
        if gap_passed || !self.after_gap.is_empty() {
            self.idle = true;
            self.after_gap.extend_from_slice(bytes);
        } else {
            self.push(bytes);
        }
    }

    /// When the bytes buffered become a truncated envelope if nothing more arrives: `None`
    /// without a gap, or with nothing pending.
    pub fn idle_deadline(&self) -> Option<Instant> {
        let gap = self.idle_gap?;
        let pending = self.pos < self.buf.len() && !self.idle;
        pending.then_some(self.last_byte_at? + gap)
    }

    /// Tells the decoder the time is `now`; returns whether the gap has passed with an
    /// incomplete envelope buffered, which the next calls to [`Self::next_frame`] then report.
    pub fn poll_idle(&mut self, now: Instant) -> bool {
        if self.idle_deadline().is_some_and(|deadline| now >= deadline) {
            self.idle = true;
            return true;
        }
        false
    }

    fn compact(&mut self) {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
    }

    /// Bytes skipped outside any frame since the decoder was made (line noise).
    pub fn noise_bytes(&self) -> u64 {
        self.noise_bytes
    }

    /// Whether a partial envelope is waiting for more bytes.
    pub fn is_mid_frame(&self) -> bool {
        self.buf[self.pos..].starts_with(&SYNC)
    }

    /// The next complete frame (without SYNC and CRC), a rejected envelope, or `None` when
    /// more bytes are needed.
    pub fn next_frame(&mut self) -> Option<Result<&[u8], RejectReason>> {
        loop {
            match self.next_in_buffer() {
                Some(result) => return Some(result.map(|range| &self.buf[range])),
                None if !self.after_gap.is_empty() => {
                    // Everything before the gap is resolved: the bytes after it start afresh.
                    let after = std::mem::take(&mut self.after_gap);
                    self.push(&after);
                    self.after_gap = after;
                    self.after_gap.clear();
                }
                None => return None,
            }
        }
    }

    fn next_in_buffer(&mut self) -> Option<Result<Range<usize>, RejectReason>> {
        let data = &self.buf[self.pos..];
        let Some(at) = data.windows(SYNC.len()).position(|w| w == SYNC) else {
            // Keep a trailing first SYNC byte: the second may be in the next chunk.
            let keep = usize::from(!self.idle && data.last() == Some(&SYNC[0]));
            let skipped = data.len() - keep;
            self.noise_bytes += skipped as u64;
            self.pos += skipped;
            return None;
        };
        self.noise_bytes += at as u64;
        self.pos += at;
        let data = &self.buf[self.pos..];
        let Some(peeked) = Header::peek(&data[SYNC.len()..]) else {
            return self.incomplete();
        };
        let header = match peeked {
            Ok(h) => h,
            Err(reason) => {
                self.pos += 1;
                return Some(Err(reason));
            }
        };
        let frame_len = header.frame_len();
        let total = SYNC.len() + frame_len + CRC_LEN;
        if data.len() < total {
            return self.incomplete();
        }
        let frame = &data[SYNC.len()..SYNC.len() + frame_len];
        let crc = u16::from_be_bytes([data[total - 2], data[total - 1]]);
        if CRC16.checksum(frame) != crc {
            // Maybe a SYNC inside noise, maybe a damaged frame: skip one byte and look again.
            self.pos += 1;
            return Some(Err(RejectReason::BadCrc));
        }
        let start = self.pos + SYNC.len();
        self.pos += total;
        Some(Ok(start..start + frame_len))
    }

    /// Tells the decoder the line went idle (an inter-frame gap): a partial envelope still
    /// buffered can never complete. The following calls to [`Self::next_frame`] report it as
    /// truncated and then return any complete frames behind it (a false SYNC in noise can
    /// announce a length that swallowed a real frame).
    pub fn line_idle(&mut self) {
        self.idle = true;
    }

    fn incomplete(&mut self) -> Option<Result<Range<usize>, RejectReason>> {
        if self.idle {
            self.pos += 1;
            Some(Err(RejectReason::Truncated))
        } else {
            None
        }
    }
}
