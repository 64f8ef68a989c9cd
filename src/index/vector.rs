//! The vector index: usearch HNSW (inner product on L2-normalised f32 vectors) with per-vector
//! chunk metadata, persisted to one file.
//!
//! Keys: the index assigns each vector a fresh `u64` key (never reused) and keeps the
//! `key -> ChunkMeta` and `chunk_id -> key` maps itself, so callers deal in chunk ids only;
//! re-adding a chunk id replaces its vector. The maps and the graph are saved together in one
//! file (`vector_file.rs`) by [`VectorIndex::save`]; between saves a crash loses recent
//! changes, which the start-up check ([`VectorIndex::chunk_ids`] against the store) repairs.
//!
//! Concurrency: one `RwLock`. Searches take it shared, adds/removes exclusively; saves
//! serialize under the shared lock and write the file after releasing it. usearch needs one
//! "thread slot" per concurrent call, so concurrent calls are capped at [`THREAD_SLOTS`].
//! Everything here blocks: call it from `spawn_blocking`.
//!
//! Search strategy: below [`EXACT_SEARCH_MAX`] candidate vectors an exact scan is both exact
//! and faster than the graph; above it, HNSW (filtered by the graph walk when a filter is
//! given), falling back to an exact scan of the candidates when a selective filter leaves the
//! graph walk short of `k` results.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError, RwLock};

use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

use crate::index::vector_file::{self, FORMAT_VERSION, VectorFileHeader};
use crate::index::vector_util::{Slots, dot, new_slots, normalised, top_k};
use crate::index::{ChunkMeta, SearchFilter};

/// HNSW graph degree (usearch "connectivity", faiss "M").
pub const HNSW_CONNECTIVITY: usize = 32;
/// Candidate list size while inserting (faiss "efConstruction").
pub const HNSW_EXPANSION_ADD: usize = 128;
/// Candidate list size while searching (faiss "efSearch"). On 100,000 real MiniLM-embedded chunks
/// (`docpipe bench search`) recall@10 against exact search was 0.926 at 64 and 0.941-0.968 at 128 (graph builds
/// vary); 256 gave 0.961 and 0.969 on two builds with hybrid search at p50 2.2 ms.
pub const HNSW_EXPANSION_SEARCH: usize = 256;
/// At or below this many candidates, search scans exactly. Measured on 2 cores with 384-d
/// clustered vectors (`bench::tests::crossover`): exact and HNSW are equally fast near 500
/// vectors (~25k queries/s each); at 1k HNSW is 1.2x faster (16.7k vs 13.6k/s) but both take
/// well under 0.1 ms, so exact results are worth it; at 2k HNSW is 1.8x faster.
pub const EXACT_SEARCH_MAX: usize = 1_000;
/// Concurrent usearch calls allowed (usearch preallocates per-thread search contexts).
pub const THREAD_SLOTS: usize = 16;
/// Initial capacity; it doubles as vectors arrive.
const MIN_CAPACITY: usize = 1_024;
/// Batches at least this large are inserted by several threads.
const PARALLEL_ADD_MIN: usize = 256;

/// Errors of the vector index.
#[derive(Debug, thiserror::Error)]
pub enum VectorError {
    /// The file was built by another model or with other dimensions.
    #[error(
        "vector index {path} was built by model {found_model:?} with {found_dims} dimensions, \
         but {expected_model:?} with {expected_dims} dimensions is configured; \
         re-embed into a new index file or configure the original model"
    )]
    ModelMismatch {
        path: PathBuf,
        found_model: String,
        found_dims: usize,
        expected_model: String,
        expected_dims: usize,
    },
    /// A vector has the wrong number of dimensions.
    #[error("vector has {got} dimensions, the index expects {expected}")]
    Dimensions { expected: usize, got: usize },
    /// A vector is all zeros or not finite.
    #[error("vector cannot be normalised (zero or non-finite)")]
    NotNormalisable,
    /// A search without a tenant.
    #[error("a search filter must name a tenant")]
    MissingTenant,
    /// `save` on an index that has no file.
    #[error("this vector index is in memory only")]
    NotPersistent,
    /// The file could not be read or written, or is corrupt.
    #[error("vector index file {path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    /// usearch reported an error.
    #[error("usearch: {0}")]
    Usearch(String),
}

/// Converts usearch's C++ exceptions into [`VectorError::Usearch`].
trait OrUsearch<T> {
    fn or_usearch(self) -> Result<T, VectorError>;
}

impl<T, E: std::fmt::Display> OrUsearch<T> for Result<T, E> {
    fn or_usearch(self) -> Result<T, VectorError> {
        self.map_err(|e| VectorError::Usearch(e.to_string()))
    }
}

/// One vector to add, with its chunk's metadata.
#[derive(Debug, Clone, Copy)]
pub struct VectorEntry<'a> {
    /// The chunk the vector embeds.
    pub meta: &'a ChunkMeta,
    /// Its embedding (normalised on insertion).
    pub vector: &'a [f32],
}

/// One result of a vector search.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorHit {
    /// The chunk found.
    pub chunk_id: String,
    /// Its file.
    pub file_id: String,
    /// Its internal key.
    pub key: u64,
    /// Cosine similarity to the query, in [-1, 1].
    pub similarity: f32,
}

struct Inner {
    index: Index,
    entries: HashMap<u64, ChunkMeta>,
    by_chunk: HashMap<String, u64>,
    /// Keys of each tenant's vectors, so a search sizes its candidates without scanning every entry.
    by_tenant: HashMap<String, HashSet<u64>>,
    /// Keys of each file's vectors.
    by_file: HashMap<String, HashSet<u64>>,
    next_key: u64,
}

/// An HNSW vector index of chunk embeddings for one embedding model.
pub struct VectorIndex {
    path: Option<PathBuf>,
    model: String,
    dims: usize,
    inner: RwLock<Inner>,
    slots: Slots,
    save_lock: Mutex<()>,
}

fn new_usearch(dims: usize) -> Result<Index, VectorError> {
    let options = IndexOptions {
        dimensions: dims,
        metric: MetricKind::IP,
        quantization: ScalarKind::F32,
        connectivity: HNSW_CONNECTIVITY,
        expansion_add: HNSW_EXPANSION_ADD,
        expansion_search: HNSW_EXPANSION_SEARCH,
        multi: false,
    };
    let index = Index::new(&options).or_usearch()?;
    index
        .reserve_capacity_and_threads(MIN_CAPACITY, THREAD_SLOTS)
        .or_usearch()?;
    Ok(index)
}

impl VectorIndex {
    /// Opens the index file at `path`, or starts an empty index there when the file does not
    /// exist (written on the first [`VectorIndex::save`]). Refuses a file built by another
    /// model or with other dimensions.
    pub fn open(path: &Path, dims: usize, model: &str) -> Result<VectorIndex, VectorError> {
        let file_err = |source| VectorError::File {
            path: path.to_owned(),
            source,
        };
        vector_file::remove_stale_temp(path);
        if !path.exists() {
            let mut index = VectorIndex::in_memory(dims, model)?;
            index.path = Some(path.to_owned());
            return Ok(index);
        }
        let header = vector_file::read_header(path).map_err(file_err)?;
        if header.model != model || header.dims != dims {
            return Err(VectorError::ModelMismatch {
                path: path.to_owned(),
                found_model: header.model,
                found_dims: header.dims,
                expected_model: model.to_owned(),
                expected_dims: dims,
            });
        }
        let contents = vector_file::read(path).map_err(file_err)?;
        let index = new_usearch(dims)?;
        index.load_from_buffer(&contents.index_bytes).or_usearch()?;
        // Loading replaces the reservation; restore capacity and thread slots.
        let capacity = index.size().max(MIN_CAPACITY);
        index
            .reserve_capacity_and_threads(capacity, THREAD_SLOTS)
            .or_usearch()?;
        index.change_expansion_search(HNSW_EXPANSION_SEARCH);
        if index.size() != contents.entries.len() || index.dimensions() != dims {
            return Err(file_err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "graph holds {} vectors of {} dimensions, key map {} entries",
                    index.size(),
                    index.dimensions(),
                    contents.entries.len()
                ),
            )));
        }
        Ok(VectorIndex {
            path: Some(path.to_owned()),
            model: model.to_owned(),
            dims,
            inner: RwLock::new(Inner::new(
                index,
                contents.entries,
                contents.header.next_key,
            )),
            slots: new_slots(),
            save_lock: Mutex::new(()),
        })
    }

    /// An empty index without a file, for tests and benchmarks.
    pub fn in_memory(dims: usize, model: &str) -> Result<VectorIndex, VectorError> {
        Ok(VectorIndex {
            path: None,
            model: model.to_owned(),
            dims,
            inner: RwLock::new(Inner::new(new_usearch(dims)?, Vec::new(), 0)),
            slots: new_slots(),
            save_lock: Mutex::new(()),
        })
    }

    /// The embedding model the index is for.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// Vector dimensions.
    pub fn dims(&self) -> usize {
        self.dims
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds vectors, replacing the vector of any chunk id already present (within one batch,
    /// the last occurrence of a chunk id wins). Validates every vector before changing
    /// anything; grows capacity as needed.
    pub fn add(&self, entries: &[VectorEntry<'_>]) -> Result<(), VectorError> {
        // A chunk id repeated within the batch: the last occurrence wins.
        let mut last: HashMap<&str, usize> = HashMap::new();
        for (i, e) in entries.iter().enumerate() {
            last.insert(e.meta.chunk_id.as_str(), i);
        }
        let deduped: Vec<VectorEntry<'_>>;
        let entries = if last.len() == entries.len() {
            entries
        } else {
            deduped = entries
                .iter()
                .enumerate()
                .filter(|(i, e)| last.get(e.meta.chunk_id.as_str()) == Some(i))
                .map(|(_, e)| *e)
                .collect();
            &deduped
        };
        let vectors = entries
            .iter()
            .map(|e| normalised(e.vector, self.dims))
            .collect::<Result<Vec<_>, _>>()?;
        let mut inner = self.write();
        let mut replaced = Vec::new();
        for e in entries {
            if let Some(old) = inner.by_chunk.get(&e.meta.chunk_id) {
                replaced.push(*old);
            }
        }
        for key in replaced {
            inner.remove_key(key)?;
        }
        let needed = inner.index.size() + entries.len();
        if needed > inner.index.capacity() {
            let capacity = needed.max(inner.index.capacity() * 2);
            inner
                .index
                .reserve_capacity_and_threads(capacity, THREAD_SLOTS)
                .or_usearch()?;
        }
        let first = inner.next_key;
        inner.next_key += entries.len() as u64;
        let keyed: Vec<(u64, &[f32])> = vectors
            .iter()
            .enumerate()
            .map(|(i, v)| (first + i as u64, v.as_slice()))
            .collect();
        self.insert_parallel(&inner.index, &keyed)?;
        for (i, e) in entries.iter().enumerate() {
            let key = first + i as u64;
            inner.insert_meta(key, e.meta.clone());
        }
        Ok(())
    }

    /// Inserts into the graph from several threads for large batches (usearch adds are
    /// thread-safe; each thread holds a slot).
    fn insert_parallel(&self, index: &Index, keyed: &[(u64, &[f32])]) -> Result<(), VectorError> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = threads.min(THREAD_SLOTS);
        if keyed.len() < PARALLEL_ADD_MIN || threads == 1 {
            let _slot = self.slots.acquire();
            for (key, v) in keyed {
                index.add(*key, v).or_usearch()?;
            }
            return Ok(());
        }
        let per_thread = keyed.len().div_ceil(threads);
        std::thread::scope(|s| {
            let handles: Vec<_> = keyed
                .chunks(per_thread)
                .map(|part| {
                    s.spawn(move || -> Result<(), VectorError> {
                        let _slot = self.slots.acquire();
                        for (key, v) in part {
                            index.add(*key, v).or_usearch()?;
                        }
                        Ok(())
                    })
                })
                .collect();
            for h in handles {
                h.join().map_err(|_| {
                    VectorError::Usearch("an insertion thread panicked".to_owned())
                })??;
            }
            Ok(())
        })
    }

    /// Removes one chunk's vector; false when it was not indexed.
    pub fn remove_chunk(&self, chunk_id: &str) -> Result<bool, VectorError> {
        let mut inner = self.write();
        let Some(key) = inner.by_chunk.get(chunk_id).copied() else {
            return Ok(false);
        };
        inner.remove_key(key)?;
        Ok(true)
    }

    /// Removes every vector of one file of one tenant; returns how many.
    pub fn remove_file(&self, tenant: &str, file_id: &str) -> Result<usize, VectorError> {
        let mut inner = self.write();
        let keys: Vec<u64> = inner
            .by_file
            .get(file_id)
            .into_iter()
            .flatten()
            .copied()
            .filter(|k| inner.entries.get(k).is_some_and(|m| m.tenant == tenant))
            .collect();
        for key in &keys {
            inner.remove_key(*key)?;
        }
        Ok(keys.len())
    }

    /// Number of vectors.
    pub fn len(&self) -> usize {
        self.read().entries.len()
    }

    /// True when the index holds no vector.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every key, in no particular order.
    pub fn keys(&self) -> Vec<u64> {
        self.read().entries.keys().copied().collect()
    }

    /// Every indexed chunk id: for a start-up consistency check against the store.
    pub fn chunk_ids(&self) -> HashSet<String> {
        self.read().by_chunk.keys().cloned().collect()
    }

    /// The metadata of one key.
    pub fn meta(&self, key: u64) -> Option<ChunkMeta> {
        self.read().entries.get(&key).cloned()
    }

    /// Changes the HNSW search expansion (recall/speed trade-off) until reopened.
    pub fn set_expansion_search(&self, expansion: usize) {
        self.read().index.change_expansion_search(expansion);
    }

    /// Writes the index to its file atomically (temp file, fsync, rename).
    pub fn save(&self) -> Result<(), VectorError> {
        let path = self.path.as_ref().ok_or(VectorError::NotPersistent)?;
        let _one_save_at_a_time = self
            .save_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (header, entries_json, bytes) = {
            let inner = self.read();
            let mut bytes = vec![0u8; inner.index.serialized_length()];
            inner.index.save_to_buffer(&mut bytes).or_usearch()?;
            let entries: Vec<(u64, &ChunkMeta)> =
                inner.entries.iter().map(|(k, m)| (*k, m)).collect();
            let entries_json = serde_json::to_vec(&entries).map_err(|e| VectorError::File {
                path: path.clone(),
                source: e.into(),
            })?;
            let header = VectorFileHeader {
                format_version: FORMAT_VERSION,
                model: self.model.clone(),
                dims: self.dims,
                connectivity: HNSW_CONNECTIVITY,
                expansion_add: HNSW_EXPANSION_ADD,
                next_key: inner.next_key,
                count: entries.len(),
            };
            (header, entries_json, bytes)
        };
        vector_file::write(path, &header, &entries_json, &bytes).map_err(|source| {
            VectorError::File {
                path: path.clone(),
                source,
            }
        })
    }

    /// Nearest chunks to `query` among those `filter` admits, best first.
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        filter: &SearchFilter,
    ) -> Result<Vec<VectorHit>, VectorError> {
        if filter.tenant.is_empty() {
            return Err(VectorError::MissingTenant);
        }
        let query = normalised(query, self.dims)?;
        if k == 0 || filter.matches_nothing() {
            return Ok(Vec::new());
        }
        let inner = self.read();
        // The tenant's or the files' keys bound the candidates without a scan of every entry.
        let sets = inner.narrowed(filter);
        let bound: usize = sets.iter().map(|keys| keys.len()).sum();
        let admit = |key: u64| inner.entries.get(&key).is_some_and(|m| filter.matches(m));
        let candidates = || -> Vec<u64> {
            sets.iter()
                .flat_map(|keys| keys.iter().copied())
                .filter(|&key| admit(key))
                .collect()
        };
        let scored = if bound <= EXACT_SEARCH_MAX {
            self.exact_over(&inner, &query, k, candidates().into_iter())?
        } else {
            let all = filter.is_tenant_only() && bound == inner.entries.len();
            let found = self.hnsw(&inner, &query, k, (!all).then_some(&admit))?;
            if found.len() < k {
                // A selective filter can leave the graph walk short: scan what it admits.
                let candidates = candidates();
                if found.len() < k.min(candidates.len()) {
                    self.exact_over(&inner, &query, k, candidates.into_iter())?
                } else {
                    found
                }
            } else {
                found
            }
        };
        Ok(scored
            .into_iter()
            .filter_map(|(key, similarity)| {
                let m = inner.entries.get(&key)?;
                Some(VectorHit {
                    chunk_id: m.chunk_id.clone(),
                    file_id: m.file_id.clone(),
                    key,
                    similarity,
                })
            })
            .collect())
    }

    /// Nearest keys to `query` among those `filter` admits, as `(key, similarity)`, best
    /// first: exact at or below [`EXACT_SEARCH_MAX`] vectors, HNSW above (exact again when a
    /// selective filter leaves the graph walk short).
    pub fn search_keys(
        &self,
        query: &[f32],
        k: usize,
        filter: impl Fn(u64) -> bool,
    ) -> Result<Vec<(u64, f32)>, VectorError> {
        let query = normalised(query, self.dims)?;
        let inner = self.read();
        if inner.entries.len() <= EXACT_SEARCH_MAX {
            let keys = inner.entries.keys().copied().filter(|k| filter(*k));
            return self.exact_over(&inner, &query, k, keys);
        }
        let found = self.hnsw(&inner, &query, k, Some(&filter))?;
        if found.len() < k.min(inner.entries.len()) {
            let keys = inner.entries.keys().copied().filter(|k| filter(*k));
            return self.exact_over(&inner, &query, k, keys);
        }
        Ok(found)
    }

    /// Exact (brute-force) nearest keys among those `filter` admits, best first.
    pub fn exact_search(
        &self,
        query: &[f32],
        k: usize,
        filter: impl Fn(u64) -> bool,
    ) -> Result<Vec<(u64, f32)>, VectorError> {
        let query = normalised(query, self.dims)?;
        let inner = self.read();
        let keys = inner.entries.keys().copied().filter(|k| filter(*k));
        self.exact_over(&inner, &query, k, keys)
    }

    /// Approximate (HNSW) nearest keys without a filter, whatever the index size.
    pub fn approx_search(&self, query: &[f32], k: usize) -> Result<Vec<(u64, f32)>, VectorError> {
        let query = normalised(query, self.dims)?;
        let inner = self.read();
        self.hnsw(&inner, &query, k, None::<&fn(u64) -> bool>)
    }

    fn exact_over(
        &self,
        inner: &Inner,
        query: &[f32],
        k: usize,
        keys: impl Iterator<Item = u64>,
    ) -> Result<Vec<(u64, f32)>, VectorError> {
        let mut buf = vec![0f32; self.dims];
        let mut scored = Vec::new();
        for key in keys {
            if inner.index.get(key, &mut buf).or_usearch()? > 0 {
                scored.push((key, dot(query, &buf)));
            }
        }
        Ok(top_k(scored, k))
    }

    fn hnsw<F: Fn(u64) -> bool>(
        &self,
        inner: &Inner,
        query: &[f32],
        k: usize,
        filter: Option<&F>,
    ) -> Result<Vec<(u64, f32)>, VectorError> {
        let _slot = self.slots.acquire();
        let matches = match filter {
            Some(f) => inner.index.filtered_search(query, k, f).or_usearch()?,
            None => inner.index.search(query, k).or_usearch()?,
        };
        // usearch's IP distance is `1 - dot`.
        Ok(matches
            .keys
            .into_iter()
            .zip(matches.distances)
            .map(|(key, d)| (key, 1.0 - d))
            .collect())
    }
}

impl Inner {
    fn new(index: Index, entries: Vec<(u64, ChunkMeta)>, next_key: u64) -> Inner {
        let mut inner = Inner {
            index,
            entries: HashMap::with_capacity(entries.len()),
            by_chunk: HashMap::with_capacity(entries.len()),
            by_tenant: HashMap::new(),
            by_file: HashMap::new(),
            next_key,
        };
        for (key, meta) in entries {
            inner.insert_meta(key, meta);
        }
        inner
    }

    /// Records `meta` under `key` in every map.
    fn insert_meta(&mut self, key: u64, meta: ChunkMeta) {
        self.by_chunk.insert(meta.chunk_id.clone(), key);
        self.by_tenant
            .entry(meta.tenant.clone())
            .or_default()
            .insert(key);
        self.by_file
            .entry(meta.file_id.clone())
            .or_default()
            .insert(key);
        self.entries.insert(key, meta);
    }

    fn remove_key(&mut self, key: u64) -> Result<(), VectorError> {
        self.index.remove(key).or_usearch()?;
        if let Some(meta) = self.entries.remove(&key) {
            self.by_chunk.remove(&meta.chunk_id);
            for (map, name) in [
                (&mut self.by_tenant, &meta.tenant),
                (&mut self.by_file, &meta.file_id),
            ] {
                if let Some(keys) = map.get_mut(name) {
                    keys.remove(&key);
                    if keys.is_empty() {
                        map.remove(name);
                    }
                }
            }
        }
        Ok(())
    }

    /// The key sets `filter` can admit from: its files' (each once), else its tenant's.
    fn narrowed(&self, filter: &SearchFilter) -> Vec<&HashSet<u64>> {
        match &filter.file_ids {
            Some(files) => files
                .iter()
                .collect::<HashSet<&String>>()
                .into_iter()
                .filter_map(|f| self.by_file.get(f))
                .collect(),
            None => self.by_tenant.get(&filter.tenant).into_iter().collect(),
        }
    }
}

#[cfg(test)]
#[path = "vector_tests.rs"]
mod tests;
