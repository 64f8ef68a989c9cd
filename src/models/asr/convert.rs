//! Converts Whisper tiny.en from CTranslate2's `model.bin` into the ggml file whisper.cpp loads.
//!
//! Output layout (little-endian): magic `ggml`, 11 `i32` hyper-parameters, the mel filterbank (`i32 n_mels`,
//! `i32 n_freqs`, `f32` data), the vocabulary (`i32 count`, then `i32 length + bytes` per token for the GPT-2
//! ids; whisper.cpp adds the special tokens itself), then each tensor as `i32 n_dims | i32 name_len | i32 ftype
//! | dims innermost first | name | data`. Names are OpenAI's (`encoder.blocks.0.attn.query.weight`, ...).
//! CTranslate2 fuses q/k/v (self-attention) and k/v (cross-attention) into one projection: they are split here,
//! and the key biases (always zero in Whisper) are dropped because whisper.cpp has no such tensor.
//! Weight matrices (and the token embedding) are written as Q8_0 by default: 32 values per block, one f16
//! scale and 32 `i8`, as ggml's own quantizer writes them. whisper.cpp's Q8_0 kernels ran tiny.en about a
//! quarter faster than f16 here, with the same word error rate (`bench/asr.sh`); convolutions stay f16 and
//! vectors f32, which is what whisper.cpp expects of a "mostly Q8_0" file.

use std::io::Write;
use std::path::Path;

use half::f16;

use super::ct2::{Ct2Error, Ct2Model, DType, Variable};
use super::mel;

/// `ggml` as a little-endian u32.
pub const GGML_MAGIC: u32 = 0x6767_6d6c;
/// Values per Q8_0 block (ggml's `QK8_0`).
const Q8_0_BLOCK: usize = 32;
/// ggml's quantization version, stored in `ftype` as `version * 1000 + ftype` (as its quantizer does).
const QNT_VERSION: i32 = 2;
/// GPT-2 byte-level tokens (ids below `<|endoftext|>`); whisper.cpp derives the special tokens from n_vocab.
pub const N_TEXT_TOKENS: usize = 50_256;

/// Whisper's hyper-parameters as whisper.cpp reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HParams {
    pub n_vocab: i32,
    pub n_audio_ctx: i32,
    pub n_audio_state: i32,
    pub n_audio_head: i32,
    pub n_audio_layer: i32,
    pub n_text_ctx: i32,
    pub n_text_state: i32,
    pub n_text_head: i32,
    pub n_text_layer: i32,
    pub n_mels: i32,
    pub ftype: i32,
}

impl HParams {
    fn as_array(self) -> [i32; 11] {
        [
            self.n_vocab,
            self.n_audio_ctx,
            self.n_audio_state,
            self.n_audio_head,
            self.n_audio_layer,
            self.n_text_ctx,
            self.n_text_state,
            self.n_text_head,
            self.n_text_layer,
            self.n_mels,
            self.ftype,
        ]
    }
}

/// Why a conversion failed.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error(transparent)]
    Ct2(#[from] Ct2Error),
    #[error("the model is a {0}, not a WhisperSpec")]
    NotWhisper(String),
    #[error("model.bin has no variable {0}")]
    Missing(String),
    #[error("model.bin: {name} has shape {dims:?} and type {dtype:?}, expected {expected}")]
    Shape {
        name: String,
        dims: Vec<usize>,
        dtype: DType,
        expected: String,
    },
    #[error("vocabulary.txt: {0}")]
    Vocabulary(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// How a tensor's values are stored in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    F32,
    F16,
    /// Blocks of 32: an f16 scale, then 32 `i8` (ggml's `block_q8_0`).
    Q8_0,
}

impl Encoding {
    /// ggml's tensor type code.
    fn ggml_type(self) -> i32 {
        match self {
            Self::F32 => 0,
            Self::F16 => 1,
            Self::Q8_0 => 8,
        }
    }

    /// Bytes used by `elements` values.
    pub fn bytes(self, elements: usize) -> usize {
        match self {
            Self::F32 => elements * 4,
            Self::F16 => elements * 2,
            Self::Q8_0 => elements / Q8_0_BLOCK * (2 + Q8_0_BLOCK),
        }
    }

    /// whisper.cpp's file `ftype` when the weight matrices use this encoding.
    fn file_ftype(self) -> i32 {
        match self {
            Self::F32 => 0,
            Self::F16 => 1,
            Self::Q8_0 => QNT_VERSION * 1000 + 7,
        }
    }
}

/// What a tensor is, which decides its encoding.
#[derive(Debug, Clone, Copy)]
enum Role {
    /// Biases, norms, positional embeddings: always f32.
    Vector,
    /// Convolution kernels: always f16.
    Conv,
    /// Weight matrices and the token embedding: the model's chosen encoding.
    Matrix,
}

/// A tensor ready to be written.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// whisper.cpp's name.
    pub name: String,
    /// Shape, outermost first.
    pub dims: Vec<usize>,
    /// How `data` stores the values.
    pub encoding: Encoding,
    /// The values, little-endian, in the written encoding.
    pub data: Vec<u8>,
}

/// The converted model before it is serialised.
#[derive(Debug, Clone)]
pub struct GgmlWhisper {
    pub hparams: HParams,
    pub mel_filters: Vec<f32>,
    pub vocab: Vec<Vec<u8>>,
    pub tensors: Vec<Tensor>,
}

/// Reads `model.bin` and `vocabulary.txt` from `ct2_dir` and writes the ggml model to `out` (through a
/// temporary file renamed into place, so a crash never leaves a half-written model).
pub fn convert_dir(
    ct2_dir: &Path,
    out: &Path,
    matrices: Encoding,
) -> Result<GgmlWhisper, ConvertError> {
    let read = |name: &str| {
        let path = ct2_dir.join(name);
        std::fs::read(&path).map_err(|source| ConvertError::Io {
            path: path.display().to_string(),
            source,
        })
    };
    let model = Ct2Model::parse(&read("model.bin")?)?;
    let vocab_text = String::from_utf8(read("vocabulary.txt")?)
        .map_err(|_| ConvertError::Vocabulary("not UTF-8".into()))?;
    let converted = convert(&model, &vocab_text, matrices)?;
    let io = |source| ConvertError::Io {
        path: out.display().to_string(),
        source,
    };
    let tmp = out.with_extension(format!("part{}", std::process::id()));
    let mut file = std::io::BufWriter::new(std::fs::File::create(&tmp).map_err(io)?);
    converted.write(&mut file).map_err(io)?;
    file.into_inner()
        .map_err(|e| io(e.into_error()))?
        .sync_all()
        .map_err(io)?;
    std::fs::rename(&tmp, out).map_err(io)?;
    Ok(converted)
}

/// Converts a parsed model and its `vocabulary.txt`, writing the weight matrices in `matrices`.
pub fn convert(
    model: &Ct2Model,
    vocabulary: &str,
    matrices: Encoding,
) -> Result<GgmlWhisper, ConvertError> {
    if model.spec != "WhisperSpec" {
        return Err(ConvertError::NotWhisper(model.spec.clone()));
    }
    let get = |name: &str| {
        model
            .get(name)
            .ok_or_else(|| ConvertError::Missing(name.to_owned()))
    };
    let heads = |name: &str| -> Result<i32, ConvertError> {
        let v = get(name)?;
        v.scalar_int()
            .and_then(|h| i32::try_from(h).ok())
            .ok_or_else(|| shape_error(name, v, "an integer scalar"))
    };
    let count_layers = |prefix: &str| {
        (0..)
            .take_while(|i| {
                model
                    .variables
                    .contains_key(&format!("{prefix}/layer_{i}/ffn/layer_norm/gamma"))
            })
            .count()
    };
    let emb = get("decoder/embeddings/weight")?;
    let enc_pe = get("encoder/position_encodings/encodings")?;
    let dec_pe = get("decoder/position_encodings/encodings")?;
    let conv1 = get("encoder/conv1/weight")?;
    let dim = |v: &Variable, i: usize, name: &str| -> Result<i32, ConvertError> {
        v.dims
            .get(i)
            .and_then(|&d| i32::try_from(d).ok())
            .ok_or_else(|| shape_error(name, v, "a matrix"))
    };
    let hparams = HParams {
        n_vocab: dim(emb, 0, "decoder/embeddings/weight")?,
        n_audio_ctx: dim(enc_pe, 0, "encoder/position_encodings/encodings")?,
        n_audio_state: dim(enc_pe, 1, "encoder/position_encodings/encodings")?,
        n_audio_head: heads("encoder/num_heads")?,
        n_audio_layer: count_layers("encoder") as i32,
        n_text_ctx: dim(dec_pe, 0, "decoder/position_encodings/encodings")?,
        n_text_state: dim(dec_pe, 1, "decoder/position_encodings/encodings")?,
        n_text_head: heads("decoder/num_heads")?,
        n_text_layer: count_layers("decoder") as i32,
        n_mels: dim(conv1, 1, "encoder/conv1/weight")?,
        ftype: matrices.file_ftype(),
    };
    if hparams.n_mels as usize != mel::N_MELS {
        return Err(shape_error(
            "encoder/conv1/weight",
            conv1,
            "80 mel input channels",
        ));
    }

    let mut tensors = Vec::new();
    let mut add = |name: String, v: &Variable, role: Role| -> Result<(), ConvertError> {
        let encoding = match role {
            Role::Vector => Encoding::F32,
            Role::Conv => Encoding::F16,
            Role::Matrix => matrices,
        };
        tensors.push(tensor(name, v, encoding)?);
        Ok(())
    };
    let state = hparams.n_audio_state as usize;
    add(
        "encoder.positional_embedding".into(),
        get("encoder/position_encodings/encodings")?,
        Role::Vector,
    )?;
    for conv in ["conv1", "conv2"] {
        add(
            format!("encoder.{conv}.weight"),
            get(&format!("encoder/{conv}/weight"))?,
            Role::Conv,
        )?;
        let mut bias = get(&format!("encoder/{conv}/bias"))?.clone();
        // whisper.cpp keeps conv biases as [n, 1] f32.
        bias.dims.push(1);
        add(format!("encoder.{conv}.bias"), &bias, Role::Vector)?;
    }
    for l in 0..hparams.n_audio_layer {
        let src = format!("encoder/layer_{l}");
        let dst = format!("encoder.blocks.{l}");
        self_attention(&mut add, &get, &src, &dst, state)?;
        ffn(&mut add, &get, &src, &dst)?;
    }
    norm(&mut add, &get, "encoder/layer_norm", "encoder.ln_post")?;

    add(
        "decoder.positional_embedding".into(),
        get("decoder/position_encodings/encodings")?,
        Role::Vector,
    )?;
    add("decoder.token_embedding.weight".into(), emb, Role::Matrix)?;
    let text_state = hparams.n_text_state as usize;
    for l in 0..hparams.n_text_layer {
        let src = format!("decoder/layer_{l}");
        let dst = format!("decoder.blocks.{l}");
        self_attention(&mut add, &get, &src, &dst, text_state)?;
        // Cross-attention: linear_0 = query, linear_1 = fused key/value, linear_2 = out.
        let a = format!("{src}/attention");
        norm(
            &mut add,
            &get,
            &format!("{a}/layer_norm"),
            &format!("{dst}.cross_attn_ln"),
        )?;
        linear(
            &mut add,
            &get,
            &format!("{a}/linear_0"),
            &format!("{dst}.cross_attn.query"),
        )?;
        let kv_w = get(&format!("{a}/linear_1/weight"))?;
        let kv_b = get(&format!("{a}/linear_1/bias"))?;
        expect_rows(&format!("{a}/linear_1"), kv_w, 2 * text_state)?;
        add(
            format!("{dst}.cross_attn.key.weight"),
            &kv_w.rows(0..text_state),
            Role::Matrix,
        )?;
        add(
            format!("{dst}.cross_attn.value.weight"),
            &kv_w.rows(text_state..2 * text_state),
            Role::Matrix,
        )?;
        add(
            format!("{dst}.cross_attn.value.bias"),
            &kv_b.rows(text_state..2 * text_state),
            Role::Vector,
        )?;
        linear(
            &mut add,
            &get,
            &format!("{a}/linear_2"),
            &format!("{dst}.cross_attn.out"),
        )?;
        ffn(&mut add, &get, &src, &dst)?;
    }
    norm(&mut add, &get, "decoder/layer_norm", "decoder.ln")?;

    Ok(GgmlWhisper {
        hparams,
        mel_filters: mel::whisper_filters(),
        vocab: parse_vocabulary(vocabulary)?,
        tensors,
    })
}

type Add<'a> = dyn FnMut(String, &Variable, Role) -> Result<(), ConvertError> + 'a;
type Get<'a> = dyn Fn(&str) -> Result<&'a Variable, ConvertError> + 'a;

fn self_attention(
    add: &mut Add<'_>,
    get: &Get<'_>,
    src: &str,
    dst: &str,
    state: usize,
) -> Result<(), ConvertError> {
    let a = format!("{src}/self_attention");
    norm(
        add,
        get,
        &format!("{a}/layer_norm"),
        &format!("{dst}.attn_ln"),
    )?;
    let w = get(&format!("{a}/linear_0/weight"))?;
    let b = get(&format!("{a}/linear_0/bias"))?;
    expect_rows(&format!("{a}/linear_0"), w, 3 * state)?;
    add(
        format!("{dst}.attn.query.weight"),
        &w.rows(0..state),
        Role::Matrix,
    )?;
    add(
        format!("{dst}.attn.query.bias"),
        &b.rows(0..state),
        Role::Vector,
    )?;
    add(
        format!("{dst}.attn.key.weight"),
        &w.rows(state..2 * state),
        Role::Matrix,
    )?;
    add(
        format!("{dst}.attn.value.weight"),
        &w.rows(2 * state..3 * state),
        Role::Matrix,
    )?;
    add(
        format!("{dst}.attn.value.bias"),
        &b.rows(2 * state..3 * state),
        Role::Vector,
    )?;
    linear(
        add,
        get,
        &format!("{a}/linear_1"),
        &format!("{dst}.attn.out"),
    )
}

fn ffn(add: &mut Add<'_>, get: &Get<'_>, src: &str, dst: &str) -> Result<(), ConvertError> {
    norm(
        add,
        get,
        &format!("{src}/ffn/layer_norm"),
        &format!("{dst}.mlp_ln"),
    )?;
    linear(
        add,
        get,
        &format!("{src}/ffn/linear_0"),
        &format!("{dst}.mlp.0"),
    )?;
    linear(
        add,
        get,
        &format!("{src}/ffn/linear_1"),
        &format!("{dst}.mlp.2"),
    )
}

fn linear(add: &mut Add<'_>, get: &Get<'_>, src: &str, dst: &str) -> Result<(), ConvertError> {
    add(
        format!("{dst}.weight"),
        get(&format!("{src}/weight"))?,
        Role::Matrix,
    )?;
    add(
        format!("{dst}.bias"),
        get(&format!("{src}/bias"))?,
        Role::Vector,
    )
}

fn norm(add: &mut Add<'_>, get: &Get<'_>, src: &str, dst: &str) -> Result<(), ConvertError> {
    add(
        format!("{dst}.weight"),
        get(&format!("{src}/gamma"))?,
        Role::Vector,
    )?;
    add(
        format!("{dst}.bias"),
        get(&format!("{src}/beta"))?,
        Role::Vector,
    )
}

fn expect_rows(name: &str, v: &Variable, rows: usize) -> Result<(), ConvertError> {
    if v.dims.first() == Some(&rows) {
        Ok(())
    } else {
        Err(shape_error(name, v, &format!("{rows} rows")))
    }
}

fn shape_error(name: &str, v: &Variable, expected: &str) -> ConvertError {
    ConvertError::Shape {
        name: name.to_owned(),
        dims: v.dims.clone(),
        dtype: v.dtype,
        expected: expected.to_owned(),
    }
}

/// Re-encodes a float variable in `encoding`.
fn tensor(name: String, v: &Variable, encoding: Encoding) -> Result<Tensor, ConvertError> {
    if v.dtype == DType::F16 && encoding == Encoding::F16 {
        // Already in the written encoding: copy as is.
        return Ok(Tensor {
            name,
            dims: v.dims.clone(),
            encoding,
            data: v.data.clone(),
        });
    }
    let values: Vec<f32> = match v.dtype {
        DType::F32 => v
            .data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        DType::F16 => v
            .data
            .chunks_exact(2)
            .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        DType::Bf16 => v
            .data
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        DType::I8 | DType::I16 | DType::I32 => {
            return Err(shape_error(
                &name,
                v,
                "float weights (int8 models are not supported)",
            ));
        }
    };
    let data = match encoding {
        Encoding::F32 => values.iter().flat_map(|x| x.to_le_bytes()).collect(),
        Encoding::F16 => values
            .iter()
            .flat_map(|&x| f16::from_f32(x).to_le_bytes())
            .collect(),
        Encoding::Q8_0 => {
            // Rows are the innermost (last) dimension; blocks never straddle rows.
            if v.dims.last().is_none_or(|row| row % Q8_0_BLOCK != 0) {
                return Err(shape_error(
                    &name,
                    v,
                    "rows of a multiple of 32 values for Q8_0",
                ));
            }
            quantize_q8_0(&values)
        }
    };
    Ok(Tensor {
        name,
        dims: v.dims.clone(),
        encoding,
        data,
    })
}

/// ggml's Q8_0: per block of 32 values, the scale `d = max|x| / 127` as f16, then `round(x / d)` as `i8`.
pub fn quantize_q8_0(values: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(Encoding::Q8_0.bytes(values.len()));
    for block in values.chunks_exact(Q8_0_BLOCK) {
        let amax = block.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        let d = amax / 127.0;
        let inverse = if d == 0.0 { 0.0 } else { 1.0 / d };
        out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
        #[expect(
            clippy::cast_possible_truncation,
            reason = "|x / d| <= 127 by construction of d"
        )]
        out.extend(block.iter().map(|x| (x * inverse).round() as i8 as u8));
    }
    out
}

/// GPT-2's byte-to-unicode table, inverted: the character each byte is spelled with maps back to the byte.
fn unicode_to_byte() -> std::collections::HashMap<char, u8> {
    let printable = |b: u32| {
        (u32::from(b'!')..=u32::from(b'~')).contains(&b)
            || (0xA1..=0xAC).contains(&b)
            || (0xAE..=0xFF).contains(&b)
    };
    let mut map = std::collections::HashMap::new();
    let mut shifted = 0u32;
    for b in 0u32..256 {
        let c = if printable(b) {
            b
        } else {
            shifted += 1;
            255 + shifted
        };
        let ch =
            char::from_u32(c).expect("GPT-2's table only uses valid code points. This is a bug.");
        map.insert(ch, b as u8);
    }
    map
}

/// The raw bytes of the first [`N_TEXT_TOKENS`] tokens of `vocabulary.txt` (one token per line, GPT-2 spelling).
pub fn parse_vocabulary(text: &str) -> Result<Vec<Vec<u8>>, ConvertError> {
    let table = unicode_to_byte();
    let lines: Vec<&str> = text.split('\n').take(N_TEXT_TOKENS).collect();
    if lines.len() < N_TEXT_TOKENS {
        return Err(ConvertError::Vocabulary(format!(
            "{} tokens, expected at least {N_TEXT_TOKENS}",
            lines.len()
        )));
    }
    lines
        .iter()
        .enumerate()
        .map(|(i, line)| {
            line.chars()
                .map(|c| {
                    table.get(&c).copied().ok_or_else(|| {
                        ConvertError::Vocabulary(format!(
                            "token {i} has a character outside GPT-2's table"
                        ))
                    })
                })
                .collect()
        })
        .collect()
}

impl GgmlWhisper {
    /// Serialises the model in whisper.cpp's format.
    pub fn write(&self, w: &mut impl Write) -> std::io::Result<()> {
        let i32le = |w: &mut dyn Write, v: i32| w.write_all(&v.to_le_bytes());
        w.write_all(&GGML_MAGIC.to_le_bytes())?;
        for v in self.hparams.as_array() {
            i32le(w, v)?;
        }
        i32le(w, mel::N_MELS as i32)?;
        i32le(w, mel::N_FREQS as i32)?;
        for x in &self.mel_filters {
            w.write_all(&x.to_le_bytes())?;
        }
        i32le(w, self.vocab.len() as i32)?;
        for token in &self.vocab {
            i32le(w, token.len() as i32)?;
            w.write_all(token)?;
        }
        for t in &self.tensors {
            i32le(w, t.dims.len() as i32)?;
            i32le(w, t.name.len() as i32)?;
            i32le(w, t.encoding.ggml_type())?;
            for &d in t.dims.iter().rev() {
                i32le(w, d as i32)?;
            }
            w.write_all(t.name.as_bytes())?;
            w.write_all(&t.data)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
