//! Incremental decoder for the serial envelope.
//!
//! Takes bytes in chunks of any size, finds SYNC, waits for the announced length, checks the
//! CRC and hands out bare frames. Anything else is skipped byte by byte so that the decoder
//! resynchronises on the next real frame after noise, a collision or a partial frame. It never
//! buffers more than one maximal envelope beyond the chunk it was just given.

use crate::error::RejectReason;
use crate::frame::{CRC_LEN, CRC16, Header, MAX_ENVELOPE, SYNC};

/// Incremental serial envelope decoder.
#[derive(Debug, Default)]
pub struct SerialDecoder {
    buf: Vec<u8>,
    /// Start of the unconsumed bytes in `buf`.
    pos: usize,
    noise_bytes: u64,
    /// The line went idle after the last byte: a partial envelope will never complete.
    idle: bool,
}

impl SerialDecoder {
    /// An empty decoder.
    pub fn new() -> Self {
        Self { buf: Vec::with_capacity(MAX_ENVELOPE * 2), pos: 0, noise_bytes: 0, idle: false }
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
        self.idle = false;
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
        Some(Ok(&self.buf[start..start + frame_len]))
    }

    /// Tells the decoder the line went idle (an inter-frame gap): a partial envelope still
    /// buffered can never complete. The following calls to [`Self::next_frame`] report it as
    /// truncated and then return any complete frames behind it (a false SYNC in noise can
    /// announce a length that swallowed a real frame).
    pub fn line_idle(&mut self) {
        self.idle = true;
    }

    fn incomplete(&mut self) -> Option<Result<&[u8], RejectReason>> {
        if self.idle {
            self.pos += 1;
            Some(Err(RejectReason::Truncated))
        } else {
            None
        }
    }
}
