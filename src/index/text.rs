//! The text (BM25) index over chunk text, with tantivy.
//!
//! Concurrency: one `IndexWriter` (one indexing thread, [`WRITER_MEMORY_BYTES`] budget) lives
//! behind a mutex for the index's lifetime; adds and deletes take the mutex briefly and become
//! visible to searches at [`TextIndex::commit`], which reloads the reader. Searches never take
//! the writer mutex. Everything here blocks: call it from `spawn_blocking`.
//!
//! Queries are not parsed with tantivy's query language: the user's text is run through each
//! field's analyzer and the resulting terms are OR-ed (BM25 ranks documents matching more and
//! rarer terms first). So `"`, `:`, `(`, `AND`, `-` and the like are ordinary characters and a
//! query can never fail to parse. See `tokenize.rs` for the two analyzers and why.
//!
//! Snippets are HTML: the best passage (at most [`SNIPPET_MAX_CHARS`] characters) with the
//! text HTML-escaped and each matched term wrapped in `<b>...</b>`.

use std::collections::{BTreeSet, HashSet};
use std::ops::Bound;
use std::path::Path;
use std::sync::{Mutex, PoisonError};

use tantivy::collector::TopDocs;
use tantivy::directory::MmapDirectory;
use tantivy::query::{
    BooleanQuery, ConstScoreQuery, Occur, Query, RangeQuery, TermQuery, TermSetQuery,
};
use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, STORED, STRING, Schema, TantivyDocument,
    TextFieldIndexing, TextOptions, Value,
};
use tantivy::snippet::SnippetGenerator;
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, Searcher, Term};

use crate::index::tokenize::{
    ENGLISH_ANALYZER, MULTILINGUAL_ANALYZER, english_analyzer, multilingual_analyzer,
};
use crate::index::{IndexedChunk, SearchFilter};

/// Memory budget of the single index writer; tantivy flushes a segment when it is reached.
pub const WRITER_MEMORY_BYTES: usize = 50_000_000;
/// Indexing threads of the writer: indexing runs beside extraction and inference on 2 cores.
pub const WRITER_THREADS: usize = 1;
/// Longest snippet returned, in characters.
pub const SNIPPET_MAX_CHARS: usize = 240;
/// Distinct query terms used per field; longer queries are truncated (bounds query cost).
pub const MAX_QUERY_TERMS: usize = 64;
/// Separates tenant and file id in the combined key used to delete a file's chunks.
const TENANT_FILE_SEPARATOR: char = '\u{1f}';

/// Errors of the text index.
#[derive(Debug, thiserror::Error)]
pub enum TextError {
    /// tantivy failed (I/O, corrupt index, schema mismatch, ...).
    #[error("text index error: {0}")]
    Tantivy(#[from] tantivy::TantivyError),
    /// The index directory could not be opened or created.
    #[error("cannot open text index directory: {0}")]
    Directory(#[from] tantivy::directory::error::OpenDirectoryError),
    /// The index directory could not be created.
    #[error("cannot create text index directory: {0}")]
    Io(#[from] std::io::Error),
    /// A search without a tenant: refused so no tenant ever sees another's chunks.
    #[error("a search filter must name a tenant")]
    MissingTenant,
}

/// One result of a text search.
#[derive(Debug, Clone, PartialEq)]
pub struct TextHit {
    /// The chunk found.
    pub chunk_id: String,
    /// Its file.
    pub file_id: String,
    /// BM25 score (unbounded, comparable only within one query).
    pub score: f32,
    /// Best matching passage as HTML: escaped text with matched terms in `<b>...</b>`.
    pub snippet: String,
}

/// The schema's fields, resolved once.
#[derive(Clone, Copy)]
struct Fields {
    chunk_id: Field,
    file_id: Field,
    tenant: Field,
    tenant_file: Field,
    category: Field,
    created_at: Field,
    text: Field,
    text_ml: Field,
}

impl Fields {
    fn schema() -> (Schema, Fields) {
        let mut b = Schema::builder();
        let text_options = TextOptions::default().set_stored().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(ENGLISH_ANALYZER)
                .set_index_option(IndexRecordOption::WithFreqsAndPositions),
        );
        // Not stored: snippets re-analyze the stored `text`.
        let text_ml_options = TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(MULTILINGUAL_ANALYZER)
                .set_index_option(IndexRecordOption::WithFreqs),
        );
        let fields = Fields {
            chunk_id: b.add_text_field("chunk_id", STRING | STORED | FAST),
            file_id: b.add_text_field("file_id", STRING | STORED),
            tenant: b.add_text_field("tenant", STRING),
            tenant_file: b.add_text_field("tenant_file", STRING),
            category: b.add_text_field("category", STRING),
            created_at: b.add_i64_field("created_at", INDEXED | FAST),
            text: b.add_text_field("text", text_options),
            text_ml: b.add_text_field("text_ml", text_ml_options),
        };
        (b.build(), fields)
    }
}

/// A tantivy index of chunk text, on disk or in memory.
pub struct TextIndex {
    index: Index,
    reader: IndexReader,
    writer: Mutex<IndexWriter>,
    fields: Fields,
}

impl TextIndex {
    /// Opens the index in `dir`, creating the directory and an empty index when missing.
    pub fn open(dir: &Path) -> Result<TextIndex, TextError> {
        std::fs::create_dir_all(dir)?;
        let (schema, fields) = Fields::schema();
        let index = Index::open_or_create(MmapDirectory::open(dir)?, schema)?;
        TextIndex::from_index(index, fields)
    }

    /// An empty in-memory index, for tests and benchmarks.
    pub fn in_ram() -> Result<TextIndex, TextError> {
        let (schema, fields) = Fields::schema();
        TextIndex::from_index(Index::create_in_ram(schema), fields)
    }

    fn from_index(index: Index, fields: Fields) -> Result<TextIndex, TextError> {
        index
            .tokenizers()
            .register(ENGLISH_ANALYZER, english_analyzer());
        index
            .tokenizers()
            .register(MULTILINGUAL_ANALYZER, multilingual_analyzer());
        let writer = index.writer_with_num_threads(WRITER_THREADS, WRITER_MEMORY_BYTES)?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        Ok(TextIndex {
            index,
            reader,
            writer: Mutex::new(writer),
            fields,
        })
    }

    /// Queues chunks for indexing, replacing any indexed chunk with the same id.
    /// Visible to searches after [`TextIndex::commit`].
    pub fn add(&self, chunks: &[IndexedChunk]) -> Result<(), TextError> {
        let f = self.fields;
        let writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        for c in chunks {
            writer.delete_term(Term::from_field_text(f.chunk_id, &c.chunk_id));
            let mut doc = TantivyDocument::default();
            doc.add_text(f.chunk_id, &c.chunk_id);
            doc.add_text(f.file_id, &c.file_id);
            doc.add_text(f.tenant, &c.tenant);
            doc.add_text(f.tenant_file, tenant_file_key(&c.tenant, &c.file_id));
            doc.add_text(f.category, c.category.as_str());
            doc.add_i64(f.created_at, c.created_at.timestamp());
            doc.add_text(f.text, &c.text);
            doc.add_text(f.text_ml, &c.text);
            writer.add_document(doc)?;
        }
        Ok(())
    }

    /// Queues the deletion of every chunk of one file of one tenant.
    /// Takes effect at the next [`TextIndex::commit`].
    pub fn delete_file(&self, tenant: &str, file_id: &str) {
        let writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        writer.delete_term(Term::from_field_text(
            self.fields.tenant_file,
            &tenant_file_key(tenant, file_id),
        ));
    }

    /// Queues the deletion of single chunks by id.
    pub fn delete_chunks(&self, chunk_ids: &[String]) {
        let writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        for id in chunk_ids {
            writer.delete_term(Term::from_field_text(self.fields.chunk_id, id));
        }
    }

    /// Makes queued adds and deletes durable and visible to searches.
    pub fn commit(&self) -> Result<(), TextError> {
        let mut writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        writer.commit()?;
        drop(writer);
        self.reader.reload()?;
        Ok(())
    }

    /// Number of committed, live chunks.
    pub fn len(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    /// True when no committed chunk is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Ids of every committed, live chunk: for a start-up consistency check against the store.
    pub fn chunk_ids(&self) -> Result<HashSet<String>, TextError> {
        let searcher = self.reader.searcher();
        let mut ids = HashSet::new();
        let mut buf = String::new();
        for segment in searcher.segment_readers() {
            let Some(column) = segment.fast_fields().str("chunk_id")? else {
                continue;
            };
            for doc in segment.doc_ids_alive() {
                for ord in column.term_ords(doc) {
                    buf.clear();
                    if column.ord_to_str(ord, &mut buf)? {
                        ids.insert(buf.clone());
                    }
                }
            }
        }
        Ok(ids)
    }

    /// BM25 search of `query` among the chunks `filter` admits; at most `top_k` hits, best first.
    /// Any user text is accepted; a query without a searchable word returns no hits.
    pub fn search(
        &self,
        query: &str,
        filter: &SearchFilter,
        top_k: usize,
    ) -> Result<Vec<TextHit>, TextError> {
        if filter.tenant.is_empty() {
            return Err(TextError::MissingTenant);
        }
        if top_k == 0 || filter.matches_nothing() {
            return Ok(Vec::new());
        }
        let Some(text_query) = self.text_query(query)? else {
            return Ok(Vec::new());
        };
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = vec![(Occur::Must, text_query)];
        clauses.extend(self.filter_clauses(filter).into_iter().map(|q| {
            // Filters must not change BM25 scores.
            let q: Box<dyn Query> = Box::new(ConstScoreQuery::new(q, 0.0));
            (Occur::Must, q)
        }));
        let full = BooleanQuery::new(clauses);
        let searcher = self.reader.searcher();
        let top = searcher.search(&full, &TopDocs::with_limit(top_k).order_by_score())?;
        let snippets = Snippets::new(&searcher, &full, self.fields)?;
        let mut hits = Vec::with_capacity(top.len());
        for (score, address) in top {
            let doc: TantivyDocument = searcher.doc(address)?;
            let get = |field| {
                doc.get_first(field)
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_owned()
            };
            let text = get(self.fields.text);
            hits.push(TextHit {
                chunk_id: get(self.fields.chunk_id),
                file_id: get(self.fields.file_id),
                score,
                snippet: snippets.best(&text),
            });
        }
        Ok(hits)
    }

    /// OR of the query's terms in both text fields; `None` when the query has no terms.
    fn text_query(&self, query: &str) -> Result<Option<Box<dyn Query>>, TextError> {
        let mut terms: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for field in [self.fields.text, self.fields.text_ml] {
            let mut analyzer = self.index.tokenizer_for_field(field)?;
            let mut stream = analyzer.token_stream(query);
            let mut seen = BTreeSet::new();
            while stream.advance() && seen.len() < MAX_QUERY_TERMS {
                let token = &stream.token().text;
                if seen.insert(token.clone()) {
                    let term = Term::from_field_text(field, token);
                    let q: Box<dyn Query> =
                        Box::new(TermQuery::new(term, IndexRecordOption::WithFreqs));
                    terms.push((Occur::Should, q));
                }
            }
        }
        Ok((!terms.is_empty()).then(|| Box::new(BooleanQuery::new(terms)) as Box<dyn Query>))
    }

    /// The filter's tantivy clauses (each a required match).
    fn filter_clauses(&self, filter: &SearchFilter) -> Vec<Box<dyn Query>> {
        let f = self.fields;
        let mut out: Vec<Box<dyn Query>> = vec![Box::new(TermQuery::new(
            Term::from_field_text(f.tenant, &filter.tenant),
            IndexRecordOption::Basic,
        ))];
        if let Some(ids) = &filter.file_ids {
            let terms = ids.iter().map(|id| Term::from_field_text(f.file_id, id));
            out.push(Box::new(TermSetQuery::new(terms)));
        }
        if let Some(categories) = &filter.categories {
            let terms = categories
                .iter()
                .map(|c| Term::from_field_text(f.category, c.as_str()));
            out.push(Box::new(TermSetQuery::new(terms)));
        }
        let lower = filter.after_secs().map_or(Bound::Unbounded, |s| {
            Bound::Included(Term::from_field_i64(f.created_at, s))
        });
        let upper = filter.before_secs().map_or(Bound::Unbounded, |s| {
            Bound::Excluded(Term::from_field_i64(f.created_at, s))
        });
        if !matches!((&lower, &upper), (Bound::Unbounded, Bound::Unbounded)) {
            out.push(Box::new(RangeQuery::new(lower, upper)));
        }
        out
    }
}

fn tenant_file_key(tenant: &str, file_id: &str) -> String {
    format!("{tenant}{TENANT_FILE_SEPARATOR}{file_id}")
}

/// Snippet generators for both text fields of one query.
struct Snippets {
    english: SnippetGenerator,
    multilingual: SnippetGenerator,
}

impl Snippets {
    fn new(searcher: &Searcher, query: &dyn Query, fields: Fields) -> Result<Snippets, TextError> {
        let make = |field| -> Result<SnippetGenerator, TextError> {
            let mut g = SnippetGenerator::create(searcher, query, field)?;
            g.set_max_num_chars(SNIPPET_MAX_CHARS);
            Ok(g)
        };
        Ok(Snippets {
            english: make(fields.text)?,
            multilingual: make(fields.text_ml)?,
        })
    }

    /// The stemmed field's snippet when it highlights something, else the multilingual
    /// field's (CJK queries), else the start of the text.
    fn best(&self, text: &str) -> String {
        let english = self.english.snippet(text);
        if !english.highlighted().is_empty() {
            return english.to_html();
        }
        let multilingual = self.multilingual.snippet(text);
        if !multilingual.highlighted().is_empty() {
            return multilingual.to_html();
        }
        leading_snippet(text)
    }
}

/// The first [`SNIPPET_MAX_CHARS`] characters, HTML-escaped like a real snippet.
fn leading_snippet(text: &str) -> String {
    let end = text
        .char_indices()
        .nth(SNIPPET_MAX_CHARS)
        .map_or(text.len(), |(i, _)| i);
    html_escape(&text[..end])
}

fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
#[path = "text_tests.rs"]
mod tests;
