//! docpipe: upload files, get their text with locations, search and chat with them.
//! This file only wires the modules together; see DESIGN.md for the layering.

pub mod api;
pub mod app;
pub mod auth;
pub mod bench;
pub mod chunk;
pub mod cli;
pub mod config;
pub mod extract;
pub mod fuzzing;
pub mod index;
pub mod jobs;
pub mod models;
pub mod pipeline;
pub mod router;
pub mod store;
pub mod telemetry;
pub mod types;
