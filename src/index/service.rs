//! The search service: keeps the text and vector indexes in step with the store, and answers searches.
//!
//! What runs where: index writes and queries are synchronous and CPU-bound, so every call goes through
//! `spawn_blocking`; query embedding goes to the embedder's own thread. Both indexes lock internally. The
//! vector index is saved by a background task when it has changed (and at shutdown); after a crash the
//! start-up consistency check re-adds from SQLite (which holds every chunk's text and embedding) whatever
//! the indexes lost, and removes what SQLite does not have.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{
    FusedHit, FusionConfig, IndexedChunk, SearchFilter, TextHit, TextIndex, VectorIndex, fuse,
};
use crate::index::vector::VectorEntry;
use crate::models::embed::{DIMENSIONS, EmbedError, EmbedderHandle, MODEL_NAME};
use crate::store::{FileChunk, Store, StoreError, StoredChunk, chunk_id, parse_chunk_id};
use crate::types::{Category, FileRecord};

/// How often a changed vector index is written to disk.
const SAVE_INTERVAL: Duration = Duration::from_secs(5);
/// Candidates fetched from each index per requested result, before fusion.
const CANDIDATES_PER_RESULT: usize = 4;
/// At least this many candidates are fetched from each index.
const MIN_CANDIDATES: usize = 50;
/// Texts sent to the embedder per request by ingestion (its own batch size, so progress moves).
pub const EMBED_BATCH: usize = 32;
/// Wait before retrying when the embedder's queue is full.
const BUSY_RETRY: Duration = Duration::from_millis(50);
/// Characters of a chunk shown as snippet when the text index did not produce one.
const PLAIN_SNIPPET_CHARS: usize = 240;

/// Search modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchMode {
    /// BM25 and vector search fused.
    Hybrid,
    /// Keywords only.
    Bm25,
    /// Meaning only.
    Vector,
}

/// A search.
#[derive(Debug, Clone)]
pub struct SearchRequest {
    pub query: Option<String>,
    pub query_vector: Option<Vec<f32>>,
    pub top_k: usize,
    pub mode: SearchMode,
    /// Results whose cosine similarity is below this are dropped (vector and hybrid modes).
    pub similarity_threshold: Option<f32>,
    pub filter: SearchFilter,
    pub fusion: FusionConfig,
}

/// One result.
#[derive(Debug, Clone)]
pub struct SearchResult {
    pub chunk_id: String,
    pub file: FileChunk,
    pub snippet: String,
    pub scores: FusedHit,
}

/// Search and indexing failures.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("{0}")]
    BadRequest(String, &'static str),
    #[error("the embedding model is busy; retry shortly")]
    Overloaded,
    #[error("embedding failed: {0}")]
    Embed(EmbedError),
    #[error("text index: {0}")]
    Text(#[from] super::TextError),
    #[error("vector index: {0}")]
    Vector(#[from] super::VectorError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("index task failed: {0}")]
    Task(String),
}

impl From<EmbedError> for SearchError {
    fn from(e: EmbedError) -> SearchError {
        match e {
            EmbedError::Overloaded | EmbedError::ShutDown => SearchError::Overloaded,
            other => SearchError::Embed(other),
        }
    }
}

/// What the consistency check changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Repair {
    pub text_added: usize,
    pub text_removed: usize,
    pub vectors_added: usize,
    pub vectors_removed: usize,
}

/// Both indexes plus what is needed to fill and query them.
#[derive(Clone)]
pub struct SearchService {
    text: Arc<TextIndex>,
    vectors: Arc<VectorIndex>,
    embedder: EmbedderHandle,
    store: Store,
    dirty: Arc<AtomicBool>,
}

/// Where the indexes live under the data directory.
pub fn index_paths(data_dir: &Path) -> (PathBuf, PathBuf) {
    let dir = data_dir.join("index");
    (dir.join("text"), dir.join("vectors.usearch"))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, SearchError> + Send + 'static,
) -> Result<T, SearchError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| SearchError::Task(e.to_string()))?
}

impl SearchService {
    /// Opens (creating) the indexes under `data_dir`. A vector index built by another model is refused.
    pub fn open(
        data_dir: &Path,
        embedder: EmbedderHandle,
        store: Store,
    ) -> Result<SearchService, SearchError> {
        let (text_dir, vector_path) = index_paths(data_dir);
        std::fs::create_dir_all(&text_dir).map_err(|e| SearchError::Task(e.to_string()))?;
        let text = TextIndex::open(&text_dir)?;
        let vectors = VectorIndex::open(&vector_path, DIMENSIONS, MODEL_NAME)?;
        Ok(SearchService {
            text: Arc::new(text),
            vectors: Arc::new(vectors),
            embedder,
            store,
            dirty: Arc::new(AtomicBool::new(false)),
        })
    }

    /// The embedder (for `/v1/embeddings` and ingestion).
    pub fn embedder(&self) -> &EmbedderHandle {
        &self.embedder
    }

    /// Embeds many texts in batches (waiting while the embedder is busy), reporting (done, total).
    pub async fn embed_all(
        &self,
        texts: Vec<String>,
        progress: &(dyn Fn(u64, u64) + Sync),
    ) -> Result<Vec<Vec<f32>>, SearchError> {
        let total = texts.len() as u64;
        let mut out = Vec::with_capacity(texts.len());
        for batch in texts.chunks(EMBED_BATCH) {
            out.extend(self.embed_waiting(batch.to_vec()).await?);
            progress(out.len() as u64, total);
        }
        Ok(out)
    }

    /// Embeds texts, waiting (instead of failing) while the embedder's queue is full.
    pub async fn embed_waiting(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, SearchError> {
        loop {
            match self.embedder.embed(texts.clone()).await {
                Err(EmbedError::Overloaded) => tokio::time::sleep(BUSY_RETRY).await,
                other => return Ok(other?.into_vectors()),
            }
        }
    }

    /// Chunks in the text index and vectors in the vector index.
    pub fn sizes(&self) -> (u64, usize) {
        (self.text.len(), self.vectors.len())
    }

    /// Saves the vector index every few seconds while it changes, until `stop` is cancelled (then once more).
    pub fn spawn_saver(
        &self,
        stop: tokio_util::sync::CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                let stopping = tokio::select! {
                    () = stop.cancelled() => true,
                    () = tokio::time::sleep(SAVE_INTERVAL) => false,
                };
                if let Err(e) = me.save().await {
                    tracing::error!(error = %e, "cannot save the vector index");
                }
                if stopping {
                    break;
                }
            }
        })
    }

    /// Writes the vector index to disk when it changed.
    pub async fn save(&self) -> Result<(), SearchError> {
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let vectors = Arc::clone(&self.vectors);
        blocking(move || Ok(vectors.save()?)).await
    }

    /// Indexes a file's chunks under the file (text and vectors), replacing what was there.
    pub async fn index_file(
        &self,
        file: &FileRecord,
        chunks: Vec<StoredChunk>,
    ) -> Result<(), SearchError> {
        let (text, vectors) = (Arc::clone(&self.text), Arc::clone(&self.vectors));
        let indexed: Vec<(IndexedChunk, Vec<f32>)> = chunks
            .into_iter()
            .map(|c| {
                let chunk = IndexedChunk {
                    chunk_id: chunk_id(&file.id, c.ordinal),
                    file_id: file.id.clone(),
                    tenant: file.tenant.clone(),
                    category: file.category,
                    created_at: file.created_at,
                    text: c.text,
                };
                (chunk, c.embedding)
            })
            .collect();
        let added = indexed.len() as u64;
        let (tenant, file_id) = (file.tenant.clone(), file.id.clone());
        blocking(move || {
            text.delete_file(&tenant, &file_id);
            vectors.remove_file(&tenant, &file_id)?;
            add_to_indexes(&text, &vectors, &indexed)?;
            text.commit()?;
            Ok(())
        })
        .await?;
        self.dirty.store(true, Ordering::Release);
        crate::telemetry::metrics::chunks_indexed(added);
        Ok(())
    }

    /// Removes a file's chunks from both indexes.
    pub async fn remove_file(&self, tenant: &str, file_id: &str) -> Result<(), SearchError> {
        let (text, vectors) = (Arc::clone(&self.text), Arc::clone(&self.vectors));
        let (tenant, file_id) = (tenant.to_owned(), file_id.to_owned());
        blocking(move || {
            text.delete_file(&tenant, &file_id);
            text.commit()?;
            vectors.remove_file(&tenant, &file_id)?;
            Ok(())
        })
        .await?;
        self.dirty.store(true, Ordering::Release);
        self.save().await
    }

    /// Makes both indexes hold exactly the chunks of the store's ready files.
    pub async fn check_consistency(&self) -> Result<Repair, SearchError> {
        let want: HashSet<String> = self.store.ready_chunk_ids().await?.into_iter().collect();
        let (text, vectors) = (Arc::clone(&self.text), Arc::clone(&self.vectors));
        let (in_text, in_vectors) =
            blocking(move || Ok((text.chunk_ids()?, vectors.chunk_ids()))).await?;
        let mut repair = Repair::default();
        let text_extra: Vec<String> = in_text.difference(&want).cloned().collect();
        let vector_extra: Vec<String> = in_vectors.difference(&want).cloned().collect();
        let missing: Vec<String> = want
            .iter()
            .filter(|id| !in_text.contains(*id) || !in_vectors.contains(*id))
            .cloned()
            .collect();
        repair.text_removed = text_extra.len();
        repair.vectors_removed = vector_extra.len();
        // Re-add what is missing from either index, file by file, from SQLite.
        let mut files: Vec<&str> = missing
            .iter()
            .filter_map(|id| parse_chunk_id(id).map(|(f, _)| f))
            .collect();
        files.sort_unstable();
        files.dedup();
        let mut readd = Vec::new();
        for file_id in files {
            let Some(file) = self.store.file_any_tenant(file_id).await? else {
                continue;
            };
            let key = crate::store::doc_key(&file.tenant, &file.sha256, &file.format);
            readd.push((file, self.store.chunks_of_doc(&key).await?));
        }
        for (_, chunks) in &readd {
            repair.text_added += chunks.len();
            repair.vectors_added += chunks.len();
        }
        let (text, vectors) = (Arc::clone(&self.text), Arc::clone(&self.vectors));
        if !text_extra.is_empty() || !vector_extra.is_empty() {
            blocking(move || {
                text.delete_chunks(&text_extra);
                text.commit()?;
                for id in &vector_extra {
                    vectors.remove_chunk(id)?;
                }
                Ok(())
            })
            .await?;
            self.dirty.store(true, Ordering::Release);
        }
        for (file, chunks) in readd {
            self.index_file(&file, chunks).await?;
        }
        self.save().await?;
        Ok(repair)
    }

    /// Runs a search.
    pub async fn search(&self, req: SearchRequest) -> Result<Vec<SearchResult>, SearchError> {
        let query = req
            .query
            .as_deref()
            .map(str::trim)
            .filter(|q| !q.is_empty())
            .map(str::to_owned);
        if req.mode == SearchMode::Bm25 && query.is_none() {
            return Err(SearchError::BadRequest(
                "mode bm25 needs a text `query`".into(),
                "query",
            ));
        }
        if query.is_none() && req.query_vector.is_none() {
            return Err(SearchError::BadRequest(
                "give a `query` or a `query_vector`".into(),
                "query",
            ));
        }
        let vector = match (&req.query_vector, req.mode) {
            (_, SearchMode::Bm25) => None,
            (Some(v), _) => unit(v),
            (None, _) => {
                let text = query.clone().unwrap_or_default();
                let mut e = self.embedder.embed(vec![text]).await?;
                e.items.pop().map(|item| item.vector)
            }
        };
        let candidates = (req.top_k * CANDIDATES_PER_RESULT).max(MIN_CANDIDATES);
        let (text, vectors) = (Arc::clone(&self.text), Arc::clone(&self.vectors));
        let filter = req.filter.clone();
        let bm25_query = if req.mode == SearchMode::Vector {
            None
        } else {
            query.clone()
        };
        let (text_hits, vector_hits) = blocking(move || {
            let t = match bm25_query {
                Some(q) => text.search(&q, &filter, candidates)?,
                None => Vec::new(),
            };
            let v = match vector {
                Some(v) => vectors.search(&v, candidates, &filter)?,
                None => Vec::new(),
            };
            Ok((t, v))
        })
        .await?;
        let threshold = req.similarity_threshold;
        let bm25: Vec<(String, f32)> = text_hits
            .iter()
            .map(|h| (h.chunk_id.clone(), h.score))
            .collect();
        let vec_scores: Vec<(String, f32)> = vector_hits
            .iter()
            .filter(|h| threshold.is_none_or(|t| h.similarity >= t))
            .map(|h| (h.chunk_id.clone(), h.similarity))
            .collect();
        let mut fused = match req.mode {
            SearchMode::Bm25 => fuse(&bm25, &[], &req.fusion),
            SearchMode::Vector => fuse(&[], &vec_scores, &req.fusion),
            SearchMode::Hybrid => {
                let mut f = fuse(&bm25, &vec_scores, &req.fusion);
                // With a threshold, a keyword-only hit cannot prove it is similar enough.
                if threshold.is_some() {
                    f.retain(|h| h.vector.is_some());
                }
                f
            }
        };
        fused.truncate(req.top_k);
        let ids: Vec<String> = fused.iter().map(|h| h.chunk_id.clone()).collect();
        let chunks = self.store.chunks_by_ids(&req.filter.tenant, &ids).await?;
        let mut out = Vec::with_capacity(fused.len());
        for (hit, file) in fused.into_iter().filter_map(|h| {
            let (file_id, ordinal) = parse_chunk_id(&h.chunk_id)?;
            let c = chunks
                .iter()
                .find(|c| c.file_id == file_id && c.chunk.ordinal == ordinal)?;
            Some((h, c.clone()))
        }) {
            let snippet = text_hits
                .iter()
                .find(|t: &&TextHit| t.chunk_id == hit.chunk_id)
                .map(|t| t.snippet.clone())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| file.chunk.text.chars().take(PLAIN_SNIPPET_CHARS).collect());
            out.push(SearchResult {
                chunk_id: hit.chunk_id.clone(),
                file,
                snippet,
                scores: hit,
            });
        }
        Ok(out)
    }

    /// Rebuilds both indexes from SQLite, re-embedding every chunk with the current model.
    pub async fn reindex(
        data_dir: &Path,
        embedder: EmbedderHandle,
        store: Store,
    ) -> Result<usize, SearchError> {
        let (text_dir, vector_path) = index_paths(data_dir);
        let _ = std::fs::remove_dir_all(&text_dir);
        let _ = std::fs::remove_file(&vector_path);
        let service = SearchService::open(data_dir, embedder, store.clone())?;
        let mut total = 0;
        for file in store.ready_files().await? {
            let key = crate::store::doc_key(&file.tenant, &file.sha256, &file.format);
            let mut chunks = store.chunks_of_doc(&key).await?;
            let texts: Vec<String> = chunks.iter().map(|c| c.text.clone()).collect();
            let vectors = service.embed_all(texts, &|_, _| {}).await?;
            for (c, v) in chunks.iter_mut().zip(vectors) {
                c.embedding = v;
            }
            store.save_chunks(&key, &chunks, MODEL_NAME).await?;
            total += chunks.len();
            service.index_file(&file, chunks).await?;
        }
        service.save().await?;
        Ok(total)
    }
}

fn add_to_indexes(
    text: &TextIndex,
    vectors: &VectorIndex,
    chunks: &[(IndexedChunk, Vec<f32>)],
) -> Result<(), SearchError> {
    let only: Vec<IndexedChunk> = chunks.iter().map(|(c, _)| c.clone()).collect();
    text.add(&only)?;
    let metas: Vec<_> = chunks.iter().map(|(c, _)| c.meta()).collect();
    let entries: Vec<VectorEntry<'_>> = chunks
        .iter()
        .zip(&metas)
        .filter(|((_, v), _)| v.len() == DIMENSIONS)
        .map(|((_, v), meta)| VectorEntry { meta, vector: v })
        .collect();
    vectors.add(&entries)?;
    Ok(())
}

/// Builds a filter from API-level pieces.
pub fn filter(
    tenant: &str,
    file_ids: Option<Vec<String>>,
    categories: Option<Vec<Category>>,
    after: Option<DateTime<Utc>>,
    before: Option<DateTime<Utc>>,
) -> SearchFilter {
    let mut f = SearchFilter::tenant(tenant);
    if let Some(ids) = file_ids {
        f = f.with_file_ids(ids);
    }
    if let Some(c) = categories {
        f = f.with_categories(c);
    }
    f.with_created(after, before)
}

/// `v` scaled to length 1 (computed in f64, so vectors of tiny or huge components keep their direction);
/// `None` for a zero vector, which has no direction: nothing is similar to it.
fn unit(v: &[f32]) -> Option<Vec<f32>> {
    let norm = v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    #[expect(
        clippy::cast_possible_truncation,
        reason = "components of a unit vector fit in f32"
    )]
    (norm > 0.0 && norm.is_finite())
        .then(|| v.iter().map(|x| (f64::from(*x) / norm) as f32).collect())
}
