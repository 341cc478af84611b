//! A `tokio_util::codec` adapter for serial streams: `Framed<SerialPort, SerialCodec>` yields
//! each received frame (or the reason an envelope was refused) and writes envelopes that a
//! session sealed. For tools such as line monitors; the sessions themselves take raw bytes.

use bytes::{Buf, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::decoder::SerialDecoder;
use crate::error::RejectReason;

/// Serial envelope codec.
#[derive(Debug, Default)]
pub struct SerialCodec {
    decoder: SerialDecoder,
}

impl Decoder for SerialCodec {
    /// A bare frame (SYNC and CRC removed), not yet authenticated, or why an envelope was
    /// refused. Refusals are items, not errors, so a noisy line does not end the stream.
    type Item = Result<Vec<u8>, RejectReason>;
    type Error = std::io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, Self::Error> {
        if !src.is_empty() {
            self.decoder.push(src);
            src.advance(src.len());
        }
        Ok(self.decoder.next_frame().map(|r| r.map(<[u8]>::to_vec)))
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, Self::Error> {
        if let Some(item) = self.decode(src)? {
            return Ok(Some(item));
        }
        // Nothing more will arrive: what is left is a truncated frame or noise.
        self.decoder.line_idle();
        Ok(self.decoder.next_frame().map(|r| r.map(<[u8]>::to_vec)))
    }
}

impl Encoder<&[u8]> for SerialCodec {
    type Error = std::io::Error;

    /// Writes an envelope exactly as a session sealed it.
    fn encode(&mut self, envelope: &[u8], dst: &mut BytesMut) -> Result<(), Self::Error> {
        dst.extend_from_slice(envelope);
        Ok(())
    }
}
