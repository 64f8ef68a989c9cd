//! Benchmarks run by `make bench` (`docpipe bench ...`). Each returns a serialisable report; the CLI
//! writes it as JSON under `target/bench/`.

pub mod asr;
pub mod chat;
pub mod extract;
pub mod isolation;
pub mod search;
