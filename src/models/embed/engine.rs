//! The pure embedding core: tokenizer, BERT forward pass, mean pooling and L2 normalisation.

use std::path::Path;
use std::sync::Arc;

use candle_core::{D, DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config as BertConfig};
use rayon::prelude::*;
use tokenizers::Tokenizer;

use super::cpu_bert::CpuBert;
use super::{DIMENSIONS, EmbedError, Embedding, Embeddings, MAX_TOKENS};

/// Weights file inside the model directory.
const WEIGHTS_FILE: &str = "model.safetensors";
/// BERT configuration inside the model directory.
const CONFIG_FILE: &str = "config.json";
/// Tokenizer inside the model directory.
const TOKENIZER_FILE: &str = "tokenizer.json";
/// Token that ends every sequence; kept as the last token when an input is truncated.
const SEP_TOKEN: &str = "[SEP]";
/// Token that fills the rows of a batch up to its longest row.
const PAD_TOKEN: &str = "[PAD]";
/// Lower bound of the vector norm in L2 normalisation (torch's `F.normalize` default).
const NORM_EPSILON: f64 = 1e-12;

/// Counts tokens the way the embedder does; cheap to clone and usable from any thread (e.g. by the chunker).
#[derive(Clone)]
pub struct TokenCounter {
    tokenizer: Arc<Tokenizer>,
}

impl TokenCounter {
    /// Loads only the tokenizer (`tokenizer.json` in `model_dir`), without the weights: for the chunker and its
    /// tests, which need counts but no embeddings.
    pub fn from_model_dir(model_dir: &Path) -> Result<Self, EmbedError> {
        Ok(Self {
            tokenizer: Arc::new(load_tokenizer(&model_dir.join(TOKENIZER_FILE))?),
        })
    }

    /// Tokens of `text` including `[CLS]` and `[SEP]`, before truncation; more than [`MAX_TOKENS`] means the
    /// embedder will truncate it.
    pub fn count(&self, text: &str) -> usize {
        match self.tokenizer.encode_fast(text, true) {
            Ok(encoding) => encoding.len(),
            // WordPiece emits at most one token per character, so this bound never under-counts.
            Err(_) => text.chars().count() + 2,
        }
    }
}

/// A tokenized input: its ids cut to the window, and its token count before the cut.
pub(super) struct Tokenized {
    pub(super) ids: Vec<u32>,
    pub(super) tokens: usize,
}

/// The BERT forward pass: fused loops around candle's matmuls on the CPU ([`CpuBert`]), candle-transformers'
/// `BertModel` on other devices.
enum Encoder {
    Cpu(CpuBert),
    Candle(BertModel),
}

/// all-MiniLM-L6-v2 loaded on one device. Not thread-bound: it computes in the current rayon pool, so run it
/// inside `pool.install` of a pool with the thread count you want.
pub struct Embedder {
    encoder: Encoder,
    tokens: TokenCounter,
    device: Device,
    sep_id: u32,
    pad_id: u32,
    max_batch: usize,
}

impl Embedder {
    /// Loads the model from `model_dir` (`config.json`, `model.safetensors`, `tokenizer.json`) onto `device`.
    /// `max_batch` is the most texts per forward pass.
    pub fn load(model_dir: &Path, device: &Device, max_batch: usize) -> Result<Self, EmbedError> {
        if max_batch == 0 {
            return Err(EmbedError::InvalidConfig(
                "max_batch must be at least 1".to_owned(),
            ));
        }
        let config_path = model_dir.join(CONFIG_FILE);
        let config_text = read_to_string(&config_path)?;
        let config: BertConfig =
            serde_json::from_str(&config_text).map_err(|source| EmbedError::ModelConfig {
                path: config_path.clone(),
                source,
            })?;
        if config.hidden_size != DIMENSIONS {
            return Err(EmbedError::InvalidConfig(format!(
                "{}: hidden_size {} is not the expected {DIMENSIONS}",
                config_path.display(),
                config.hidden_size
            )));
        }

        let weights_path = model_dir.join(WEIGHTS_FILE);
        let weights = std::fs::read(&weights_path).map_err(|source| EmbedError::ModelFile {
            path: weights_path,
            source,
        })?;
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, device)
            .map_err(EmbedError::Weights)?;
        let encoder = if device.is_cpu() {
            Encoder::Cpu(CpuBert::load(&vb, &config)?)
        } else {
            Encoder::Candle(BertModel::load(vb, &config).map_err(EmbedError::Weights)?)
        };

        let tokenizer = load_tokenizer(&model_dir.join(TOKENIZER_FILE))?;
        let special = |token: &str| {
            tokenizer
                .token_to_id(token)
                .ok_or_else(|| EmbedError::TokenizerFile {
                    path: model_dir.join(TOKENIZER_FILE),
                    message: format!("no {token} token in the vocabulary"),
                })
        };
        let sep_id = special(SEP_TOKEN)?;
        let pad_id = special(PAD_TOKEN)?;
        Ok(Self {
            encoder,
            tokens: TokenCounter {
                tokenizer: Arc::new(tokenizer),
            },
            device: device.clone(),
            sep_id,
            pad_id,
            max_batch,
        })
    }

    /// The device the model runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// A token counter sharing this embedder's tokenizer.
    pub fn token_counter(&self) -> TokenCounter {
        self.tokens.clone()
    }

    /// Tokens of `text` including `[CLS]` and `[SEP]`, before truncation.
    pub fn count_tokens(&self, text: &str) -> usize {
        self.tokens.count(text)
    }

    /// Embeds `texts`: one L2-normalised 384-d vector per text, in input order.
    pub fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        Ok(self.embed_detailed(texts)?.into_vectors())
    }

    /// Embeds `texts` and reports each one's token count and whether it was truncated, in input order.
    pub fn embed_detailed(&self, texts: &[&str]) -> Result<Embeddings, EmbedError> {
        if texts.is_empty() {
            return Ok(Embeddings::default());
        }
        let tokenized = self.tokenize(texts)?;
        // Sorting by length keeps rows of similar length together, so little compute goes to padding.
        let mut order: Vec<usize> = (0..tokenized.len()).collect();
        order.sort_by_key(|&i| tokenized[i].ids.len());

        // Each thread of the current rayon pool gets whole sub-batches (data parallelism scales better than
        // splitting every matmul); a request smaller than threads x max_batch is split evenly between them.
        let per_pass = self
            .max_batch
            .min(order.len().div_ceil(rayon::current_num_threads()))
            .max(1);
        let passes: Vec<&[usize]> = order.chunks(per_pass).collect();
        let outputs = passes
            .par_iter()
            .map(|rows| {
                let batch: Vec<&[u32]> =
                    rows.iter().map(|&i| tokenized[i].ids.as_slice()).collect();
                self.forward(&batch)
            })
            .collect::<Result<Vec<_>, EmbedError>>()?;
        let mut vectors: Vec<Vec<f32>> = vec![Vec::new(); tokenized.len()];
        for (rows, output) in passes.iter().zip(outputs) {
            for (&i, vector) in rows.iter().zip(output) {
                vectors[i] = vector;
            }
        }
        let items = vectors
            .into_iter()
            .zip(tokenized)
            .map(|(vector, t)| Embedding {
                vector,
                tokens: t.tokens,
                truncated: t.tokens > MAX_TOKENS,
            })
            .collect();
        Ok(Embeddings { items })
    }

    /// Tokenizes without the tokenizer's own truncation, so that one pass yields both the full token count
    /// and the model input; the cut keeps `[SEP]` last exactly as the tokenizer's truncation would.
    pub(super) fn tokenize(&self, texts: &[&str]) -> Result<Vec<Tokenized>, EmbedError> {
        let encodings = self
            .tokens
            .tokenizer
            .encode_batch_fast(texts.to_vec(), true)
            .map_err(|err| EmbedError::Tokenize(err.to_string()))?;
        Ok(encodings
            .into_iter()
            .map(|encoding| {
                let mut ids = encoding.get_ids().to_vec();
                let tokens = ids.len();
                if tokens > MAX_TOKENS {
                    ids.truncate(MAX_TOKENS - 1);
                    ids.push(self.sep_id);
                }
                Tokenized { ids, tokens }
            })
            .collect())
    }

    /// One forward pass over rows padded to the longest one; returns the pooled, normalised vectors.
    fn forward(&self, rows: &[&[u32]]) -> Result<Vec<Vec<f32>>, EmbedError> {
        match &self.encoder {
            Encoder::Cpu(bert) => bert.forward(rows),
            Encoder::Candle(bert) => self.forward_candle(bert, rows),
        }
    }

    /// [`Self::forward`] through candle-transformers' `BertModel` (GPU devices).
    fn forward_candle(
        &self,
        model: &BertModel,
        rows: &[&[u32]],
    ) -> Result<Vec<Vec<f32>>, EmbedError> {
        let width = rows.iter().map(|row| row.len()).max().unwrap_or(0);
        let mut ids = Vec::with_capacity(rows.len() * width);
        let mut mask = Vec::with_capacity(rows.len() * width);
        for row in rows {
            ids.extend_from_slice(row);
            ids.resize(ids.len() + width - row.len(), self.pad_id);
            mask.extend(std::iter::repeat_n(1u32, row.len()));
            mask.resize(mask.len() + width - row.len(), 0);
        }
        let shape = (rows.len(), width);
        let ids = Tensor::from_vec(ids, shape, &self.device)?;
        let mask = Tensor::from_vec(mask, shape, &self.device)?;
        let token_types = ids.zeros_like()?;
        let hidden = model.forward(&ids, &token_types, Some(&mask))?;

        // Mean over the real tokens only, then L2 normalisation (sentence-transformers' Pooling + Normalize).
        let mask = mask.to_dtype(DType::F32)?.unsqueeze(D::Minus1)?;
        let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
        let counts = mask.sum(1)?;
        let mean = summed.broadcast_div(&counts)?;
        let norms = mean
            .sqr()?
            .sum_keepdim(D::Minus1)?
            .sqrt()?
            .clamp(NORM_EPSILON, f64::MAX)?;
        Ok(mean.broadcast_div(&norms)?.to_vec2::<f32>()?)
    }
}

/// Loads `tokenizer.json` and replaces its built-in fixed padding (128) and truncation (128): the embedder
/// pads each sub-batch to its longest row and truncates at [`MAX_TOKENS`] itself.
fn load_tokenizer(path: &Path) -> Result<Tokenizer, EmbedError> {
    let tokenizer_error = |message: String| EmbedError::TokenizerFile {
        path: path.to_owned(),
        message,
    };
    let mut tokenizer =
        Tokenizer::from_file(path).map_err(|err| tokenizer_error(err.to_string()))?;
    tokenizer.with_padding(None);
    tokenizer
        .with_truncation(None)
        .map_err(|err| tokenizer_error(err.to_string()))?;
    Ok(tokenizer)
}

fn read_to_string(path: &Path) -> Result<String, EmbedError> {
    std::fs::read_to_string(path).map_err(|source| EmbedError::ModelFile {
        path: path.to_owned(),
        source,
    })
}
