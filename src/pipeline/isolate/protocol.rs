//! The wire between the server and an extraction worker process: frames of a 4-byte big-endian length
//! followed by that many bytes. Control messages are JSON; a job's document bytes follow its header as one
//! raw frame, so the file is copied once and never encoded.
//!
//! server -> worker: `Job` (JSON), then the file's bytes (raw).
//! worker -> server: `Hello` once at start, then per job any number of `Progress` and one `Done`.

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};

use crate::extract::{ExtractError, Limits};
use crate::types::Document;

/// Bumped whenever a message changes; a worker of another version is refused (an upgraded binary on disk).
pub const PROTOCOL_VERSION: u32 = 1;
/// Largest control frame a worker accepts from the server (a job header).
pub const MAX_HEADER_FRAME: u32 = 1024 * 1024;

/// One file to extract.
#[derive(Debug, Serialize, Deserialize)]
pub struct Job {
    /// [`crate::extract::Format::name`] of the detected format.
    pub format: String,
    /// The category's limits.
    pub limits: Limits,
    /// Wall-clock budget in milliseconds, counted from when the worker has read the bytes.
    pub timeout_ms: u64,
}

/// A message from the worker.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Reply {
    /// Sent once when the worker is ready for jobs.
    Hello { protocol: u32 },
    /// Work advances (throttled by the worker).
    Progress { done: u64, total: u64, unit: String },
    /// The job's outcome and what the worker has used so far in its life.
    Done {
        result: Result<Document, ExtractError>,
        /// CPU seconds (user + system) the worker process has used since it started.
        cpu_secs: f64,
    },
}

/// Writes one frame.
pub fn write_frame(w: &mut impl Write, payload: &[u8]) -> io::Result<()> {
    let len = u32::try_from(payload.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame larger than 4 GiB"))?;
    w.write_all(&len.to_be_bytes())?;
    w.write_all(payload)
}

/// Writes one JSON frame and flushes.
pub fn write_json(w: &mut impl Write, msg: &impl Serialize) -> io::Result<()> {
    let payload = serde_json::to_vec(msg).map_err(io::Error::other)?;
    write_frame(w, &payload)?;
    w.flush()
}

/// Reads one frame of at most `max` bytes; `Ok(None)` at a clean end of stream.
pub fn read_frame(r: &mut impl Read, max: u32) -> io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len);
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes is over the limit of {max}"),
        ));
    }
    let mut payload = vec![0u8; len as usize];
    r.read_exact(&mut payload)?;
    Ok(Some(payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_oversized_ones_are_refused() {
        let mut buf = Vec::new();
        write_json(&mut buf, &Reply::Hello { protocol: 7 }).expect("write");
        write_frame(&mut buf, b"raw bytes").expect("write");
        let mut r = buf.as_slice();
        let hello: Reply =
            serde_json::from_slice(&read_frame(&mut r, 1024).expect("read").expect("frame"))
                .expect("json");
        assert!(matches!(hello, Reply::Hello { protocol: 7 }));
        assert_eq!(
            read_frame(&mut r, 1024).expect("read").as_deref(),
            Some(b"raw bytes".as_slice())
        );
        assert!(read_frame(&mut r, 1024).expect("eof").is_none());
        let mut big = Vec::new();
        write_frame(&mut big, &[0u8; 100]).expect("write");
        assert!(read_frame(&mut big.as_slice(), 99).is_err());
    }

    #[test]
    fn errors_cross_the_wire_with_their_codes() {
        let done = Reply::Done {
            result: Err(ExtractError::LimitExceeded("too many cells".into())),
            cpu_secs: 0.5,
        };
        let back: Reply =
            serde_json::from_slice(&serde_json::to_vec(&done).expect("json")).expect("json");
        match back {
            Reply::Done {
                result: Err(e),
                cpu_secs,
            } => {
                assert_eq!(e.code(), "limit_exceeded");
                assert!(e.to_string().contains("too many cells"));
                assert!((cpu_secs - 0.5).abs() < 1e-9);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
