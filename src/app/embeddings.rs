//! Embeddings: the MiniLM model that indexes uploaded files, offered to clients (`/v1/embeddings`), with
//! the per-request limits of the configuration.

use tracing::instrument;

use crate::config::Overflow;
pub use crate::models::embed::{DIMENSIONS, EmbedError, Embeddings, MAX_TOKENS, MODEL_NAME};

use super::App;

/// Names accepted for the embedding model besides the aliases of the router configuration.
const MODEL_ALIASES: [&str; 2] = [MODEL_NAME, "sentence-transformers/all-MiniLM-L6-v2"];

/// Why inputs were not embedded.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddingsError {
    /// More inputs than one request may carry.
    #[error("at most {max} inputs per request, got {got}")]
    TooManyInputs {
        /// The limit (`DOCPIPE_EMBED_MAX_INPUTS`).
        max: usize,
        /// The request's count.
        got: usize,
    },
    /// More tokens in all than one request may carry.
    #[error("the inputs have {total} tokens; at most {max} per request")]
    TooManyTokens {
        /// The inputs' tokens.
        total: usize,
        /// The limit.
        max: usize,
    },
    /// An input longer than the model's window, with `DOCPIPE_EMBED_OVERFLOW=reject`.
    #[error("input {index} has {tokens} tokens; the model's window is {MAX_TOKENS}")]
    InputTooLong {
        /// The input's position.
        index: usize,
        /// Its tokens.
        tokens: usize,
    },
    /// The model refused or failed.
    #[error(transparent)]
    Embed(#[from] EmbedError),
}

impl App {
    /// True when `name` names the embedding model: its id, its sentence-transformers name or an alias
    /// (`[aliases.embeddings]`), case-insensitive.
    pub fn is_embedding_model(&self, name: &str) -> bool {
        MODEL_ALIASES.iter().any(|m| m.eq_ignore_ascii_case(name))
            || self
                .router
                .aliases()
                .embeddings
                .iter()
                .any(|(a, t)| a.eq_ignore_ascii_case(name) && t.eq_ignore_ascii_case(MODEL_NAME))
    }

    /// Embeds `texts` in order, within the configured limits (inputs, total tokens, overflow policy).
    #[instrument(skip_all, fields(inputs = texts.len()))]
    pub async fn embed(&self, texts: Vec<String>) -> Result<Embeddings, EmbeddingsError> {
        let cfg = &self.config;
        if texts.len() > cfg.embed_max_inputs {
            return Err(EmbeddingsError::TooManyInputs {
                max: cfg.embed_max_inputs,
                got: texts.len(),
            });
        }
        let embedder = self.search.embedder();
        let counts: Vec<usize> = texts.iter().map(|t| embedder.count_tokens(t)).collect();
        let total: usize = counts.iter().sum();
        if total > cfg.embed_max_total_tokens {
            return Err(EmbeddingsError::TooManyTokens {
                total,
                max: cfg.embed_max_total_tokens,
            });
        }
        if cfg.embed_overflow == Overflow::Reject
            && let Some(index) = counts.iter().position(|&n| n > MAX_TOKENS)
        {
            return Err(EmbeddingsError::InputTooLong {
                index,
                tokens: counts[index],
            });
        }
        Ok(embedder.embed(texts).await?)
    }
}
