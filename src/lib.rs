//! docpipe: upload files, get their text with locations, search and chat with them.
//! This file only wires the modules together; see DESIGN.md for the layering.

pub mod extract;
pub mod types;
