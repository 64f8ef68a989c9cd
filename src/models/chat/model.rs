//! Loading a GGUF chat model: on the CPU into docpipe's own forward pass ([`super::cpu_llm`]), on other devices
//! into candle-transformers' quantized llama (SmolLM2) or qwen2 (Qwen2.5) implementation.

use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::{Device, Tensor};
use candle_transformers::models::{quantized_llama, quantized_qwen2};

use super::cpu_llm;
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

/// The transformer, by implementation.
enum Weights {
    /// docpipe's own CPU forward pass: one sequence on shared weights.
    Cpu(Box<cpu_llm::Sequence>),
    /// candle-transformers' llama, for GPUs.
    Llama(quantized_llama::ModelWeights),
    /// candle-transformers' qwen2, for GPUs.
    Qwen2(quantized_qwen2::ModelWeights),
}

/// Which implementation runs the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Implementation {
    /// [`cpu_llm`]: the CPU default.
    Own,
    /// candle-transformers: other devices (and the reference in tests).
    Candle,
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
    /// Bytes of weights held in memory.
    pub weight_bytes: usize,
    /// Bytes of KV cache each token of a sequence takes.
    pub kv_bytes_per_token: usize,
    device: Device,
}

fn md_u32(md: &std::collections::HashMap<String, Value>, key: &str) -> Option<usize> {
    md.get(key)
        .and_then(|v| v.to_u32().ok())
        .map(|v| v as usize)
}

impl ChatModel {
    /// Loads `path` onto `device`: docpipe's own forward pass on the CPU, candle-transformers' elsewhere.
    pub fn load(path: &Path, device: &Device) -> Result<Self, LoadError> {
        let implementation = if device.is_cpu() {
            Implementation::Own
        } else {
            Implementation::Candle
        };
        Self::load_as(path, device, implementation)
    }

    fn load_as(
        path: &Path,
        device: &Device,
        implementation: Implementation,
    ) -> Result<Self, LoadError> {
        let shown = path.display().to_string();
        let format = |message: String| LoadError::Format {
            path: shown.clone(),
            message,
        };
        let file = std::fs::File::open(path).map_err(|source| LoadError::File {
            path: shown.clone(),
            source,
        })?;
        let mut reader = BufReader::new(file);
        let content = gguf_file::Content::read(&mut reader).map_err(|e| format(e.to_string()))?;
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
        let declared = md_u32(md, &format!("{architecture}.context_length"))
            .ok_or_else(|| format(format!("missing {architecture}.context_length")))?;
        let kv_bytes_per_token = {
            let key = |k: &str| md_u32(md, &format!("{architecture}.{k}")).unwrap_or(0);
            let heads = key("attention.head_count").max(1);
            let kv_heads =
                md_u32(md, &format!("{architecture}.attention.head_count_kv")).unwrap_or(heads);
            // Keys and values: f16 in docpipe's pass, f32 in candle's.
            let element = if implementation == Implementation::Own {
                2
            } else {
                4
            };
            2 * key("block_count") * kv_heads * (key("embedding_length") / heads) * element
        };
        let weight_bytes = content
            .tensor_infos
            .values()
            .map(|i| i.shape.elem_count() / i.ggml_dtype.block_size() * i.ggml_dtype.type_size())
            .sum();
        let (weights, context_window, weight_bytes) = match (implementation, architecture.as_str())
        {
            (Implementation::Own, _) => {
                let weights = cpu_llm::Weights::from_gguf(&content, &mut reader, &architecture)
                    .map_err(format)?;
                let bytes = weights.bytes();
                (
                    Weights::Cpu(Box::new(cpu_llm::Sequence::new(Arc::new(weights)))),
                    declared,
                    bytes,
                )
            }
            (Implementation::Candle, "llama") => (
                Weights::Llama(
                    quantized_llama::ModelWeights::from_gguf(content, &mut reader, device)
                        .map_err(|e| format(e.to_string()))?,
                ),
                declared.min(LLAMA_MAX_POSITIONS),
                weight_bytes,
            ),
            (Implementation::Candle, "qwen2") => (
                Weights::Qwen2(
                    quantized_qwen2::ModelWeights::from_gguf(content, &mut reader, device)
                        .map_err(|e| format(e.to_string()))?,
                ),
                declared,
                weight_bytes,
            ),
            (Implementation::Candle, other) => {
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
            weight_bytes,
            kv_bytes_per_token,
            device: device.clone(),
        })
    }

    /// A second handle on this model that shares its weights but keeps its own KV cache, so two sequences
    /// can be decoded in turn; `None` for candle's Qwen2, which cannot be copied (one sequence at a time then).
    pub fn fork(&self) -> Option<Self> {
        let weights = match &self.weights {
            Weights::Cpu(sequence) => Weights::Cpu(Box::new(cpu_llm::Sequence::new(Arc::clone(
                sequence.weights(),
            )))),
            Weights::Llama(m) => Weights::Llama(m.clone()),
            Weights::Qwen2(_) => return None,
        };
        Some(Self {
            weights,
            tokenizer: Arc::clone(&self.tokenizer),
            template: Arc::clone(&self.template),
            context_window: self.context_window,
            architecture: self.architecture.clone(),
            weight_bytes: self.weight_bytes,
            kv_bytes_per_token: self.kv_bytes_per_token,
            device: self.device.clone(),
        })
    }

    /// Runs `tokens` at positions `pos..` (appending them to the KV cache; `pos == 0` starts a new sequence)
    /// and returns the logits of the last one.
    pub fn forward(&mut self, tokens: &[u32], pos: usize) -> candle_core::Result<Vec<f32>> {
        let logits = match &mut self.weights {
            Weights::Cpu(sequence) => {
                return sequence
                    .forward(tokens, pos)
                    .map_err(candle_core::Error::Msg);
            }
            Weights::Llama(m) => {
                m.forward(&Tensor::new(tokens, &self.device)?.unsqueeze(0)?, pos)?
            }
            Weights::Qwen2(m) => {
                m.forward(&Tensor::new(tokens, &self.device)?.unsqueeze(0)?, pos)?
            }
        };
        logits
            .squeeze(0)?
            .to_dtype(candle_core::DType::F32)?
            .to_vec1()
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::models::chat::registry::{CATALOG, model_path};

    fn catalog_path(key: &str) -> PathBuf {
        let dir = std::env::var_os("DOCPIPE_MODELS_DIR").map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).join("models"),
            PathBuf::from,
        );
        let entry = CATALOG
            .iter()
            .find(|e| e.key == key)
            .expect("catalog entry");
        let path = model_path(&dir, entry);
        assert!(
            path.is_file(),
            "{} is missing (run `make models`)",
            path.display()
        );
        path
    }

    fn cosine(a: &[f32], b: &[f32]) -> f64 {
        let dot: f64 = a
            .iter()
            .zip(b)
            .map(|(x, y)| f64::from(*x) * f64::from(*y))
            .sum();
        let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
        dot / (norm(a) * norm(b))
    }

    fn argmax(v: &[f32]) -> usize {
        v.iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, _)| i)
            .expect("logits")
    }

    /// docpipe's forward pass against candle-transformers' on the same GGUF: a prompt in two pieces (prompt
    /// processing, then more over the KV cache), then one decoded token; then docpipe's alone: the prompt in one
    /// piece, and a rewound position, give the same logits as the pieces.
    fn agrees_with_candle(key: &str, kv_bytes_per_token: usize) {
        let path = catalog_path(key);
        let mut own = ChatModel::load_as(&path, &Device::Cpu, Implementation::Own).expect("own");
        let mut reference =
            ChatModel::load_as(&path, &Device::Cpu, Implementation::Candle).expect("candle");
        assert!(own.context_window >= reference.context_window);
        assert_eq!(
            own.kv_bytes_per_token, kv_bytes_per_token,
            "f16 keys and values"
        );
        assert_eq!(
            reference.kv_bytes_per_token,
            2 * kv_bytes_per_token,
            "f32 keys and values"
        );
        let prompt = own
            .tokenizer
            .encode("The quick brown fox jumps over the lazy dog. The capital of France is")
            .expect("encode");
        let split = prompt.len() - 3;
        let steps: Vec<(Vec<u32>, usize)> = vec![
            (prompt[..split].to_vec(), 0),
            (prompt[split..].to_vec(), split),
            (vec![prompt[prompt.len() - 1]], prompt.len()),
        ];
        for (tokens, pos) in steps {
            let a = own.forward(&tokens, pos).expect("own forward");
            let b = reference.forward(&tokens, pos).expect("candle forward");
            assert_eq!(a.len(), b.len());
            let similarity = cosine(&a, &b);
            assert!(similarity > 0.995, "{key} at {pos}: cosine {similarity}");
            assert_eq!(argmax(&a), argmax(&b), "{key} at {pos}: top token differs");
        }
        // A different continuation from `split` on, then the original one again from `split`: the cache must
        // forget the first.
        let whole = own.forward(&prompt, 0).expect("whole prompt");
        let other = own
            .tokenizer
            .encode(" Meanwhile, somewhere else entirely")
            .expect("encode");
        own.forward(&other, split).expect("the other continuation");
        let rewound = own.forward(&prompt[split..], split).expect("rewound");
        // The whole prompt's attention runs as matrix products, the three rewound tokens' as a loop: the sums
        // differ in order only, which can flip the rounding of an 8-bit activation here and there (cosine 0.9993).
        let similarity = cosine(&whole, &rewound);
        assert!(
            similarity > 0.999,
            "{key}: rewinding changed the logits (cosine {similarity})"
        );
        assert_eq!(
            argmax(&whole),
            argmax(&rewound),
            "{key}: rewinding changed the top token"
        );
        let forked = own.fork().expect("the CPU model forks");
        match (&own.weights, &forked.weights) {
            (Weights::Cpu(a), Weights::Cpu(b)) => assert!(Arc::ptr_eq(a.weights(), b.weights())),
            _ => panic!("the CPU runs docpipe's own forward pass"),
        }
    }

    #[test]
    fn smollm2_logits_agree_with_candle_transformers() {
        // 30 layers, 3 KV heads of 64, keys and values in f16.
        agrees_with_candle("smollm2", 30 * 3 * 64 * 2 * 2);
    }

    #[test]
    fn qwen2_logits_agree_with_candle_transformers() {
        // 24 layers, 2 KV heads of 64.
        agrees_with_candle("qwen2.5-coder", 24 * 2 * 64 * 2 * 2);
    }
}
