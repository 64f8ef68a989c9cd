//! Loading a GGUF chat model into candle's quantized llama (SmolLM2) or qwen2 (Qwen2.5) implementation.
//!
//! candle has SIMD dot products only for Q4_0, Q8_0 and the K-quants, so tensors stored as Q4_1, Q5_0 or Q5_1
//! are re-quantised to Q8_0 while loading (about 4x faster prompt processing and 2x faster decoding, at a
//! negligible loss: Q8_0 is finer than the source). The re-quantised tensors go through an in-memory GGUF so
//! candle's own loaders build the models.

use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use candle_transformers::models::{quantized_llama, quantized_qwen2};

use super::gguf_tokenizer::GgufTokenizer;
use super::template::ChatTemplate;

/// Largest window of candle's llama: its rope table has this many positions, whatever the GGUF declares.
const LLAMA_MAX_POSITIONS: usize = quantized_llama::MAX_SEQ_LEN;

/// Why a model could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("chat model file {path}: {source}")]
    File {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The GGUF content is not a model docpipe can run.
    #[error("chat model {path}: {message}")]
    Format {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// The transformer, by architecture.
enum Weights {
    Llama(quantized_llama::ModelWeights),
    Qwen2(quantized_qwen2::ModelWeights),
}

/// A loaded chat model: weights, tokenizer, template and window. Not thread-safe by design: it lives on its
/// engine thread.
pub struct ChatModel {
    weights: Weights,
    /// The tokenizer from the GGUF metadata.
    pub tokenizer: Arc<GgufTokenizer>,
    /// The chat template from the GGUF metadata.
    pub template: Arc<ChatTemplate>,
    /// Tokens of prompt plus completion the model can attend to.
    pub context_window: usize,
    /// `general.architecture`.
    pub architecture: String,
    /// Tensors re-quantised to Q8_0 while loading.
    pub requantized: usize,
    device: Device,
}

fn md_u32(md: &std::collections::HashMap<String, Value>, key: &str) -> Option<usize> {
    md.get(key)
        .and_then(|v| v.to_u32().ok())
        .map(|v| v as usize)
}

/// Whether a tensor of this type is re-quantised to Q8_0 (types without a SIMD kernel in candle).
fn needs_requant(dtype: GgmlDType) -> bool {
    matches!(dtype, GgmlDType::Q4_1 | GgmlDType::Q5_0 | GgmlDType::Q5_1)
}

impl ChatModel {
    /// Loads `path` onto `device`, re-quantising slow tensor types.
    pub fn load(path: &Path, device: &Device) -> Result<Self, LoadError> {
        let shown = path.display().to_string();
        let format = |message: String| LoadError::Format {
            path: shown.clone(),
            message,
        };
        let mut file = std::fs::File::open(path).map_err(|source| LoadError::File {
            path: shown.clone(),
            source,
        })?;
        let content = gguf_file::Content::read(&mut file).map_err(|e| format(e.to_string()))?;
        let md = &content.metadata;
        let architecture = md
            .get("general.architecture")
            .and_then(|v| v.to_string().ok())
            .cloned()
            .unwrap_or_default();
        let tokenizer = GgufTokenizer::from_metadata(md).map_err(|e| format(e.to_string()))?;
        let token = |key: &str| {
            md_u32(md, key)
                .and_then(|id| tokenizer.token_text(u32::try_from(id).unwrap_or(u32::MAX)))
                .unwrap_or_default()
        };
        let template = ChatTemplate::new(
            md.get("tokenizer.chat_template")
                .and_then(|v| v.to_string().ok())
                .map(String::as_str),
            token("tokenizer.ggml.bos_token_id"),
            token("tokenizer.ggml.eos_token_id"),
        )
        .map_err(|e| format(e.to_string()))?;
        let declared = md_u32(md, &format!("{architecture}.context_length"));

        // Read every tensor, re-quantising the slow types, into an in-memory GGUF for candle's loaders.
        let mut tensors: Vec<(String, QTensor)> = Vec::with_capacity(content.tensor_infos.len());
        let mut requantized = 0;
        let mut names: Vec<&String> = content.tensor_infos.keys().collect();
        names.sort();
        for name in names {
            let info = &content.tensor_infos[name];
            let tensor = content
                .tensor(&mut file, name, &Device::Cpu)
                .map_err(|e| format(format!("{name}: {e}")))?;
            let last_dim = info.shape.dims().last().copied().unwrap_or(0);
            let tensor =
                if needs_requant(info.ggml_dtype) && last_dim % GgmlDType::Q8_0.block_size() == 0 {
                    requantized += 1;
                    let dense = tensor
                        .dequantize(&Device::Cpu)
                        .map_err(|e| format(format!("{name}: {e}")))?;
                    QTensor::quantize(&dense, GgmlDType::Q8_0)
                        .map_err(|e| format(format!("{name}: {e}")))?
                } else {
                    tensor
                };
            tensors.push((name.clone(), tensor));
        }
        let metadata: Vec<(&str, &Value)> = md.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let tensor_refs: Vec<(&str, &QTensor)> =
            tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let mut buffer = Cursor::new(Vec::new());
        gguf_file::write(&mut buffer, &metadata, &tensor_refs)
            .map_err(|e| format(format!("re-quantised copy: {e}")))?;
        drop(tensor_refs);
        drop(tensors);
        buffer.set_position(0);
        let content = gguf_file::Content::read(&mut buffer).map_err(|e| format(e.to_string()))?;
        let (weights, context_window) = match architecture.as_str() {
            "llama" => (
                Weights::Llama(
                    quantized_llama::ModelWeights::from_gguf(content, &mut buffer, device)
                        .map_err(|e| format(e.to_string()))?,
                ),
                declared
                    .unwrap_or(LLAMA_MAX_POSITIONS)
                    .min(LLAMA_MAX_POSITIONS),
            ),
            "qwen2" => (
                Weights::Qwen2(
                    quantized_qwen2::ModelWeights::from_gguf(content, &mut buffer, device)
                        .map_err(|e| format(e.to_string()))?,
                ),
                declared.ok_or_else(|| format("missing qwen2.context_length".to_owned()))?,
            ),
            other => {
                return Err(format(format!(
                    "architecture {other:?} is not supported (llama, qwen2)"
                )));
            }
        };
        Ok(Self {
            weights,
            tokenizer: Arc::new(tokenizer),
            template: Arc::new(template),
            context_window,
            architecture,
            requantized,
            device: device.clone(),
        })
    }

    /// A second handle on this model that shares its weights but keeps its own KV cache, so two sequences
    /// can be decoded in turn; `None` for Qwen2, whose candle implementation cannot be copied (one sequence at a
    /// time then).
    pub fn fork(&self) -> Option<Self> {
        let weights = match &self.weights {
            Weights::Llama(m) => Weights::Llama(m.clone()),
            Weights::Qwen2(_) => return None,
        };
        Some(Self {
            weights,
            tokenizer: Arc::clone(&self.tokenizer),
            template: Arc::clone(&self.template),
            context_window: self.context_window,
            architecture: self.architecture.clone(),
            requantized: self.requantized,
            device: self.device.clone(),
        })
    }

    /// Runs `tokens` at positions `pos..` (appending them to the KV cache; `pos == 0` starts a new sequence)
    /// and returns the logits of the last one.
    pub fn forward(&mut self, tokens: &[u32], pos: usize) -> candle_core::Result<Vec<f32>> {
        let input = Tensor::new(tokens, &self.device)?.unsqueeze(0)?;
        let logits = match &mut self.weights {
            Weights::Llama(m) => m.forward(&input, pos)?,
            Weights::Qwen2(m) => m.forward(&input, pos)?,
        };
        logits
            .squeeze(0)?
            .to_dtype(candle_core::DType::F32)?
            .to_vec1()
    }
}
