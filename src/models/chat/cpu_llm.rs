//! docpipe's own CPU forward pass for the llama (SmolLM2) and qwen2 (Qwen2.5) chat models.
//!
//! Why not candle-transformers' quantized models: their decode spends half its time in candle's Q8_0 dot
//! product, called once per output row, and candle has no SIMD kernel for Q4_1 or Q5_0 at all, so SmolLM2 and
//! Qwen2.5 ran at 0.6–0.8x llama.cpp. Here:
//! - weights stay in their GGUF block formats (converted exactly into [`qmat::QMatrix`]), and every matrix
//!   product runs integer SIMD kernels over activations quantized to 8 bits, over all the rows of a
//!   matrix at once;
//! - products that read the same input (q, k and v; gate and up) run as one parallel step, split by rows over
//!   the threads of the current rayon pool (the chat engine's), so a token needs four synchronisations per
//!   layer;
//! - the element-wise steps are fused loops ([`ops`]); attention runs per head, heads split over the threads;
//! - the weights are shared ([`Arc`]) and each [`Sequence`] keeps its own KV cache, so several generations
//!   advance in turn on one copy of the model.

mod ops;
pub mod qmat;

use std::io::{Read, Seek};
use std::ops::Range;
use std::sync::Arc;

use candle_core::quantized::gguf_file::{self, Value};
use half::f16;
use half::slice::HalfFloatSliceExt;

use crate::models::math;
use ops::RopeStyle;
use qmat::{QActs, QMatrix};

/// Row granularity of the split of a matrix product over threads (keeps kernels on whole row groups).
const ROW_ALIGN: usize = 16;
/// Products smaller than this many multiply-adds run on the calling thread alone: waking a helper costs more.
const PARALLEL_MIN_MACS: usize = 64 * 1024;

/// The shape of the transformer, from the GGUF metadata.
#[derive(Debug, Clone)]
pub struct Hyper {
    /// Transformer blocks.
    pub n_layer: usize,
    /// Width of the residual stream.
    pub n_embd: usize,
    /// Query heads.
    pub n_head: usize,
    /// Key/value heads (grouped-query attention when fewer than `n_head`).
    pub n_kv_head: usize,
    /// Values per head.
    pub head_dim: usize,
    /// RMS norm epsilon.
    pub eps: f32,
    /// Vocabulary size (rows of the output matrix).
    pub vocab: usize,
    rope: RopeStyle,
    inv_freq: Vec<f32>,
}

impl Hyper {
    fn q_dim(&self) -> usize {
        self.n_head * self.head_dim
    }

    fn kv_dim(&self) -> usize {
        self.n_kv_head * self.head_dim
    }
}

/// One transformer block.
struct Layer {
    attn_norm: Vec<f32>,
    wq: QMatrix,
    wk: QMatrix,
    wv: QMatrix,
    /// Biases of q, k and v (qwen2 only).
    bias: Option<[Vec<f32>; 3]>,
    wo: QMatrix,
    ffn_norm: Vec<f32>,
    gate: QMatrix,
    up: QMatrix,
    down: QMatrix,
}

/// The weights of a model, shared by every sequence decoded on it.
pub struct Weights {
    /// The shape.
    pub hyper: Hyper,
    embed: QMatrix,
    layers: Vec<Layer>,
    norm: Vec<f32>,
    /// The output projection; `None` when tied to the token embedding.
    output: Option<QMatrix>,
}

/// Reads GGUF tensors by name.
struct TensorReader<'a, R> {
    content: &'a gguf_file::Content,
    reader: &'a mut R,
}

impl<R: Read + Seek> TensorReader<'_, R> {
    fn has(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }

    fn matrix(&mut self, name: &str) -> Result<QMatrix, String> {
        let tensor = self
            .content
            .tensor(self.reader, name, &candle_core::Device::Cpu)
            .map_err(|e| format!("{name}: {e}"))?;
        let (rows, cols) = match tensor.shape().dims() {
            [rows, cols] => (*rows, *cols),
            dims => return Err(format!("{name}: expected a matrix, got shape {dims:?}")),
        };
        let data = tensor.data().map_err(|e| format!("{name}: {e}"))?;
        QMatrix::from_ggml(tensor.dtype(), &data, rows, cols).map_err(|e| format!("{name}: {e}"))
    }

    fn vector(&mut self, name: &str, len: usize) -> Result<Vec<f32>, String> {
        let tensor = self
            .content
            .tensor(self.reader, name, &candle_core::Device::Cpu)
            .map_err(|e| format!("{name}: {e}"))?;
        let values = tensor
            .dequantize(&candle_core::Device::Cpu)
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(|e| format!("{name}: {e}"))?;
        if values.len() != len {
            return Err(format!(
                "{name}: expected {len} values, got {}",
                values.len()
            ));
        }
        Ok(values)
    }
}

fn md_usize(content: &gguf_file::Content, key: &str) -> Result<usize, String> {
    content
        .metadata
        .get(key)
        .and_then(|v| v.to_u32().ok())
        .map(|v| v as usize)
        .ok_or_else(|| format!("missing {key}"))
}

fn md_f32(content: &gguf_file::Content, key: &str) -> Option<f32> {
    content.metadata.get(key).and_then(|v| match v {
        Value::F32(f) => Some(*f),
        Value::F64(f) =>
        {
            #[expect(clippy::cast_possible_truncation, reason = "hyper-parameters fit f32")]
            Some(*f as f32)
        }
        _ => None,
    })
}

impl Weights {
    /// Reads the weights of a `llama` or `qwen2` GGUF model.
    pub fn from_gguf<R: Read + Seek>(
        content: &gguf_file::Content,
        reader: &mut R,
        architecture: &str,
    ) -> Result<Self, String> {
        let rope = match architecture {
            "llama" => RopeStyle::Interleaved,
            "qwen2" => RopeStyle::Halves,
            other => {
                return Err(format!(
                    "architecture {other:?} is not supported (llama, qwen2)"
                ));
            }
        };
        let key = |k: &str| format!("{architecture}.{k}");
        let n_layer = md_usize(content, &key("block_count"))?;
        let n_embd = md_usize(content, &key("embedding_length"))?;
        let n_head = md_usize(content, &key("attention.head_count"))?;
        let n_kv_head = md_usize(content, &key("attention.head_count_kv")).unwrap_or(n_head);
        if n_head == 0 || n_kv_head == 0 || n_embd % n_head != 0 || n_head % n_kv_head != 0 {
            return Err(format!(
                "unsupported heads: {n_head} query, {n_kv_head} key/value, width {n_embd}"
            ));
        }
        let head_dim = n_embd / n_head;
        let rope_dims = md_usize(content, &key("rope.dimension_count")).unwrap_or(head_dim);
        if rope_dims != head_dim || head_dim % 2 != 0 || head_dim > 256 {
            return Err(format!(
                "unsupported rotary embedding: {rope_dims} of {head_dim} dimensions per head"
            ));
        }
        let eps = md_f32(content, &key("attention.layer_norm_rms_epsilon")).unwrap_or(1e-5);
        let base = md_f32(content, &key("rope.freq_base")).unwrap_or(10_000.0);

        let mut tensors = TensorReader { content, reader };
        let embed = tensors.matrix("token_embd.weight")?;
        if embed.cols() != n_embd {
            return Err(format!(
                "token_embd.weight has {} columns, expected {n_embd}",
                embed.cols()
            ));
        }
        let output = if tensors.has("output.weight") {
            Some(tensors.matrix("output.weight")?)
        } else {
            None
        };
        let norm = tensors.vector("output_norm.weight", n_embd)?;
        let hyper = Hyper {
            n_layer,
            n_embd,
            n_head,
            n_kv_head,
            head_dim,
            eps,
            vocab: output.as_ref().unwrap_or(&embed).rows(),
            rope,
            inv_freq: ops::rope_inv_freq(head_dim, base),
        };
        let mut layers = Vec::with_capacity(n_layer);
        for i in 0..n_layer {
            let name = |t: &str| format!("blk.{i}.{t}");
            let bias = if tensors.has(&name("attn_q.bias")) {
                Some([
                    tensors.vector(&name("attn_q.bias"), hyper.q_dim())?,
                    tensors.vector(&name("attn_k.bias"), hyper.kv_dim())?,
                    tensors.vector(&name("attn_v.bias"), hyper.kv_dim())?,
                ])
            } else {
                None
            };
            let layer = Layer {
                attn_norm: tensors.vector(&name("attn_norm.weight"), n_embd)?,
                wq: tensors.matrix(&name("attn_q.weight"))?,
                wk: tensors.matrix(&name("attn_k.weight"))?,
                wv: tensors.matrix(&name("attn_v.weight"))?,
                bias,
                wo: tensors.matrix(&name("attn_output.weight"))?,
                ffn_norm: tensors.vector(&name("ffn_norm.weight"), n_embd)?,
                gate: tensors.matrix(&name("ffn_gate.weight"))?,
                up: tensors.matrix(&name("ffn_up.weight"))?,
                down: tensors.matrix(&name("ffn_down.weight"))?,
            };
            let shapes = [
                (&layer.wq, hyper.q_dim(), n_embd, "attn_q"),
                (&layer.wk, hyper.kv_dim(), n_embd, "attn_k"),
                (&layer.wv, hyper.kv_dim(), n_embd, "attn_v"),
                (&layer.wo, n_embd, hyper.q_dim(), "attn_output"),
                (&layer.gate, layer.up.rows(), n_embd, "ffn_gate"),
                (&layer.up, layer.gate.rows(), n_embd, "ffn_up"),
                (&layer.down, n_embd, layer.gate.rows(), "ffn_down"),
            ];
            for (m, rows, cols, what) in shapes {
                if m.rows() != rows || m.cols() != cols {
                    return Err(format!(
                        "blk.{i}.{what}.weight is {}x{}, expected {rows}x{cols}",
                        m.rows(),
                        m.cols()
                    ));
                }
            }
            layers.push(layer);
        }
        Ok(Self {
            hyper,
            embed,
            layers,
            norm,
            output,
        })
    }

    fn output(&self) -> &QMatrix {
        self.output.as_ref().unwrap_or(&self.embed)
    }

    /// Bytes of weights held.
    pub fn bytes(&self) -> usize {
        let layers: usize = self
            .layers
            .iter()
            .map(|l| {
                [&l.wq, &l.wk, &l.wv, &l.wo, &l.gate, &l.up, &l.down]
                    .iter()
                    .map(|m| m.bytes())
                    .sum::<usize>()
            })
            .sum();
        layers + self.embed.bytes() + self.output.as_ref().map_or(0, QMatrix::bytes)
    }
}

/// Buffers reused from step to step.
#[derive(Default)]
struct Scratch {
    x: Vec<f32>,
    h: Vec<f32>,
    acts: QActs,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    att: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
    /// Row-major outputs of the kernels ([rows, tokens]) before transposition.
    raw: [Vec<f32>; 3],
    heads: Vec<f32>,
    /// The cached keys and values of the current layer, widened to f32 for attention.
    keys: Vec<f32>,
    values: Vec<f32>,
}

/// One sequence being decoded: its KV cache and buffers, over shared weights.
pub struct Sequence {
    weights: Arc<Weights>,
    /// Per layer: keys and values of every position so far, `[position][kv_head][head_dim]`, in f16 (as
    /// llama.cpp keeps them): half the memory of f32, at no measurable cost in agreement with candle's f32 cache.
    keys: Vec<Vec<f16>>,
    values: Vec<Vec<f16>>,
    len: usize,
    scratch: Scratch,
}

impl Sequence {
    /// A new, empty sequence on `weights`.
    pub fn new(weights: Arc<Weights>) -> Self {
        let n_layer = weights.hyper.n_layer;
        Self {
            weights,
            keys: vec![Vec::new(); n_layer],
            values: vec![Vec::new(); n_layer],
            len: 0,
            scratch: Scratch::default(),
        }
    }

    /// The shared weights.
    pub fn weights(&self) -> &Arc<Weights> {
        &self.weights
    }

    /// Runs `tokens` at positions `pos..` (dropping any cached positions from `pos` on, so `pos == 0` starts
    /// over) and returns the logits of the last one. Compute runs on the current rayon pool.
    pub fn forward(&mut self, tokens: &[u32], pos: usize) -> Result<Vec<f32>, String> {
        let w = Arc::clone(&self.weights);
        let hp = &w.hyper;
        let n = tokens.len();
        if n == 0 {
            return Err("no tokens".to_owned());
        }
        if pos > self.len {
            return Err(format!("position {pos} is past the {} cached", self.len));
        }
        let kv_dim = hp.kv_dim();
        for (k, v) in self.keys.iter_mut().zip(&mut self.values) {
            k.truncate(pos * kv_dim);
            v.truncate(pos * kv_dim);
        }
        self.len = pos;
        let d = hp.n_embd;
        let s = &mut self.scratch;
        s.x.resize(n * d, 0.0);
        for (row, &token) in s.x.chunks_exact_mut(d).zip(tokens) {
            let id = token as usize;
            if id >= w.embed.rows() {
                return Err(format!(
                    "token {token} is outside the vocabulary of {}",
                    w.embed.rows()
                ));
            }
            w.embed.dequantize_row(id, row);
        }
        s.h.resize(n * d, 0.0);
        for (i, layer) in w.layers.iter().enumerate() {
            attention_block(hp, layer, s, &mut self.keys[i], &mut self.values[i], pos, n);
            feed_forward_block(hp, layer, s, n);
        }
        self.len = pos + n;
        let normed = &mut s.h[..d];
        ops::rms_norm(&s.x[(n - 1) * d..], &w.norm, hp.eps, normed);
        s.acts.quantize(normed, 1, d);
        let mut logits = Vec::new();
        par_matmul(&mut [(w.output(), &mut logits)], &s.acts);
        Ok(logits)
    }
}

/// `x += attention(norm(x))` for `n` tokens at positions `pos..`, appending their keys and values to the cache.
fn attention_block(
    hp: &Hyper,
    layer: &Layer,
    s: &mut Scratch,
    keys: &mut Vec<f16>,
    values: &mut Vec<f16>,
    pos: usize,
    n: usize,
) {
    let (d, q_dim, kv_dim) = (hp.n_embd, hp.q_dim(), hp.kv_dim());
    ops::rms_norm(&s.x, &layer.attn_norm, hp.eps, &mut s.h);
    s.acts.quantize(&s.h, n, d);
    {
        let [rq, rk, rv] = &mut s.raw;
        par_matmul(
            &mut [(&layer.wq, rq), (&layer.wk, rk), (&layer.wv, rv)],
            &s.acts,
        );
    }
    transpose_into(&s.raw[0], n, q_dim, &mut s.q);
    transpose_into(&s.raw[1], n, kv_dim, &mut s.k);
    transpose_into(&s.raw[2], n, kv_dim, &mut s.v);
    if let Some([bq, bk, bv]) = &layer.bias {
        add_rows(&mut s.q, bq);
        add_rows(&mut s.k, bk);
        add_rows(&mut s.v, bv);
    }
    for t in 0..n {
        ops::rope(
            &mut s.q[t * q_dim..(t + 1) * q_dim],
            pos + t,
            &hp.inv_freq,
            hp.rope,
        );
        ops::rope(
            &mut s.k[t * kv_dim..(t + 1) * kv_dim],
            pos + t,
            &hp.inv_freq,
            hp.rope,
        );
    }
    append_f16(keys, &s.k);
    append_f16(values, &s.v);
    widen(keys, &mut s.keys);
    widen(values, &mut s.values);
    attend(hp, &s.q, &s.keys, &s.values, pos, n, &mut s.heads);
    // Heads come back as [head][token][head_dim]; the output projection wants [token][head][head_dim].
    s.att.resize(n * q_dim, 0.0);
    let hd = hp.head_dim;
    for (h, head) in s.heads.chunks_exact(n * hd).enumerate() {
        for (t, row) in head.chunks_exact(hd).enumerate() {
            s.att[t * q_dim + h * hd..t * q_dim + (h + 1) * hd].copy_from_slice(row);
        }
    }
    s.acts.quantize(&s.att, n, q_dim);
    par_matmul(&mut [(&layer.wo, &mut s.raw[0])], &s.acts);
    add_transposed(&mut s.x, &s.raw[0], n, d);
}

/// `x += down(silu(gate(norm(x))) * up(norm(x)))`.
fn feed_forward_block(hp: &Hyper, layer: &Layer, s: &mut Scratch, n: usize) {
    let (d, ff) = (hp.n_embd, layer.gate.rows());
    ops::rms_norm(&s.x, &layer.ffn_norm, hp.eps, &mut s.h);
    s.acts.quantize(&s.h, n, d);
    {
        let [rg, ru, _] = &mut s.raw;
        par_matmul(&mut [(&layer.gate, rg), (&layer.up, ru)], &s.acts);
    }
    transpose_into(&s.raw[0], n, ff, &mut s.gate);
    transpose_into(&s.raw[1], n, ff, &mut s.up);
    ops::silu_mul(&mut s.gate, &s.up);
    s.acts.quantize(&s.gate, n, ff);
    par_matmul(&mut [(&layer.down, &mut s.raw[0])], &s.acts);
    add_transposed(&mut s.x, &s.raw[0], n, d);
}

/// Causal attention of `n` queries at positions `pos..` over the cache (which already holds them), written
/// to `out` as `[head][token][head_dim]`. Heads are split over the threads of the current pool.
fn attend(
    hp: &Hyper,
    q: &[f32],
    keys: &[f32],
    values: &[f32],
    pos: usize,
    n: usize,
    out: &mut Vec<f32>,
) {
    let (hd, q_dim, kv_dim) = (hp.head_dim, hp.q_dim(), hp.kv_dim());
    let group = hp.n_head / hp.n_kv_head;
    #[expect(clippy::cast_precision_loss, reason = "head sizes are small")]
    let scale = 1.0 / (hd as f32).sqrt();
    out.resize(hp.n_head * n * hd, 0.0);
    let head = |h: usize, out: &mut [f32]| {
        if n >= PRODUCT_MIN_QUERIES {
            attend_head_by_products(hp, q, keys, values, h, pos, n, out);
            return;
        }
        let g = h / group;
        let mut scores = Vec::with_capacity(pos + n);
        for (t, o) in out.chunks_exact_mut(hd).enumerate() {
            let query = &q[t * q_dim + h * hd..t * q_dim + (h + 1) * hd];
            let visible = pos + t + 1;
            scores.clear();
            scores.extend(
                keys.chunks_exact(kv_dim)
                    .take(visible)
                    .map(|k| math::dot(query, &k[g * hd..(g + 1) * hd]) * scale),
            );
            math::softmax(&mut scores);
            o.fill(0.0);
            for (p, v) in scores.iter().zip(values.chunks_exact(kv_dim)) {
                ops::axpy(o, *p, &v[g * hd..(g + 1) * hd]);
            }
        }
    };
    let threads = rayon::current_num_threads();
    let work = hp.n_head * n * (pos + n) * hd;
    if threads == 1 || work < PARALLEL_MIN_MACS {
        for (h, o) in out.chunks_exact_mut(n * hd).enumerate() {
            head(h, o);
        }
        return;
    }
    let per = hp.n_head.div_ceil(threads);
    rayon::scope(|scope| {
        let mut chunks = out.chunks_mut(per * n * hd).enumerate();
        let first = chunks.next();
        for (c, part) in chunks {
            let head = &head;
            scope.spawn(move |_| {
                for (i, o) in part.chunks_exact_mut(n * hd).enumerate() {
                    head(c * per + i, o);
                }
            });
        }
        if let Some((_, part)) = first {
            for (i, o) in part.chunks_exact_mut(n * hd).enumerate() {
                head(i, o);
            }
        }
    });
}

/// Queries from which a head's attention runs as two matrix products (scores, then the weighted sum of values)
/// rather than one loop per query: prompt processing.
const PRODUCT_MIN_QUERIES: usize = 8;
/// Most attention scores [`attend_head_by_products`] holds at once (4 MiB of f32); queries go in groups that fit.
const SCORES_BUDGET: usize = 1 << 20;

/// Causal attention of head `h` for `n` queries at positions `pos..`, as f32 matrix products (gemm's kernels on
/// the calling thread): `scores = scale · Q_h · K_gᵀ`, a causal softmax per row, then `out = P · V_g`. `out` is
/// `[token][head_dim]`.
#[expect(
    clippy::too_many_arguments,
    reason = "the views of one head's attention"
)]
#[expect(
    unsafe_code,
    reason = "gemm takes raw pointers with strides; the bounds are checked first"
)]
fn attend_head_by_products(
    hp: &Hyper,
    q: &[f32],
    keys: &[f32],
    values: &[f32],
    h: usize,
    pos: usize,
    n: usize,
    out: &mut [f32],
) {
    let (hd, q_dim, kv_dim) = (hp.head_dim, hp.q_dim(), hp.kv_dim());
    let g = h / (hp.n_head / hp.n_kv_head);
    let len = pos + n;
    assert!(
        h < hp.n_head
            && q.len() >= n * q_dim
            && keys.len() >= len * kv_dim
            && values.len() >= len * kv_dim
            && out.len() >= n * hd,
        "attention views are too short"
    );
    #[expect(clippy::cast_precision_loss, reason = "head sizes are small")]
    let scale = 1.0 / (hd as f32).sqrt();
    let group_rows = (SCORES_BUDGET / len).clamp(1, n);
    let mut scores = vec![0f32; group_rows * len];
    let as_stride = |v: usize| isize::try_from(v).expect("strides fit isize");
    for t0 in (0..n).step_by(group_rows) {
        let rows = group_rows.min(n - t0);
        // SAFETY: the scores are `rows x len` at row stride `len` within `scores`; query row `t0 + i` of head `h`
        // starts at `(t0 + i) * q_dim + h * hd` and spans `hd` values, within `q` (n * q_dim); key `j` of group
        // `g` spans `j * kv_dim + g * hd ..+ hd`, within `keys` (len * kv_dim), all checked above.
        unsafe {
            gemm::gemm(
                rows,
                len,
                hd,
                scores.as_mut_ptr(),
                1,
                as_stride(len),
                false,
                q.as_ptr().add(t0 * q_dim + h * hd),
                1,
                as_stride(q_dim),
                keys.as_ptr().add(g * hd),
                as_stride(kv_dim),
                1,
                0.0,
                scale,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
        for (i, row) in scores.chunks_exact_mut(len).take(rows).enumerate() {
            let (seen, future) = row.split_at_mut(pos + t0 + i + 1);
            math::softmax(seen);
            future.fill(0.0);
        }
        // SAFETY: as above for `scores` and `values`; output row `t0 + i` spans `(t0 + i) * hd ..+ hd` within
        // `out` (n * hd), checked above.
        unsafe {
            gemm::gemm(
                rows,
                hd,
                len,
                out.as_mut_ptr().add(t0 * hd),
                1,
                as_stride(hd),
                false,
                scores.as_ptr(),
                1,
                as_stride(len),
                values.as_ptr().add(g * hd),
                1,
                as_stride(kv_dim),
                0.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
    }
}

/// A piece of a matrix product for one thread: rows of one matrix and where their outputs go.
type Piece<'a> = (&'a QMatrix, Range<usize>, &'a mut [f32]);

/// Runs every product `out = W · x` of `jobs` (outputs row-major over W's rows: `[rows, tokens]`) as one
/// parallel step: all their rows are split into contiguous ranges, one per thread of the current pool.
fn par_matmul(jobs: &mut [(&QMatrix, &mut Vec<f32>)], x: &QActs) {
    let n = x.n();
    let total: usize = jobs.iter().map(|(w, _)| w.rows()).sum();
    let macs: usize = jobs.iter().map(|(w, _)| w.rows() * w.cols()).sum::<usize>() * n;
    for (w, out) in jobs.iter_mut() {
        out.resize(w.rows() * n, 0.0);
    }
    let threads = rayon::current_num_threads()
        .min(total.div_ceil(ROW_ALIGN))
        .max(1);
    if threads == 1 || macs < PARALLEL_MIN_MACS {
        for (w, out) in jobs.iter_mut() {
            qmat::matmul(w, x, 0..w.rows(), out);
        }
        return;
    }
    let per = total.div_ceil(threads).next_multiple_of(ROW_ALIGN);
    let mut tasks: Vec<Vec<Piece<'_>>> = (0..threads).map(|_| Vec::new()).collect();
    let mut start = 0;
    for (w, out) in jobs.iter_mut() {
        let w: &QMatrix = w;
        let mut rest: &mut [f32] = out.as_mut_slice();
        let mut r = 0;
        while r < w.rows() {
            let thread = ((start + r) / per).min(threads - 1);
            let end = if thread == threads - 1 {
                w.rows()
            } else {
                ((thread + 1) * per - start).min(w.rows())
            };
            let (piece, tail) = rest.split_at_mut((end - r) * n);
            tasks[thread].push((w, r..end, piece));
            rest = tail;
            r = end;
        }
        start += w.rows();
    }
    let run = |pieces: Vec<Piece<'_>>| {
        for (w, rows, out) in pieces {
            qmat::matmul(w, x, rows, out);
        }
    };
    let mut tasks = tasks.into_iter();
    let first = tasks.next().unwrap_or_default();
    rayon::scope(|scope| {
        for pieces in tasks {
            let run = &run;
            scope.spawn(move |_| run(pieces));
        }
        run(first);
    });
}

/// Appends `values` to `cache`, rounded to f16.
fn append_f16(cache: &mut Vec<f16>, values: &[f32]) {
    let start = cache.len();
    cache.resize(start + values.len(), f16::ZERO);
    cache[start..].convert_from_f32_slice(values);
}

/// `out = cache` in f32.
fn widen(cache: &[f16], out: &mut Vec<f32>) {
    out.resize(cache.len(), 0.0);
    cache.convert_to_f32_slice(out);
}

/// Side of the square tiles in which kernel outputs are transposed: a tile's rows and columns stay in cache
/// (a plain strided scatter over 300 tokens took a fifth of prompt processing).
const TRANSPOSE_TILE: usize = 16;

/// `apply(&mut out[t][r], raw[r][t])` for every row `r` and token `t`, tile by tile.
fn for_each_transposed(
    raw: &[f32],
    n: usize,
    rows: usize,
    out: &mut [f32],
    apply: impl Fn(&mut f32, f32),
) {
    for r0 in (0..rows).step_by(TRANSPOSE_TILE) {
        let r1 = (r0 + TRANSPOSE_TILE).min(rows);
        for t0 in (0..n).step_by(TRANSPOSE_TILE) {
            let t1 = (t0 + TRANSPOSE_TILE).min(n);
            for r in r0..r1 {
                for (t, v) in (t0..t1).zip(&raw[r * n + t0..r * n + t1]) {
                    apply(&mut out[t * rows + r], *v);
                }
            }
        }
    }
}

/// `out[t][r] = raw[r][t]`: kernel output (`[rows, n]`) to activations (`[n, rows]`).
fn transpose_into(raw: &[f32], n: usize, rows: usize, out: &mut Vec<f32>) {
    out.resize(n * rows, 0.0);
    if n == 1 {
        out.copy_from_slice(&raw[..rows]);
    } else {
        for_each_transposed(raw, n, rows, out, |o, v| *o = v);
    }
}

/// `x[t][r] += raw[r][t]`.
fn add_transposed(x: &mut [f32], raw: &[f32], n: usize, rows: usize) {
    for_each_transposed(raw, n, rows, x, |o, v| *o += v);
}

/// Adds `bias` to every row of `x`.
fn add_rows(x: &mut [f32], bias: &[f32]) {
    for row in x.chunks_exact_mut(bias.len()) {
        for (v, b) in row.iter_mut().zip(bias) {
            *v += b;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiled_transposes_match_the_definition_for_ragged_shapes() {
        for (n, rows) in [(1, 5), (3, 17), (16, 16), (33, 40), (300, 19)] {
            #[expect(clippy::cast_precision_loss, reason = "test values")]
            let raw: Vec<f32> = (0..n * rows).map(|i| i as f32).collect();
            let mut out = Vec::new();
            transpose_into(&raw, n, rows, &mut out);
            let mut x = vec![1.0; n * rows];
            add_transposed(&mut x, &raw, n, rows);
            for r in 0..rows {
                for t in 0..n {
                    assert_eq!(out[t * rows + r], raw[r * n + t], "{n}x{rows} at {t},{r}");
                    assert_eq!(
                        x[t * rows + r],
                        raw[r * n + t] + 1.0,
                        "{n}x{rows} at {t},{r}"
                    );
                }
            }
        }
    }
}
