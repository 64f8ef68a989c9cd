//! Benchmarks run by `make bench` (`docpipe bench ...`). Each returns a serialisable report; the CLI
//! writes it as JSON under `target/bench/`. (The quantized-kernel micro-benchmark stays next to its private
//! kernels in `models/chat/cpu_llm/qmat/bench.rs`.)

pub mod asr;
pub mod chat;
pub mod embed;
pub mod extract;
pub mod index;
pub mod isolation;
pub mod search;
