//! Search indexes: a tantivy text (BM25) index, an on-disk approximate-nearest-neighbour
//! vector index (usearch HNSW), the filters both share, and hybrid fusion of their rankings.
//!
//! Every API here is synchronous and may take milliseconds to seconds (indexing, commits,
//! HNSW insertion, saves): callers on the async runtime go through `spawn_blocking` or a
//! dedicated worker. Both indexes are `Send + Sync` and take `&self`; they lock internally.
//!
//! The unit indexed is a chunk ([`IndexedChunk`]). Its text goes to [`text::TextIndex`], its
//! embedding with its filterable metadata ([`ChunkMeta`]) to [`vector::VectorIndex`]; the
//! two rankings meet in [`fusion::fuse`].

pub mod filter;
pub mod fusion;
pub mod service;
pub mod synthetic;
pub mod text;
mod tokenize;
pub mod vector;
mod vector_file;
mod vector_util;

use chrono::{DateTime, Utc};

use crate::types::Category;

pub use filter::SearchFilter;
pub use fusion::{FusedHit, FusionConfig, FusionMethod, fuse};
pub use text::{TextError, TextHit, TextIndex};
pub use vector::{VectorError, VectorHit, VectorIndex};

/// One chunk as the indexes see it: identity, filterable metadata and text.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexedChunk {
    /// Stable, globally unique chunk id (the store's primary key).
    pub chunk_id: String,
    /// The file the chunk belongs to.
    pub file_id: String,
    /// The tenant that owns the file; every search is confined to one tenant.
    pub tenant: String,
    /// The file's category, for category filters.
    pub category: Category,
    /// When the file was created, for date-range filters (indexed at one-second resolution).
    pub created_at: DateTime<Utc>,
    /// The chunk's text.
    pub text: String,
}

impl IndexedChunk {
    /// The chunk's metadata without its text, as the vector index keeps it.
    pub fn meta(&self) -> ChunkMeta {
        ChunkMeta {
            chunk_id: self.chunk_id.clone(),
            file_id: self.file_id.clone(),
            tenant: self.tenant.clone(),
            category: self.category,
            created_at: self.created_at.timestamp(),
        }
    }
}

/// The filterable identity of a chunk, kept by the vector index beside each vector.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChunkMeta {
    /// Stable, globally unique chunk id.
    pub chunk_id: String,
    /// The file the chunk belongs to.
    pub file_id: String,
    /// The owning tenant.
    pub tenant: String,
    /// The file's category.
    pub category: Category,
    /// Creation time of the file, unix seconds.
    pub created_at: i64,
}
