//! Integration tests: the real `docpipe serve` binary over HTTP, with real extractors, database and
//! blob store. One test binary (modules below) so it links once.

mod api_errors;
mod audio;
mod auth;
mod batches;
mod chat;
mod chat_files;
mod chat_first_use;
mod common;
mod crafted;
mod document_batches;
mod embeddings;
mod files;
mod fixtures;
mod hostile;
mod layout;
mod limits;
mod monitoring;
mod openapi;
mod restart;
mod router;
mod search;
mod webhooks;
