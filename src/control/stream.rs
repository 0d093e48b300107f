//! The body of `POST /read`: what a reading command writes, sent while it is
//! written, then its exit code. The exit code comes last, once the command
//! is done, so it cannot be a header; and output and messages interleave,
//! so they travel as frames: `[tag u8][length u32, big endian][payload]`.
//!
//! | tag | payload |
//! |-----|---------|
//! | `o` | bytes for stdout |
//! | `e` | UTF-8 text for stderr |
//! | `x` | one byte: the exit code; the last frame |
//!
//! A body that ends without an `x` frame was cut off: the command did not finish.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::Exit;

/// Largest payload a frame may announce: a guard against a garbled stream.
pub const MAX_FRAME: u32 = 16 * 1024 * 1024;

const OUT: u8 = b'o';
const ERR: u8 = b'e';
const END: u8 = b'x';
const HEADER: usize = 5;

/// One frame of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Output for stdout.
    Out(Bytes),
    /// Messages for stderr.
    Err(String),
    /// The command ended with this exit code.
    End(Exit),
}

/// Why a stream could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("unknown frame tag {0}")]
    UnknownTag(u8),
    #[error("a frame of {0} bytes, over the limit of {MAX_FRAME}")]
    TooLarge(u32),
    #[error("an end frame without a valid exit code")]
    BadEnd,
}

/// The bytes of a frame.
pub fn encode(frame: &Frame) -> Bytes {
    let code = match frame {
        Frame::End(exit) => [*exit as u8],
        _ => [0],
    };
    let (tag, payload): (u8, &[u8]) = match frame {
        Frame::Out(b) => (OUT, b),
        Frame::Err(s) => (ERR, s.as_bytes()),
        Frame::End(_) => (END, &code),
    };
    let mut out = BytesMut::with_capacity(HEADER + payload.len());
    out.put_u8(tag);
    // INVARIANT: writers split their output into chunks far below 4 GiB.
    out.put_u32(payload.len() as u32);
    out.put_slice(payload);
    out.freeze()
}

/// Reads frames out of the chunks of a body, whatever their boundaries.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: BytesMut,
}

impl Decoder {
    /// Adds a chunk of the body.
    pub fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// The next complete frame, if the chunks so far hold one.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        let Some(header) = self.buf.get(..HEADER) else {
            return Ok(None);
        };
        let tag = header[0];
        let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
        if len > MAX_FRAME {
            return Err(FrameError::TooLarge(len));
        }
        if self.buf.len() < HEADER + len as usize {
            return Ok(None);
        }
        self.buf.advance(HEADER);
        let payload = self.buf.split_to(len as usize).freeze();
        match tag {
            OUT => Ok(Some(Frame::Out(payload))),
            ERR => Ok(Some(Frame::Err(
                String::from_utf8_lossy(&payload).into_owned(),
            ))),
            END => match payload.as_ref() {
                [code] => Exit::from_code(*code)
                    .map(|e| Some(Frame::End(e)))
                    .ok_or(FrameError::BadEnd),
                _ => Err(FrameError::BadEnd),
            },
            other => Err(FrameError::UnknownTag(other)),
        }
    }

    /// Whether bytes of an unfinished frame are left.
    pub fn has_partial(&self) -> bool {
        !self.buf.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_survive_any_chunking() {
        let frames = [
            Frame::Out(Bytes::from_static(b"{\"a\":1}\n")),
            Frame::Err("warning: no items of target shop\n".into()),
            Frame::Out(Bytes::new()),
            Frame::End(Exit::Store),
        ];
        let wire: Vec<u8> = frames.iter().flat_map(|f| encode(f).to_vec()).collect();
        for size in [1, 2, 3, 7, wire.len()] {
            let mut d = Decoder::default();
            let mut got = Vec::new();
            for chunk in wire.chunks(size) {
                d.push(chunk);
                while let Some(f) = d.next_frame().unwrap() {
                    got.push(f);
                }
            }
            assert_eq!(got, frames, "chunks of {size}");
            assert!(!d.has_partial());
        }
    }

    #[test]
    fn a_garbled_stream_is_an_error_not_a_huge_allocation() {
        let mut d = Decoder::default();
        d.push(&[b'o', 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(d.next_frame(), Err(FrameError::TooLarge(u32::MAX)));
        let mut d = Decoder::default();
        d.push(&[b'x', 0, 0, 0, 1, 99]);
        assert_eq!(d.next_frame(), Err(FrameError::BadEnd));
    }
}
