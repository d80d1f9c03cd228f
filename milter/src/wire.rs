//! Packet framing: a big-endian u32 length (counting the command byte and
//! the data), the command byte, the data. [`read_packet`] takes one packet
//! off a socket, [`split_packets`] does the same on a byte slice (for the
//! fuzz target and tests). Both hand back the command byte plus data,
//! which `command.rs` decodes; neither looks inside a packet.

use tokio::io::{AsyncRead, AsyncReadExt};

/// The size of the length field.
pub const LENGTH_BYTES: usize = 4;

/// The longest packet accepted by default (the length field's value:
/// command byte plus data), 1 MiB.
///
/// Why this number: body chunks are at most 65535 bytes, but a single
/// header can be longer (Postfix sends a header as one packet, and its
/// `header_size_limit` is 100 KiB by default), so libmilter's default data
/// limit of 65535 (MILTER_MAX_DATA_SIZE) would refuse real mail. The most
/// libmilter can be made to accept is MILTER_MDS_1M, 2^20 - 1 data bytes,
/// i.e. a length of exactly 2^20: an MTA that works with any libmilter
/// filter never sends more. Anything longer is refused before a byte of
/// it is buffered, which also bounds what one packet can make us allocate.
pub const MAX_PACKET: u32 = 1 << 20;

/// Why a packet could not be framed.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// Reading the socket failed.
    #[error("reading a milter packet: {0}")]
    Io(#[from] std::io::Error),
    /// The stream ended inside the length field.
    #[error("connection closed inside a packet's length field ({got} of 4 bytes)")]
    EofInLength {
        /// How many bytes of the length field arrived.
        got: usize,
    },
    /// The stream ended before the packet's declared length.
    #[error("connection closed inside a packet of {length} bytes ({got} received)")]
    EofInData {
        /// The declared length.
        length: u32,
        /// How many bytes of it arrived.
        got: usize,
    },
    /// A length of 0: not even a command byte.
    #[error("packet of length 0 (no command byte)")]
    EmptyPacket,
    /// A length over the limit.
    #[error("packet of {length} bytes is over the limit of {max} bytes{}", not_milter(*.length))]
    TooLong {
        /// The declared length.
        length: u32,
        /// The limit in force.
        max: u32,
    },
}

/// A length field whose four bytes are printable text is another protocol
/// spoken to the milter port (`GET ` is 1195725856 as a length): say what
/// came, which tells more than the number (walkH).
fn not_milter(length: u32) -> String {
    let bytes = length.to_be_bytes();
    if bytes.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        let text: String = bytes.iter().map(|&b| char::from(b)).collect();
        format!(" (the connection began with {text:?}: not the milter protocol; HTTP or SMTP sent to the milter port?)")
    } else {
        String::new()
    }
}

/// Checks a length field.
fn check_length(length: u32, max_len: u32) -> Result<(), WireError> {
    if length == 0 {
        return Err(WireError::EmptyPacket);
    }
    if length > max_len {
        return Err(WireError::TooLong {
            length,
            max: max_len,
        });
    }
    Ok(())
}

/// Reads one packet: `Ok(Some(command byte + data))`, or `Ok(None)` when
/// the stream ends cleanly before the first byte of a packet (the MTA
/// closed the connection between commands).
///
/// A stream that ends inside a packet, a length of 0 and a length over
/// `max_len` (usually [`MAX_PACKET`]) are errors; after one the
/// connection is out of step and must be closed. Memory grows with the
/// bytes that actually arrive, not with the declared length.
pub async fn read_packet<R: AsyncRead + Unpin>(
    r: &mut R,
    max_len: u32,
) -> Result<Option<Vec<u8>>, WireError> {
    let mut head = [0u8; LENGTH_BYTES];
    let mut got = 0;
    while got < LENGTH_BYTES {
        let n = r.read(&mut head[got..]).await?;
        if n == 0 {
            return if got == 0 {
                Ok(None)
            } else {
                Err(WireError::EofInLength { got })
            };
        }
        got += n;
    }
    let length = u32::from_be_bytes(head);
    check_length(length, max_len)?;
    let mut packet = Vec::new();
    let got = r.take(u64::from(length)).read_to_end(&mut packet).await?;
    if got < length as usize {
        return Err(WireError::EofInData { length, got });
    }
    Ok(Some(packet))
}

/// Splits a byte slice into packets the way [`read_packet`] reads a
/// stream: each item is one packet's command byte plus data. After the
/// first error (a truncated, empty or too long packet) the iterator ends,
/// as a session would close the connection.
pub fn split_packets(input: &[u8], max_len: u32) -> SplitPackets<'_> {
    SplitPackets {
        rest: input,
        max_len,
    }
}

/// The iterator of [`split_packets`].
#[derive(Debug, Clone)]
pub struct SplitPackets<'a> {
    /// What is left to split; emptied after an error.
    rest: &'a [u8],
    /// The longest packet accepted.
    max_len: u32,
}

impl<'a> SplitPackets<'a> {
    fn next_packet(&mut self) -> Result<&'a [u8], WireError> {
        let Some((head, body)) = self.rest.split_first_chunk::<LENGTH_BYTES>() else {
            return Err(WireError::EofInLength {
                got: self.rest.len(),
            });
        };
        let length = u32::from_be_bytes(*head);
        check_length(length, self.max_len)?;
        // length <= max_len <= u32::MAX fits usize on every target we build.
        let n = usize::try_from(length).unwrap_or(usize::MAX);
        if body.len() < n {
            return Err(WireError::EofInData {
                length,
                got: body.len(),
            });
        }
        let (packet, rest) = body.split_at(n);
        self.rest = rest;
        Ok(packet)
    }
}

impl<'a> Iterator for SplitPackets<'a> {
    type Item = Result<&'a [u8], WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let item = self.next_packet();
        if item.is_err() {
            self.rest = &[];
        }
        Some(item)
    }
}

/// Appends the framing of a packet with command `code` and `data`.
/// `data.len() + 1` must fit a u32; callers check their own, lower limit.
pub(crate) fn frame(out: &mut Vec<u8>, code: u8, data: &[u8]) {
    let length = u32::try_from(data.len() + 1).unwrap_or(u32::MAX);
    out.extend_from_slice(&length.to_be_bytes());
    out.push(code);
    out.extend_from_slice(data);
}
