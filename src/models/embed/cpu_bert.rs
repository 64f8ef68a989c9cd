//! BERT encoder for the CPU: candle's matmuls, with everything between them fused into plain loops.
//!
//! Why not candle-transformers' `BertModel` on the CPU (it still runs on other devices): its element-wise ops
//! (bias adds, residuals, the attention mask, GELU) go through candle's process-wide "barrier pool". That pool
//! serialises concurrent callers behind one lock and spins a helper thread, so the embedder's data-parallel
//! lanes (one sub-batch per thread) could not scale: 2 threads embedded fewer sentences per second than 1 here.
//! Its GELU also calls a scalar `erf` per element, a fifth of the whole forward pass. Here the matmuls stay
//! candle's (gemm, parallel in the current rayon pool) and each step between them is one pass over the data on
//! the calling thread: QKV bias + head split (+ query scaling), masked softmax (over groups of rows whose
//! scores fit a fixed budget, so long inputs do not hold a whole batch's scores), head merge, bias + residual +
//! LayerNorm, bias + GELU with a vectorisable `erf`. Mean pooling and L2 normalisation follow.
//! `tests.rs` checks the result against sentence-transformers' embeddings (cosine ≥ 0.999).

use candle_core::{Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::Config as BertConfig;

use super::EmbedError;

/// Most bytes of attention scores computed at once (a group of rows of one sub-batch).
const SCORES_BUDGET: usize = 8 << 20;
/// Lower bound of the vector norm in L2 normalisation (torch's `F.normalize` default).
const NORM_EPSILON: f32 = 1e-12;

/// A LayerNorm's scale and shift.
struct Norm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
}

/// A dense layer: weight `(out, in)` as a tensor for the matmul, bias on the host for the fused loops.
struct Dense {
    weight: Tensor,
    bias: Vec<f32>,
}

/// One transformer layer.
struct Layer {
    /// Query, key and value projections stacked into one `(3 * hidden, hidden)` matmul.
    qkv: Dense,
    attention_out: Dense,
    attention_norm: Norm,
    intermediate: Dense,
    output: Dense,
    output_norm: Norm,
}

/// The encoder's weights and shape.
pub(super) struct CpuBert {
    word_embeddings: Vec<f32>,
    position_embeddings: Vec<f32>,
    /// Row 0 of the token-type table: every input is a single segment.
    token_type: Vec<f32>,
    embedding_norm: Norm,
    layers: Vec<Layer>,
    hidden: usize,
    heads: usize,
    max_positions: usize,
    eps: f32,
}

impl CpuBert {
    /// Loads the weights of a Hugging Face `BertModel` checkpoint (names without the `bert.` prefix).
    pub(super) fn load(vb: &VarBuilder, config: &BertConfig) -> Result<Self, EmbedError> {
        let hidden = config.hidden_size;
        if config.num_attention_heads == 0 || !hidden.is_multiple_of(config.num_attention_heads) {
            return Err(EmbedError::InvalidConfig(format!(
                "hidden_size {hidden} is not a multiple of num_attention_heads {}",
                config.num_attention_heads
            )));
        }
        let host = |name: &str, shape: &[usize]| -> Result<Vec<f32>, EmbedError> {
            Ok(vb.get(shape, name)?.flatten_all()?.to_vec1::<f32>()?)
        };
        let norm = |prefix: &str| -> Result<Norm, EmbedError> {
            Ok(Norm {
                gamma: host(&format!("{prefix}.LayerNorm.weight"), &[hidden])?,
                beta: host(&format!("{prefix}.LayerNorm.bias"), &[hidden])?,
            })
        };
        let dense = |prefix: &str, out: usize, input: usize| -> Result<Dense, EmbedError> {
            Ok(Dense {
                weight: vb.get((out, input), &format!("{prefix}.weight"))?,
                bias: host(&format!("{prefix}.bias"), &[out])?,
            })
        };
        let intermediate = config.intermediate_size;
        let layers = (0..config.num_hidden_layers)
            .map(|i| {
                let p = format!("encoder.layer.{i}");
                let [q, k, v] = ["query", "key", "value"]
                    .map(|name| dense(&format!("{p}.attention.self.{name}"), hidden, hidden));
                let (q, k, v) = (q?, k?, v?);
                let qkv = Dense {
                    weight: Tensor::cat(&[&q.weight, &k.weight, &v.weight], 0)?,
                    bias: [q.bias, k.bias, v.bias].concat(),
                };
                Ok(Layer {
                    qkv,
                    attention_out: dense(&format!("{p}.attention.output.dense"), hidden, hidden)?,
                    attention_norm: norm(&format!("{p}.attention.output"))?,
                    intermediate: dense(&format!("{p}.intermediate.dense"), intermediate, hidden)?,
                    output: dense(&format!("{p}.output.dense"), hidden, intermediate)?,
                    output_norm: norm(&format!("{p}.output"))?,
                })
            })
            .collect::<Result<Vec<_>, EmbedError>>()?;
        let token_types = host(
            "embeddings.token_type_embeddings.weight",
            &[config.type_vocab_size, hidden],
        )?;
        Ok(Self {
            word_embeddings: host(
                "embeddings.word_embeddings.weight",
                &[config.vocab_size, hidden],
            )?,
            position_embeddings: host(
                "embeddings.position_embeddings.weight",
                &[config.max_position_embeddings, hidden],
            )?,
            token_type: token_types[..hidden].to_vec(),
            embedding_norm: norm("embeddings")?,
            layers,
            hidden,
            heads: config.num_attention_heads,
            max_positions: config.max_position_embeddings,
            #[expect(
                clippy::cast_possible_truncation,
                reason = "LayerNorm epsilon: f32 is the compute precision"
            )]
            eps: config.layer_norm_eps as f32,
        })
    }

    /// Embeds `rows` of token ids: one mean-pooled, L2-normalised vector per row.
    pub(super) fn forward(&self, rows: &[&[u32]]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let width = rows.iter().map(|row| row.len()).max().unwrap_or(0);
        if width == 0 {
            return Err(EmbedError::InvalidConfig("empty input rows".to_owned()));
        }
        if width > self.max_positions {
            return Err(EmbedError::InvalidConfig(format!(
                "{width} tokens exceed the model's {} positions",
                self.max_positions
            )));
        }
        let lengths: Vec<usize> = rows.iter().map(|row| row.len()).collect();
        let mut x = self.embed_tokens(rows, width)?;
        for layer in &self.layers {
            x = self.layer(layer, x, &lengths, width)?;
        }
        Ok(pool(&x, &lengths, width, self.hidden))
    }

    /// Word + position + token-type embeddings, then LayerNorm; `(rows * width, hidden)`, padding rows zero.
    fn embed_tokens(&self, rows: &[&[u32]], width: usize) -> Result<Vec<f32>, EmbedError> {
        let h = self.hidden;
        let vocab = self.word_embeddings.len() / h;
        let mut x = vec![0.0f32; rows.len() * width * h];
        for (row, out_row) in rows.iter().zip(x.chunks_exact_mut(width * h)) {
            for (position, (&id, out)) in row.iter().zip(out_row.chunks_exact_mut(h)).enumerate() {
                let id = id as usize;
                if id >= vocab {
                    return Err(EmbedError::InvalidConfig(format!(
                        "token id {id} outside the vocabulary of {vocab}"
                    )));
                }
                let word = &self.word_embeddings[id * h..(id + 1) * h];
                let pos = &self.position_embeddings[position * h..(position + 1) * h];
                for (((o, w), p), t) in out.iter_mut().zip(word).zip(pos).zip(&self.token_type) {
                    *o = w + p + t;
                }
                layer_norm(out, &self.embedding_norm, self.eps);
            }
        }
        Ok(x)
    }

    /// One transformer layer over `x` (`(rows * width, hidden)`).
    fn layer(
        &self,
        layer: &Layer,
        x: Vec<f32>,
        lengths: &[usize],
        width: usize,
    ) -> Result<Vec<f32>, EmbedError> {
        let (h, heads) = (self.hidden, self.heads);
        let head_dim = h / heads;
        let batch = lengths.len();
        let tokens = batch * width;
        let x = Tensor::from_vec(x, (tokens, h), &Device::Cpu)?;

        // Attention: q, k, v split into (batch, heads, width, head_dim) with their biases added and the
        // query pre-scaled by 1/sqrt(head_dim).
        let qkv = matmul_t(&x, &layer.qkv.weight)?;
        #[expect(
            clippy::cast_precision_loss,
            reason = "head_dim is a small integer (32 here)"
        )]
        let scale = 1.0 / (head_dim as f32).sqrt();
        let [q, k, v] = split_heads(&qkv, &layer.qkv.bias, batch, width, heads, head_dim, scale);
        // Attention in groups of rows whose scores fit [`SCORES_BUDGET`]: short inputs go in one batched
        // matmul, long ones a few rows at a time, so memory stays bounded whatever the batch.
        let mut context = vec![0.0f32; q.len()];
        let row_values = heads * width * head_dim;
        let group = (SCORES_BUDGET / (heads * width * width * size_of::<f32>())).max(1);
        for (g, group_lengths) in lengths.chunks(group).enumerate() {
            let rows = group_lengths.len();
            let span = g * group * row_values..(g * group + rows) * row_values;
            let shape = (rows, heads, width, head_dim);
            let q_g = Tensor::from_slice(&q[span.clone()], shape, &Device::Cpu)?;
            let k_g = Tensor::from_slice(&k[span.clone()], shape, &Device::Cpu)?;
            let v_g = Tensor::from_slice(&v[span.clone()], shape, &Device::Cpu)?;
            let mut scores = q_g.matmul(&k_g.t()?)?.flatten_all()?.to_vec1::<f32>()?;
            masked_softmax(&mut scores, group_lengths, heads, width);
            let probs = Tensor::from_vec(scores, (rows, heads, width, width), &Device::Cpu)?;
            context[span].copy_from_slice(&probs.matmul(&v_g)?.flatten_all()?.to_vec1::<f32>()?);
        }
        let context = Tensor::from_vec(
            merge_heads(&context, batch, width, heads, head_dim),
            (tokens, h),
            &Device::Cpu,
        )?;
        let residual = x.flatten_all()?.to_vec1::<f32>()?;
        let mut attended = matmul_t(&context, &layer.attention_out.weight)?;
        add_bias_residual_norm(
            &mut attended,
            &layer.attention_out.bias,
            &residual,
            &layer.attention_norm,
            self.eps,
        );

        // Feed-forward: GELU(x W1 + b1) W2 + b2, residual, LayerNorm.
        let attended_t = Tensor::from_vec(attended, (tokens, h), &Device::Cpu)?;
        let mut inner = matmul_t(&attended_t, &layer.intermediate.weight)?;
        add_bias_gelu(&mut inner, &layer.intermediate.bias);
        let inner = Tensor::from_vec(inner, (tokens, layer.intermediate.bias.len()), &Device::Cpu)?;
        let mut out = matmul_t(&inner, &layer.output.weight)?;
        let attended = attended_t.flatten_all()?.to_vec1::<f32>()?;
        add_bias_residual_norm(
            &mut out,
            &layer.output.bias,
            &attended,
            &layer.output_norm,
            self.eps,
        );
        Ok(out)
    }
}

/// `x · weightᵀ` as a flat host vector.
fn matmul_t(x: &Tensor, weight: &Tensor) -> Result<Vec<f32>, EmbedError> {
    Ok(x.matmul(&weight.t()?)?.flatten_all()?.to_vec1::<f32>()?)
}

/// Splits `(batch * width, 3 * hidden)` projections into q, k, v of `(batch, heads, width, head_dim)`, adding
/// the bias and multiplying q by `scale`.
fn split_heads(
    qkv: &[f32],
    bias: &[f32],
    batch: usize,
    width: usize,
    heads: usize,
    head_dim: usize,
    scale: f32,
) -> [Vec<f32>; 3] {
    let hidden = heads * head_dim;
    let mut parts = [(); 3].map(|()| vec![0.0f32; batch * width * hidden]);
    for (token, projections) in qkv.chunks_exact(3 * hidden).enumerate() {
        let (b, t) = (token / width, token % width);
        for (part, out) in parts.iter_mut().enumerate() {
            let factor = if part == 0 { scale } else { 1.0 };
            for head in 0..heads {
                let src = part * hidden + head * head_dim;
                let dst = ((b * heads + head) * width + t) * head_dim;
                for ((o, p), bias) in out[dst..dst + head_dim]
                    .iter_mut()
                    .zip(&projections[src..src + head_dim])
                    .zip(&bias[src..src + head_dim])
                {
                    *o = (p + bias) * factor;
                }
            }
        }
    }
    parts
}

/// Softmax over each row of `(rows, heads, width, width)` scores, over the row's real keys only (padding
/// keys get probability 0).
fn masked_softmax(scores: &mut [f32], lengths: &[usize], heads: usize, width: usize) {
    for (b, block) in scores.chunks_exact_mut(heads * width * width).enumerate() {
        let real = lengths[b];
        for row in block.chunks_exact_mut(width) {
            let (keys, padding) = row.split_at_mut(real);
            crate::models::math::softmax(keys);
            padding.fill(0.0);
        }
    }
}

/// `(batch, heads, width, head_dim)` back to `(batch * width, heads * head_dim)`.
fn merge_heads(
    context: &[f32],
    batch: usize,
    width: usize,
    heads: usize,
    head_dim: usize,
) -> Vec<f32> {
    let hidden = heads * head_dim;
    let mut out = vec![0.0f32; batch * width * hidden];
    for (index, values) in context.chunks_exact(head_dim).enumerate() {
        let t = index % width;
        let head = (index / width) % heads;
        let b = index / (width * heads);
        let dst = (b * width + t) * hidden + head * head_dim;
        out[dst..dst + head_dim].copy_from_slice(values);
    }
    out
}

/// `x = LayerNorm(x + bias + residual)`, row by row.
fn add_bias_residual_norm(x: &mut [f32], bias: &[f32], residual: &[f32], norm: &Norm, eps: f32) {
    let h = bias.len();
    for (row, res) in x.chunks_exact_mut(h).zip(residual.chunks_exact(h)) {
        for ((v, b), r) in row.iter_mut().zip(bias).zip(res) {
            *v += b + r;
        }
        layer_norm(row, norm, eps);
    }
}

/// LayerNorm of one row in place (biased variance, as torch computes it).
fn layer_norm(row: &mut [f32], norm: &Norm, eps: f32) {
    #[expect(
        clippy::cast_precision_loss,
        reason = "row length is the hidden size (384)"
    )]
    let n = row.len() as f32;
    let mean = row.iter().sum::<f32>() / n;
    let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
    let inv = 1.0 / (var + eps).sqrt();
    for ((v, g), b) in row.iter_mut().zip(&norm.gamma).zip(&norm.beta) {
        *v = (*v - mean) * inv * g + b;
    }
}

/// `x = GELU(x + bias)` with the exact (erf) GELU, row by row.
fn add_bias_gelu(x: &mut [f32], bias: &[f32]) {
    for row in x.chunks_exact_mut(bias.len()) {
        for (v, b) in row.iter_mut().zip(bias) {
            let y = *v + b;
            *v = 0.5 * y * (1.0 + erf(y * std::f32::consts::FRAC_1_SQRT_2));
        }
    }
}

/// `erf` as a rational function of x² on [-4, 4] (±1 beyond, where erf is 1 to f32 precision): max error about
/// 7e-8, with no branches or library calls, so loops over it vectorise.
fn erf(x: f32) -> f32 {
    const P: [f32; 7] = [
        -2.726_142_3e-10,
        2.770_681_4e-8,
        -2.101_024e-6,
        -5.692_506_4e-5,
        -7.349_906_3e-4,
        -2.954_6e-3,
        -1.609_603_3e-2,
    ];
    const Q: [f32; 5] = [
        -1.456_607_2e-5,
        -2.133_740_6e-4,
        -1.682_827e-3,
        -7.373_329e-3,
        -1.426_474e-2,
    ];
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let p = P.iter().fold(0.0_f32, |acc, c| acc.mul_add(x2, *c)) * x;
    let q = Q.iter().fold(0.0_f32, |acc, c| acc.mul_add(x2, *c));
    p / q
}

/// Mean over each row's real tokens, then L2 normalisation (sentence-transformers' Pooling + Normalize).
fn pool(x: &[f32], lengths: &[usize], width: usize, hidden: usize) -> Vec<Vec<f32>> {
    lengths
        .iter()
        .zip(x.chunks_exact(width * hidden))
        .map(|(&real, tokens)| {
            let mut mean = vec![0.0f32; hidden];
            for token in tokens.chunks_exact(hidden).take(real) {
                mean.iter_mut().zip(token).for_each(|(m, v)| *m += v);
            }
            #[expect(clippy::cast_precision_loss, reason = "at most 256 tokens")]
            let count = real.max(1) as f32;
            mean.iter_mut().for_each(|m| *m /= count);
            let norm = mean
                .iter()
                .map(|m| m * m)
                .sum::<f32>()
                .sqrt()
                .max(NORM_EPSILON);
            mean.iter_mut().for_each(|m| *m /= norm);
            mean
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// erf by its Maclaurin series in f64 (exact to ~1e-9 for |x| <= 4); 1 beyond 4 (erf(4) = 1 - 1.5e-8).
    fn reference_erf(x: f64) -> f64 {
        if x.abs() > 4.0 {
            return x.signum();
        }
        let (mut term, mut sum) = (x, x);
        for n in 1..200 {
            let n = f64::from(n);
            term *= -x * x / n;
            sum += term / (2.0 * n + 1.0);
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }

    #[test]
    fn erf_is_within_1e_6_of_the_series() {
        let worst = (-6000..=6000)
            .map(|i| {
                let x = f64::from(i) / 1000.0;
                #[expect(clippy::cast_possible_truncation, reason = "test input range")]
                let ours = f64::from(erf(x as f32));
                (ours - reference_erf(x)).abs()
            })
            .fold(0.0, f64::max);
        assert!(worst < 1e-6, "max |erf error| {worst}");
    }

    #[test]
    fn masked_softmax_ignores_padding_keys() {
        // One row of width 3 with 2 real keys, one head.
        let mut scores = vec![1.0, 1.0, 100.0, 0.0, 2.0, 50.0, 3.0, 3.0, 3.0];
        masked_softmax(&mut scores, &[2], 1, 3);
        for row in scores.chunks(3) {
            assert!((row[0] + row[1] - 1.0).abs() < 1e-6);
            assert!(row[2].abs() < f32::EPSILON);
        }
        assert!((scores[0] - 0.5).abs() < 1e-6);
    }

    #[test]
    fn split_then_merge_heads_round_trips() {
        let (batch, width, heads, head_dim) = (2, 3, 2, 2);
        let hidden = heads * head_dim;
        let qkv: Vec<f32> = (0..batch * width * 3 * hidden).map(|i| i as f32).collect();
        let [q, k, v] = split_heads(
            &qkv,
            &vec![0.0; 3 * hidden],
            batch,
            width,
            heads,
            head_dim,
            1.0,
        );
        for (part, split) in [q, k, v].iter().enumerate() {
            let merged = merge_heads(split, batch, width, heads, head_dim);
            let expected: Vec<f32> = qkv
                .chunks(3 * hidden)
                .flat_map(|t| t[part * hidden..(part + 1) * hidden].to_vec())
                .collect();
            assert_eq!(merged, expected);
        }
    }
}
