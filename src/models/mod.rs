//! Local inference engines and their compute devices.
//!
//! Each engine owns its model on a dedicated OS thread behind a bounded queue (see `embed`'s design note);
//! nothing here runs model code on the async runtime.

/// Machines with at most this many cores get the small-machine thread defaults: one whisper thread, one chat
/// thread (with two, candle's spin-waiting matmul pool collapsed chat from 101 to 4-12 tok/s while files were
/// ingested) and every core for embedding (ingestion twice as fast, chat meanwhile 51-63 tok/s).
pub const SMALL_MACHINE_CORES: usize = 2;

/// Cores this process may use.
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

pub mod asr;
pub mod chat;
pub mod device;
pub mod embed;
pub mod math;
