//! The tokenizer of a GGUF chat model, built from its metadata alone (`tokenizer.ggml.*`): byte-level BPE from
//! the token list and merges, the pre-tokenizer its `pre` names, the control tokens as special tokens, BOS/EOS.
//!
//! candle-core's own `TokenizerFromGguf` adds a prefix space, which is wrong for SmolLM2 (9 of 10 test strings
//! differed from the reference ids); this one matches the Hugging Face tokenizers of both shipped models.

use std::collections::HashMap;

use candle_core::quantized::gguf_file::Value;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::normalizers::unicode::NFC;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, PreTokenizerWrapper, SplitDelimiterBehavior, Tokenizer};

/// GGUF token type of control tokens (`<|im_start|>`, `<|endoftext|>`, ...).
const TOKEN_TYPE_CONTROL: i32 = 3;
/// GGUF token type of user-defined tokens (added tokens that must never be split).
const TOKEN_TYPE_USER_DEFINED: i32 = 4;
/// Qwen2's pre-tokenizer split (the GPT-4 style regex with single digits), from its `tokenizer.json`.
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Tokens that end a turn in the chat formats docpipe knows, besides the declared EOS token.
const END_OF_TURN_TOKENS: [&str; 3] = ["<|im_end|>", "<|endoftext|>", "<|eot_id|>"];

/// Why a tokenizer could not be built from the metadata.
#[derive(Debug, thiserror::Error)]
#[error("GGUF tokenizer: {0}")]
pub struct TokenizerError(pub String);

/// A byte-level BPE tokenizer built from GGUF metadata.
pub struct GgufTokenizer {
    inner: Tokenizer,
    bos: Option<u32>,
    eos: u32,
    /// EOS and every end-of-turn token of the vocabulary: generation stops at any of them.
    stop_ids: Vec<u32>,
    vocab_size: usize,
}

impl std::fmt::Debug for GgufTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufTokenizer")
            .field("vocab_size", &self.vocab_size)
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .finish_non_exhaustive()
    }
}

fn get<'a>(md: &'a HashMap<String, Value>, key: &str) -> Result<&'a Value, TokenizerError> {
    md.get(key)
        .ok_or_else(|| TokenizerError(format!("missing metadata {key}")))
}

fn string_array(md: &HashMap<String, Value>, key: &str) -> Result<Vec<String>, TokenizerError> {
    let values = get(md, key)?
        .to_vec()
        .map_err(|e| TokenizerError(format!("{key}: {e}")))?;
    values
        .iter()
        .map(|v| {
            v.to_string()
                .cloned()
                .map_err(|e| TokenizerError(format!("{key}: {e}")))
        })
        .collect()
}

fn token_id(md: &HashMap<String, Value>, key: &str) -> Option<u32> {
    md.get(key).and_then(|v| v.to_u32().ok())
}

impl GgufTokenizer {
    /// Builds the tokenizer from a GGUF file's metadata.
    pub fn from_metadata(md: &HashMap<String, Value>) -> Result<Self, TokenizerError> {
        let model = get(md, "tokenizer.ggml.model")?
            .to_string()
            .map_err(|e| TokenizerError(e.to_string()))?;
        if model != "gpt2" {
            return Err(TokenizerError(format!(
                "tokenizer model {model:?} is not supported (only byte-level BPE, `gpt2`)"
            )));
        }
        let pre = md
            .get("tokenizer.ggml.pre")
            .and_then(|v| v.to_string().ok())
            .cloned()
            .unwrap_or_default();
        let tokens = string_array(md, "tokenizer.ggml.tokens")?;
        let merges = string_array(md, "tokenizer.ggml.merges")?;
        let types: Vec<i32> = match md.get("tokenizer.ggml.token_type") {
            Some(v) => v
                .to_vec()
                .map_err(|e| TokenizerError(e.to_string()))?
                .iter()
                .map(|t| t.to_i32().unwrap_or(1))
                .collect(),
            None => vec![1; tokens.len()],
        };
        let vocab: Vocab = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), u32::try_from(i).unwrap_or(u32::MAX)))
            .collect();
        let merges: Vec<(String, String)> = merges
            .iter()
            .map(|m| {
                m.split_once(' ')
                    .map(|(a, b)| (a.to_owned(), b.to_owned()))
                    .ok_or_else(|| TokenizerError(format!("bad merge {m:?}")))
            })
            .collect::<Result<_, _>>()?;
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(|e| TokenizerError(format!("BPE: {e}")))?;
        let mut inner = Tokenizer::new(bpe);
        let byte_level = ByteLevel::new(false, true, true);
        let pre_tokenizer: PreTokenizerWrapper = match pre.as_str() {
            "qwen2" => {
                inner
                    .with_normalizer(Some(NFC))
                    .map_err(|e| TokenizerError(e.to_string()))?;
                let split = Split::new(
                    SplitPattern::Regex(QWEN2_SPLIT.to_owned()),
                    SplitDelimiterBehavior::Isolated,
                    false,
                )
                .map_err(|e| TokenizerError(format!("split regex: {e}")))?;
                Sequence::new(vec![
                    split.into(),
                    ByteLevel::new(false, true, false).into(),
                ])
                .into()
            }
            // SmolLM2 and the other GPT-2 style vocabularies: single digits, then GPT-2's byte-level split.
            _ => Sequence::new(vec![Digits::new(true).into(), byte_level.into()]).into(),
        };
        inner.with_pre_tokenizer(Some(pre_tokenizer));
        inner.with_decoder(Some(ByteLevelDecoder::default()));
        let specials: Vec<AddedToken> = tokens
            .iter()
            .zip(&types)
            .filter(|(_, t)| matches!(**t, TOKEN_TYPE_CONTROL | TOKEN_TYPE_USER_DEFINED))
            .map(|(tok, _)| AddedToken::from(tok.clone(), true))
            .collect();
        inner
            .add_special_tokens(specials)
            .map_err(|e| TokenizerError(format!("special tokens: {e}")))?;

        let eos = token_id(md, "tokenizer.ggml.eos_token_id")
            .ok_or_else(|| TokenizerError("missing tokenizer.ggml.eos_token_id".to_owned()))?;
        let add_bos = md
            .get("tokenizer.ggml.add_bos_token")
            .and_then(|v| v.to_bool().ok())
            .unwrap_or(false);
        let bos = token_id(md, "tokenizer.ggml.bos_token_id").filter(|_| add_bos);
        let mut stop_ids = vec![eos];
        for t in END_OF_TURN_TOKENS {
            if let Some(id) = inner.token_to_id(t)
                && !stop_ids.contains(&id)
            {
                stop_ids.push(id);
            }
        }
        Ok(Self {
            inner,
            bos,
            eos,
            stop_ids,
            vocab_size: tokens.len(),
        })
    }

    /// Token ids of `text`; special tokens written in the text (`<|im_start|>`) become their ids, and BOS is
    /// prepended when the model asks for it.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        let encoding = self
            .inner
            .encode_fast(text, false)
            .map_err(|e| TokenizerError(format!("encode: {e}")))?;
        let mut ids = Vec::with_capacity(encoding.len() + 1);
        ids.extend(self.bos);
        ids.extend_from_slice(encoding.get_ids());
        Ok(ids)
    }

    /// Text of `ids`, without special tokens. An incomplete UTF-8 sequence at the end shows as U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> Result<String, TokenizerError> {
        self.inner
            .decode(ids, true)
            .map_err(|e| TokenizerError(format!("decode: {e}")))
    }

    /// Whether generation ends at this token (EOS or an end-of-turn token).
    pub fn is_stop(&self, id: u32) -> bool {
        self.stop_ids.contains(&id)
    }

    /// The end-of-sequence token.
    pub fn eos(&self) -> u32 {
        self.eos
    }

    /// The text of one token as stored in the vocabulary (e.g. `<|im_end|>`).
    pub fn token_text(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Tokens in the vocabulary.
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::chat::registry::{CATALOG, model_path};

    /// The tokenizer of a catalog model, from the GGUF header only (no weights are read).
    fn tokenizer(key: &str) -> GgufTokenizer {
        let dir = std::env::var_os("DOCPIPE_MODELS_DIR").map_or_else(
            || std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models"),
            std::path::PathBuf::from,
        );
        let entry = CATALOG
            .iter()
            .find(|e| e.key == key)
            .expect("catalog entry");
        let path = model_path(&dir, entry);
        let mut file = std::fs::File::open(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (run `make models`)", path.display()));
        let content = candle_core::quantized::gguf_file::Content::read(&mut file).expect("gguf");
        GgufTokenizer::from_metadata(&content.metadata).expect("tokenizer")
    }

    const SAMPLES: [&str; 8] = [
        "Hello, world!",
        "  leading spaces and trailing  ",
        "Numbers: 2024, 3.14159 and 1,000,000.",
        "Unicode: café, naïve, 日本語, emoji 🎉",
        "code:\n\tfn main() { println!(\"hi\"); }\n",
        "<|im_start|>user\nHi<|im_end|>\n",
        "What's the capital of France? It's Paris.",
        "",
    ];

    fn round_trips(t: &GgufTokenizer) {
        for text in SAMPLES {
            let ids = t.encode(text).expect("encode");
            let back = t.inner.decode(&ids, false).expect("decode");
            assert_eq!(back, text, "{ids:?}");
        }
    }

    /// Token ids llama.cpp (the GGUF reference implementation, through llama-cpp-python 0.3.36) gives.
    fn assert_reference(t: &GgufTokenizer, cases: &[(&str, &[u32])]) {
        for (text, want) in cases {
            assert_eq!(t.encode(text).unwrap(), *want, "{text:?}");
        }
    }

    #[test]
    fn smollm2_tokenizer_round_trips_and_matches_the_reference_ids() {
        let t = tokenizer("smollm2");
        assert_eq!(t.vocab_size(), 49152);
        round_trips(&t);
        // Control tokens are single ids, never split; no BOS is added; EOS is <|im_end|>.
        assert_eq!(t.encode("<|im_start|>").unwrap(), [1]);
        assert_eq!(t.eos(), 2);
        assert!(t.is_stop(2) && t.is_stop(0));
        // No prefix space (candle's GGUF tokenizer adds one): "Hello" is one token, as in the HF tokenizer.
        assert_eq!(t.encode("Hello").unwrap().len(), 1);
        // Digits are split one by one.
        assert_eq!(t.encode("2024").unwrap().len(), 4);
        assert_eq!(t.decode(&t.encode("<|im_end|>hi").unwrap()).unwrap(), "hi");
        assert_reference(
            &t,
            &[
                ("Hello", &[19556]),
                (
                    "  leading spaces and trailing  ",
                    &[216, 2899, 5600, 284, 35079, 256],
                ),
                (
                    "Numbers: 2024, 3.14159 and 1,000,000.",
                    &[
                        39006, 42, 216, 34, 32, 34, 36, 28, 216, 35, 30, 33, 36, 33, 37, 41, 284,
                        216, 33, 28, 32, 32, 32, 28, 32, 32, 32, 30,
                    ],
                ),
                (
                    "What's the capital of France? It's Paris.",
                    &[1780, 506, 260, 3575, 282, 4649, 47, 657, 506, 7042, 30],
                ),
                (
                    "code:\n\tfn main() { println!(\"hi\"); }\n",
                    &[
                        4635, 42, 198, 197, 7853, 1085, 1000, 1662, 1628, 34115, 17, 1470, 6004,
                        21646, 4029, 198,
                    ],
                ),
                (
                    "Unicode: café, naïve, 日本語, emoji 🎉",
                    &[
                        3706, 15817, 42, 37366, 28, 15486, 46494, 28, 17097, 241, 115, 40993, 179,
                        120, 248, 28, 649, 33777, 15107, 232, 227,
                    ],
                ),
            ],
        );
    }

    #[test]
    fn qwen2_tokenizer_round_trips() {
        let t = tokenizer("qwen2.5-coder");
        assert_eq!(t.vocab_size(), 151_936);
        round_trips(&t);
        assert_eq!(t.encode("<|im_end|>").unwrap(), [151_645]);
        assert!(t.is_stop(151_645) && t.is_stop(151_643));
        assert_eq!(t.encode("2024").unwrap().len(), 4);
        assert_eq!(t.encode(" hello world").unwrap().len(), 2);
        assert_reference(
            &t,
            &[
                (
                    "Numbers: 2024, 3.14159 and 1,000,000.",
                    &[
                        27237, 25, 220, 17, 15, 17, 19, 11, 220, 18, 13, 16, 19, 16, 20, 24, 323,
                        220, 16, 11, 15, 15, 15, 11, 15, 15, 15, 13,
                    ],
                ),
                (
                    "What's the capital of France? It's Paris.",
                    &[3838, 594, 279, 6722, 315, 9625, 30, 1084, 594, 12095, 13],
                ),
                (
                    "code:\n\tfn main() { println!(\"hi\"); }\n",
                    &[
                        1851, 510, 40095, 1887, 368, 314, 13751, 17223, 6023, 5038, 456,
                    ],
                ),
                (
                    "Unicode: café, naïve, 日本語, emoji 🎉",
                    &[
                        33920, 25, 51950, 11, 94880, 586, 11, 75402, 21894, 102819, 11, 42365,
                        11162, 236, 231,
                    ],
                ),
            ],
        );
    }
}
