//! Quantized weight matrices and their integer matrix products.
//!
//! Every supported ggml type is converted at load into one form, `w = d * u + m` per block of 32 values of
//! a row, with `u` unsigned on 4, 5 or 8 bits. Activations are quantized to i8 per block of 32 (`QActs`), so
//! a block's contribution is `d_w * d_x * dot(u, q_x) + m_w * (d_x * sum(q_x))`: one u8 x i8 integer dot
//! product (AVX-512 VNNI `vpdpbusd`, or AVX2 `vpmaddubsw`) and one float term.
//!
//! Layout: rows are interleaved in groups of 4 (`GROUP`). For group `g` and block `b`, the group-block
//! `gb = group_block(nb, g, b)` puts the blocks of a pair of groups side by side (one memory stream per pair):
//! - `quants`: 4-bit: 64 bytes, row `i` at `16 * i`, byte `j` = value `j` (low nibble) | value `j + 16` (high);
//!   5-bit: the same nibbles, plus two u64 masks in `high` (bit `16 * i + j`: bit 4 of value `j`, resp. `j + 16`);
//!   8-bit: 128 bytes, values 0..16 of row `i` at `16 * i`, values 16..32 at `64 + 16 * i`.
//!   So one 512-bit load holds the same half-block of the 4 rows in its four 128-bit lanes.
//! - `scales`: f16 bits, `d` of the 4 rows, then (unless the format is symmetric) `m` of the 4 rows.
//!   Symmetric formats (Q4_0, Q5_0, Q8_0, re-quantised ones) have `m = -offset * d` and store only `d`.

#[cfg(test)]
mod bench;
#[cfg(test)]
mod tests;
#[cfg(target_arch = "x86_64")]
mod x86;

use std::ops::Range;
use std::sync::LazyLock;

use candle_core::quantized::GgmlDType;
use half::{bf16, f16};

/// Values per quantization block (of weights and of activations).
pub const BLOCK: usize = 32;
/// Rows interleaved together in the weight layout.
const GROUP: usize = 4;
/// Values per ggml k-quant super-block.
const SUPER_BLOCK: usize = 256;
/// Largest magnitude of a quantized activation.
const I8_MAX: f32 = 127.0;
/// Alignment of the packed quants (one cache line, one 512-bit load).
const ALIGN: usize = 64;

/// Index of block `b` of group `g` among the group-blocks: pairs of groups alternate block by block.
#[inline(always)]
fn group_block(nb: usize, g: usize, b: usize) -> usize {
    (g & !1) * nb + 2 * b + (g & 1)
}

/// Bits per unsigned weight value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    U4,
    U5,
    U8,
}

impl Kind {
    /// Bytes of `quants` per group-block.
    fn group_block_bytes(self) -> usize {
        match self {
            Kind::U4 | Kind::U5 => GROUP * BLOCK / 2,
            Kind::U8 => GROUP * BLOCK,
        }
    }
}

/// Zero-initialised bytes whose start is aligned to `ALIGN`.
struct AlignedBytes {
    buf: Vec<u8>,
    off: usize,
    len: usize,
}

impl AlignedBytes {
    fn zeroed(len: usize) -> Self {
        let buf = vec![0u8; len + ALIGN];
        let off = buf.as_ptr().align_offset(ALIGN);
        assert!(
            off < ALIGN,
            "u8 pointers can always be aligned. This is a bug."
        );
        Self { buf, off, len }
    }

    fn as_slice(&self) -> &[u8] {
        &self.buf[self.off..self.off + self.len]
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.buf[self.off..self.off + self.len]
    }
}

/// A weight matrix [rows, cols] (row-major, cols % 32 == 0) whose every value is w = d * u + m, per block of 32
/// consecutive values of a row, with u unsigned (4, 5 or 8 bits), d and m per block.
pub struct QMatrix {
    rows: usize,
    cols: usize,
    /// Blocks per row.
    nb: usize,
    /// Row groups, an even number (rows padded with zero weights) so AVX-512 can take them in pairs.
    groups: usize,
    kind: Kind,
    /// `Some(c)` when `m = -c * d` for every block (only `d` is stored).
    offset: Option<f32>,
    quants: AlignedBytes,
    /// 5-bit only: two masks per group-block.
    high: Vec<u64>,
    /// f16 bits: per group-block 4 `d` (then 4 `m` when `offset` is `None`).
    scales: Vec<u16>,
}

/// One row decoded to the unified form.
struct RowBuf {
    u: Vec<u8>,
    d: Vec<f32>,
    m: Vec<f32>,
    /// Scratch for formats re-quantised from floats.
    f: Vec<f32>,
}

fn f16_at(b: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

/// ggml's packing of the 6-bit scale and min of sub-block `j` in Q4_K/Q5_K (`get_scale_min_k4`).
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// Unified kind and symmetric offset of each supported ggml type.
fn target_of(dtype: GgmlDType) -> Option<(Kind, Option<f32>)> {
    Some(match dtype {
        GgmlDType::Q4_0 => (Kind::U4, Some(8.0)),
        GgmlDType::Q4_1 | GgmlDType::Q4K => (Kind::U4, None),
        GgmlDType::Q5_0 => (Kind::U5, Some(16.0)),
        GgmlDType::Q5_1 | GgmlDType::Q5K => (Kind::U5, None),
        GgmlDType::Q8_0 | GgmlDType::Q6K | GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16 => {
            (Kind::U8, Some(128.0))
        }
        GgmlDType::Q8_1 | GgmlDType::Q2K | GgmlDType::Q3K | GgmlDType::Q8K => return None,
    })
}

/// Decodes one row of ggml blocks into `out` (exactly, or re-quantised for Q6_K and floats).
fn decode_row(dtype: GgmlDType, src: &[u8], out: &mut RowBuf) {
    let nb = out.d.len();
    match dtype {
        GgmlDType::Q4_0 | GgmlDType::Q4_1 => {
            let (size, qs_at) = if dtype == GgmlDType::Q4_0 {
                (18, 2)
            } else {
                (20, 4)
            };
            for b in 0..nb {
                let blk = &src[b * size..][..size];
                out.d[b] = f16_at(blk, 0);
                out.m[b] = if dtype == GgmlDType::Q4_0 {
                    -8.0 * out.d[b]
                } else {
                    f16_at(blk, 2)
                };
                let u = &mut out.u[b * BLOCK..][..BLOCK];
                for j in 0..16 {
                    u[j] = blk[qs_at + j] & 0xF;
                    u[j + 16] = blk[qs_at + j] >> 4;
                }
            }
        }
        GgmlDType::Q5_0 | GgmlDType::Q5_1 => {
            let (size, qh_at) = if dtype == GgmlDType::Q5_0 {
                (22, 2)
            } else {
                (24, 4)
            };
            for b in 0..nb {
                let blk = &src[b * size..][..size];
                out.d[b] = f16_at(blk, 0);
                out.m[b] = if dtype == GgmlDType::Q5_0 {
                    -16.0 * out.d[b]
                } else {
                    f16_at(blk, 2)
                };
                let qh = u32::from_le_bytes([
                    blk[qh_at],
                    blk[qh_at + 1],
                    blk[qh_at + 2],
                    blk[qh_at + 3],
                ]);
                let qs = &blk[qh_at + 4..];
                let u = &mut out.u[b * BLOCK..][..BLOCK];
                for j in 0..16 {
                    u[j] = (qs[j] & 0xF) | ((((qh >> j) & 1) as u8) << 4);
                    u[j + 16] = (qs[j] >> 4) | ((((qh >> (j + 16)) & 1) as u8) << 4);
                }
            }
        }
        GgmlDType::Q8_0 => {
            for b in 0..nb {
                let blk = &src[b * 34..][..34];
                out.d[b] = f16_at(blk, 0);
                out.m[b] = -128.0 * out.d[b];
                for j in 0..BLOCK {
                    out.u[b * BLOCK + j] = (blk[2 + j] as i8 as i16 + 128) as u8;
                }
            }
        }
        GgmlDType::Q4K | GgmlDType::Q5K => {
            let five = dtype == GgmlDType::Q5K;
            let size = if five { 176 } else { 144 };
            for s in 0..nb / 8 {
                let blk = &src[s * size..][..size];
                let (d, dmin) = (f16_at(blk, 0), f16_at(blk, 2));
                let scales = &blk[4..16];
                let (qh, qs) = if five {
                    (&blk[16..48], &blk[48..])
                } else {
                    (&blk[..0], &blk[16..])
                };
                for sub in 0..8 {
                    let b = s * 8 + sub;
                    let (sc, mn) = scale_min_k4(sub, scales);
                    out.d[b] = d * f32::from(sc);
                    out.m[b] = -dmin * f32::from(mn);
                    let q = &qs[(sub / 2) * BLOCK..][..BLOCK];
                    let shift = if sub % 2 == 0 { 0 } else { 4 };
                    for l in 0..BLOCK {
                        let hi = if five { ((qh[l] >> sub) & 1) << 4 } else { 0 };
                        out.u[b * BLOCK + l] = ((q[l] >> shift) & 0xF) | hi;
                    }
                }
            }
        }
        GgmlDType::Q6K | GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16 => {
            let cols = nb * BLOCK;
            out.f.resize(cols, 0.0);
            floats_of(dtype, src, &mut out.f);
            for b in 0..nb {
                let (d, u) = requantize(&out.f[b * BLOCK..][..BLOCK]);
                out.d[b] = d;
                out.m[b] = -128.0 * d;
                out.u[b * BLOCK..][..BLOCK].copy_from_slice(&u);
            }
        }
        GgmlDType::Q8_1 | GgmlDType::Q2K | GgmlDType::Q3K | GgmlDType::Q8K => {
            unreachable!("rejected by target_of. This is a bug.")
        }
    }
}

/// Row values of the formats that are re-quantised (Q6_K as in ggml's `dequantize_row_q6_K`).
fn floats_of(dtype: GgmlDType, src: &[u8], f: &mut [f32]) {
    match dtype {
        GgmlDType::F32 => {
            for (v, b) in f.iter_mut().zip(src.chunks_exact(4)) {
                *v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        GgmlDType::F16 => {
            for (v, b) in f.iter_mut().zip(src.chunks_exact(2)) {
                *v = f16::from_le_bytes([b[0], b[1]]).to_f32();
            }
        }
        GgmlDType::BF16 => {
            for (v, b) in f.iter_mut().zip(src.chunks_exact(2)) {
                *v = bf16::from_le_bytes([b[0], b[1]]).to_f32();
            }
        }
        _ => {
            // Q6_K: ql[128], qh[64], scales[16] (i8), d (f16): 210 bytes per 256 values.
            for (blk, ys) in src.chunks_exact(210).zip(f.chunks_exact_mut(SUPER_BLOCK)) {
                let d = f16_at(blk, 208);
                for half in 0..2 {
                    let ql = &blk[64 * half..];
                    let qh = &blk[128 + 32 * half..];
                    let sc = &blk[192 + 8 * half..];
                    let ys = &mut ys[128 * half..];
                    for l in 0..32 {
                        let is = l / 16;
                        let q1 = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i32 - 32;
                        let q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
                        let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
                        let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
                        let s = |k: usize| d * f32::from(sc[is + k] as i8);
                        ys[l] = s(0) * q1 as f32;
                        ys[l + 32] = s(2) * q2 as f32;
                        ys[l + 64] = s(4) * q3 as f32;
                        ys[l + 96] = s(6) * q4 as f32;
                    }
                }
            }
        }
    }
}

/// Symmetric 8-bit quantization of one block: `d` (exactly representable in f16) and `u = q + 128`.
fn requantize(v: &[f32]) -> (f32, [u8; BLOCK]) {
    let amax = v.iter().fold(0f32, |a, x| a.max(x.abs()));
    let d = f16::from_f32(amax / I8_MAX).to_f32();
    let mut u = [128u8; BLOCK];
    if d > 0.0 {
        for (u, x) in u.iter_mut().zip(v) {
            *u = ((x / d).round().clamp(-I8_MAX, I8_MAX) as i32 + 128) as u8;
        }
    }
    (d, u)
}

impl QMatrix {
    /// From a GGUF tensor's raw bytes in ggml block layout. `rows` = number of rows (ggml ne1), `cols` = ggml ne0
    /// (the contiguous dimension). Errors (String message) on unsupported types or wrong byte counts.
    pub fn from_ggml(
        dtype: GgmlDType,
        data: &[u8],
        rows: usize,
        cols: usize,
    ) -> Result<Self, String> {
        let (kind, offset) =
            target_of(dtype).ok_or_else(|| format!("unsupported ggml type {dtype:?}"))?;
        let block_size = dtype.block_size();
        if cols == 0 || !cols.is_multiple_of(BLOCK) || !cols.is_multiple_of(block_size) {
            return Err(format!(
                "{cols} columns are not a multiple of the {dtype:?} block size"
            ));
        }
        let row_bytes = cols / block_size * dtype.type_size();
        if data.len() != rows * row_bytes {
            return Err(format!(
                "{dtype:?} [{rows}, {cols}] needs {} bytes, got {}",
                rows * row_bytes,
                data.len()
            ));
        }
        let nb = cols / BLOCK;
        let groups = rows.div_ceil(2 * GROUP) * 2;
        let scale_len = if offset.is_some() { GROUP } else { 2 * GROUP };
        let mut w = QMatrix {
            rows,
            cols,
            nb,
            groups,
            kind,
            offset,
            quants: AlignedBytes::zeroed(groups * nb * kind.group_block_bytes()),
            high: vec![0; if kind == Kind::U5 { groups * nb * 2 } else { 0 }],
            scales: vec![0; groups * nb * scale_len],
        };
        let mut row = RowBuf {
            u: vec![0; cols],
            d: vec![0.0; nb],
            m: vec![0.0; nb],
            f: Vec::new(),
        };
        for (r, src) in data.chunks_exact(row_bytes).enumerate() {
            decode_row(dtype, src, &mut row);
            w.pack_row(r, &row);
        }
        Ok(w)
    }

    /// Writes row `r` into the interleaved layout.
    fn pack_row(&mut self, r: usize, row: &RowBuf) {
        let (g, i) = (r / GROUP, r % GROUP);
        let gbb = self.kind.group_block_bytes();
        let scale_len = self.scales.len() / (self.groups * self.nb);
        for b in 0..self.nb {
            let gb = group_block(self.nb, g, b);
            let u = &row.u[b * BLOCK..][..BLOCK];
            let q = &mut self.quants.as_mut_slice()[gb * gbb..][..gbb];
            match self.kind {
                Kind::U4 | Kind::U5 => {
                    for j in 0..16 {
                        q[16 * i + j] = (u[j] & 0xF) | ((u[j + 16] & 0xF) << 4);
                        if self.kind == Kind::U5 {
                            let bit = 16 * i + j;
                            self.high[2 * gb] |= u64::from(u[j] >> 4) << bit;
                            self.high[2 * gb + 1] |= u64::from(u[j + 16] >> 4) << bit;
                        }
                    }
                }
                Kind::U8 => {
                    q[16 * i..][..16].copy_from_slice(&u[..16]);
                    q[64 + 16 * i..][..16].copy_from_slice(&u[16..]);
                }
            }
            self.scales[gb * scale_len + i] = f16::from_f32(row.d[b]).to_bits();
            if self.offset.is_none() {
                self.scales[gb * scale_len + GROUP + i] = f16::from_f32(row.m[b]).to_bits();
            }
        }
    }

    /// Unsigned values, `d` and `m` of block `b` of row `r`.
    fn unpack(&self, r: usize, b: usize, u: &mut [u8; BLOCK]) -> (f32, f32) {
        let (g, i) = (r / GROUP, r % GROUP);
        let gb = group_block(self.nb, g, b);
        let gbb = self.kind.group_block_bytes();
        let q = &self.quants.as_slice()[gb * gbb..][..gbb];
        match self.kind {
            Kind::U4 | Kind::U5 => {
                for j in 0..16 {
                    u[j] = q[16 * i + j] & 0xF;
                    u[j + 16] = q[16 * i + j] >> 4;
                    if self.kind == Kind::U5 {
                        let bit = 16 * i + j;
                        u[j] |= (((self.high[2 * gb] >> bit) & 1) as u8) << 4;
                        u[j + 16] |= (((self.high[2 * gb + 1] >> bit) & 1) as u8) << 4;
                    }
                }
            }
            Kind::U8 => {
                u[..16].copy_from_slice(&q[16 * i..][..16]);
                u[16..].copy_from_slice(&q[64 + 16 * i..][..16]);
            }
        }
        let scale_len = if self.offset.is_some() {
            GROUP
        } else {
            2 * GROUP
        };
        let d = f16::from_bits(self.scales[gb * scale_len + i]).to_f32();
        let m = match self.offset {
            Some(c) => -c * d,
            None => f16::from_bits(self.scales[gb * scale_len + GROUP + i]).to_f32(),
        };
        (d, m)
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns (values per row).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Bytes held (for logging).
    pub fn bytes(&self) -> usize {
        self.quants.len + self.high.len() * size_of::<u64>() + self.scales.len() * size_of::<u16>()
    }

    /// Row `r` dequantized into `out` (len cols) — used for token-embedding lookup.
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        assert!(r < self.rows, "row {r} out of {} rows", self.rows);
        assert_eq!(out.len(), self.cols, "output length must equal cols");
        let mut u = [0u8; BLOCK];
        for (b, out) in out.chunks_exact_mut(BLOCK).enumerate() {
            let (d, m) = self.unpack(r, b, &mut u);
            for (o, &u) in out.iter_mut().zip(&u) {
                *o = d * f32::from(u) + m;
            }
        }
    }
}

/// Activations of `n` tokens x `cols`, quantized to signed 8 bits per block of 32 (scale per block, plus what
/// the kernels need, e.g. the per-block sum of the int8 values). Reusable buffers: `quantize` does not allocate
/// once capacity suffices.
#[derive(Default)]
pub struct QActs {
    n: usize,
    cols: usize,
    nb: usize,
    /// [n, cols] quantized values.
    q: Vec<i8>,
    /// [n, nb] block scales.
    d: Vec<f32>,
    /// [n, nb] block scale times the block's sum of quantized values.
    ds: Vec<f32>,
}

impl QActs {
    /// Quantizes `x`, [n, cols] row-major.
    pub fn quantize(&mut self, x: &[f32], n: usize, cols: usize) {
        assert!(
            cols.is_multiple_of(BLOCK),
            "cols {cols} must be a multiple of {BLOCK}"
        );
        assert_eq!(x.len(), n * cols, "x must hold n * cols values");
        let nb = cols / BLOCK;
        (self.n, self.cols, self.nb) = (n, cols, nb);
        self.q.resize(n * cols, 0);
        self.d.resize(n * nb, 0.0);
        self.ds.resize(n * nb, 0.0);
        for (k, (xb, qb)) in x
            .chunks_exact(BLOCK)
            .zip(self.q.chunks_exact_mut(BLOCK))
            .enumerate()
        {
            // Written lane-wise so that it vectorises: a running `max` over the block, or the rounding cast
            // straight to i8, compile to one scalar step per value (a tenth of prompt processing).
            let mut lanes = [0f32; 8];
            for chunk in xb.chunks_exact(8) {
                for (m, v) in lanes.iter_mut().zip(chunk) {
                    *m = m.max(v.abs());
                }
            }
            let amax = lanes.iter().fold(0f32, |a, v| a.max(*v));
            let d = amax / I8_MAX;
            let id = if amax > 0.0 { I8_MAX / amax } else { 0.0 };
            let mut wide = [0i32; BLOCK];
            for (w, v) in wide.iter_mut().zip(xb) {
                // Ties to even, as ggml's SIMD quantizers round: unlike `round`, it vectorises.
                *w = (v * id).round_ties_even() as i32;
            }
            for (q, w) in qb.iter_mut().zip(&wide) {
                *q = *w as i8;
            }
            let sum: i32 = wide.iter().sum();
            self.d[k] = d;
            self.ds[k] = d * sum as f32;
        }
    }

    /// Number of tokens.
    pub fn n(&self) -> usize {
        self.n
    }
}

/// The kernel family used by `matmul`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Path {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Path {
    /// Whether this CPU runs the path.
    fn supported(self) -> bool {
        match self {
            Path::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Path::Avx2 => x86::has_avx2(),
            #[cfg(target_arch = "x86_64")]
            Path::Avx512 => x86::has_avx512(),
        }
    }

    /// Whether the kernels take groups in pairs (chunks then start and end on even groups).
    fn pairs(self) -> bool {
        match self {
            Path::Scalar => false,
            #[cfg(target_arch = "x86_64")]
            Path::Avx2 => false,
            #[cfg(target_arch = "x86_64")]
            Path::Avx512 => true,
        }
    }

    /// Most tokens per tile.
    fn max_tile(self) -> usize {
        match self {
            Path::Scalar => 8,
            #[cfg(target_arch = "x86_64")]
            Path::Avx2 => x86::AVX2_TILE,
            #[cfg(target_arch = "x86_64")]
            Path::Avx512 => x86::AVX512_TILE,
        }
    }
}

/// Fastest path on this CPU, detected once.
static BEST_PATH: LazyLock<Path> = LazyLock::new(|| {
    #[cfg(target_arch = "x86_64")]
    for path in [Path::Avx512, Path::Avx2] {
        if path.supported() {
            return path;
        }
    }
    Path::Scalar
});

/// Results of one tile: [row in group][token in tile].
type TileOut = [[f32; 8]; GROUP];
/// Groups whose results are buffered (on the stack) before being copied to the output. Even.
const CHUNK_GROUPS: usize = 32;
/// Most tokens per tile of any path.
const MAX_TILE: usize = 8;

/// For every r in `rows` and t in 0..x.n(): out[(r - rows.start) * x.n() + t] = sum_k W[r,k] * x[t,k].
/// (Output is row-major over weight rows so that threads owning disjoint row ranges write disjoint slices.)
/// Panics if cols differ or out is too short.
pub fn matmul(w: &QMatrix, x: &QActs, rows: Range<usize>, out: &mut [f32]) {
    matmul_with(*BEST_PATH, w, x, rows, out);
}

#[cfg_attr(
    target_arch = "x86_64",
    expect(
        unsafe_code,
        reason = "calls the SIMD kernels once their CPU features are checked"
    )
)]
fn matmul_with(path: Path, w: &QMatrix, x: &QActs, rows: Range<usize>, out: &mut [f32]) {
    assert!(
        path.supported(),
        "{path:?} kernels need CPU features this machine lacks"
    );
    assert_eq!(w.cols, x.cols, "weight and activation columns differ");
    assert!(
        rows.start <= rows.end && rows.end <= w.rows,
        "rows {rows:?} out of {}",
        w.rows
    );
    let n = x.n;
    assert!(out.len() >= rows.len() * n, "output too short");
    if rows.is_empty() || n == 0 {
        return;
    }
    // Results of a chunk of groups times a tile of tokens, [row in chunk][token in tile].
    let mut res = [0f32; CHUNK_GROUPS * GROUP * MAX_TILE];
    let mut g0 = rows.start / GROUP;
    if path.pairs() {
        g0 &= !1;
    }
    let g_end = rows.end.div_ceil(GROUP);
    while g0 < g_end {
        let mut g1 = (g0 + CHUNK_GROUPS).min(g_end);
        if path.pairs() {
            g1 = g1.next_multiple_of(2);
        }
        let mut t0 = 0;
        while t0 < n {
            let tt = (n - t0).min(path.max_tile());
            match path {
                Path::Scalar => per_group(g0..g1, tt, &mut res, |g, tile| {
                    scalar_tile(w, x, g, t0, tt, tile)
                }),
                // SAFETY: `path.supported()` was asserted above: the CPU has the path's features.
                #[cfg(target_arch = "x86_64")]
                Path::Avx2 => per_group(g0..g1, tt, &mut res, |g, tile| unsafe {
                    x86::avx2_tile(w, x, g, t0, tt, tile)
                }),
                // SAFETY: as above.
                #[cfg(target_arch = "x86_64")]
                Path::Avx512 => unsafe { x86::avx512_tiles(w, x, g0..g1, t0, tt, &mut res) },
            }
            let (r0, r1) = ((g0 * GROUP).max(rows.start), (g1 * GROUP).min(rows.end));
            let res_at = |r: usize| (r - g0 * GROUP) * tt;
            if tt == n {
                out[(r0 - rows.start) * n..(r1 - rows.start) * n]
                    .copy_from_slice(&res[res_at(r0)..res_at(r1)]);
            } else {
                for r in r0..r1 {
                    out[(r - rows.start) * n + t0..][..tt].copy_from_slice(&res[res_at(r)..][..tt]);
                }
            }
            t0 += tt;
        }
        g0 = g1;
    }
}

/// Runs a one-group kernel over `groups`, gathering its tiles into `res` ([row in chunk][token in tile]).
fn per_group(
    groups: Range<usize>,
    tt: usize,
    res: &mut [f32],
    mut kernel: impl FnMut(usize, &mut TileOut),
) {
    let mut tile: TileOut = [[0.0; MAX_TILE]; GROUP];
    let start = groups.start;
    for g in groups {
        kernel(g, &mut tile);
        for (i, vals) in tile.iter().enumerate() {
            res[((g - start) * GROUP + i) * tt..][..tt].copy_from_slice(&vals[..tt]);
        }
    }
}

/// Portable kernel: rows of group `g` times tokens `t0..t0 + tt`.
fn scalar_tile(w: &QMatrix, x: &QActs, g: usize, t0: usize, tt: usize, out: &mut TileOut) {
    let mut u = [0u8; BLOCK];
    for (i, out) in out.iter_mut().enumerate() {
        out.fill(0.0);
        let r = g * GROUP + i;
        if r >= w.rows {
            continue;
        }
        for b in 0..w.nb {
            let (d, m) = w.unpack(r, b, &mut u);
            for (t, o) in out[..tt].iter_mut().enumerate() {
                let k = (t0 + t) * x.nb + b;
                let q = &x.q[k * BLOCK..][..BLOCK];
                let dot: i32 = u
                    .iter()
                    .zip(q)
                    .map(|(&u, &q)| i32::from(u) * i32::from(q))
                    .sum();
                *o += dot as f32 * (d * x.d[k]) + m * x.ds[k];
            }
        }
    }
}
