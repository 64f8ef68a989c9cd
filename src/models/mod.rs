//! Local inference engines and their compute devices.
//!
//! Each engine owns its model on a dedicated OS thread behind a bounded queue (see `embed`'s design note);
//! nothing here runs model code on the async runtime.

pub mod asr;
pub mod chat;
pub mod device;
pub mod embed;
