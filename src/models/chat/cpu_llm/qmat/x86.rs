//! x86-64 kernels: AVX-512 VNNI (`vpdpbusd` on 4 rows x 32 values per instruction pair) and AVX2
//! (`vpmaddubsw`, the x86-64-v3 baseline). Both compute one group of 4 rows times a tile of tokens.
#![expect(
    unsafe_code,
    reason = "SIMD kernels: target-feature intrinsics and unchecked loads in hot loops"
)]

use std::arch::x86_64::*;
use std::ops::Range;
use std::sync::LazyLock;

use super::{BLOCK, GROUP, Kind, QActs, QMatrix, TileOut, group_block};

/// Most tokens per AVX-512 tile (accumulators: one zmm and one xmm per token).
pub(super) const AVX512_TILE: usize = 8;
/// How far ahead decode prefetches weights.
const PREFETCH_BYTES: usize = 2048;
/// Smallest matrix (quant bytes) whose decode prefetches.
const PREFETCH_MIN_BYTES: usize = 1 << 20;
/// Most tokens per AVX2 tile (16 ymm registers only).
pub(super) const AVX2_TILE: usize = 2;

static AVX512: LazyLock<bool> = LazyLock::new(|| {
    is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("avx512vnni")
        && is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c")
});
static AVX2: LazyLock<bool> = LazyLock::new(|| {
    is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c")
});

pub(super) fn has_avx512() -> bool {
    *AVX512
}

pub(super) fn has_avx2() -> bool {
    *AVX2
}

/// Checks the indices the kernels read through raw pointers.
fn check_tile(w: &QMatrix, x: &QActs, g: usize, t0: usize, tt: usize) {
    assert!(g < w.groups, "group {g} out of {}", w.groups);
    assert!(tt >= 1 && t0 + tt <= x.n, "tokens {t0}+{tt} out of {}", x.n);
    assert_eq!(w.cols, x.cols, "weight and activation columns differ");
}

/// Expands to a `match` over (kind, symmetric, tile size) calling the monomorphised kernel `$k`.
macro_rules! dispatch {
    ($k:ident, $w:expr, $x:expr, $g:expr, $t0:expr, $tt:expr, $out:expr, [$($t:literal),*]) => {{
        macro_rules! tiles {
            ($bits:literal, $sym:literal) => {
                match $tt {
                    $($t => $k::<$bits, $sym, $t>($w, $x, $g, $t0, $out),)*
                    _ => unreachable!("tile size checked by the caller. This is a bug."),
                }
            };
        }
        match ($w.kind, $w.offset.is_some()) {
            (Kind::U4, false) => tiles!(4, false),
            (Kind::U4, true) => tiles!(4, true),
            (Kind::U5, false) => tiles!(5, false),
            (Kind::U5, true) => tiles!(5, true),
            (Kind::U8, false) => tiles!(8, false),
            (Kind::U8, true) => tiles!(8, true),
        }
    }};
}

/// Groups `groups` (an even range of pairs) times tokens `t0..t0 + tt` (tt <= `AVX512_TILE`) into `res`,
/// [row in range][token in tile].
///
/// # Safety
/// The CPU must support the features checked by `has_avx512`.
pub(super) unsafe fn avx512_tiles(
    w: &QMatrix,
    x: &QActs,
    groups: Range<usize>,
    t0: usize,
    tt: usize,
    res: &mut [f32],
) {
    assert!(
        groups.start.is_multiple_of(2) && groups.end.is_multiple_of(2) && groups.end <= w.groups
    );
    assert!(
        (1..=AVX512_TILE).contains(&tt) && t0 + tt <= x.n,
        "tokens {t0}+{tt} out of {}",
        x.n
    );
    assert_eq!(w.cols, x.cols, "weight and activation columns differ");
    assert!(
        res.len() >= groups.len() * GROUP * tt,
        "result buffer too short"
    );
    // SAFETY: features guaranteed by the caller; indices checked above.
    unsafe {
        dispatch!(
            tiles512,
            w,
            x,
            groups,
            t0,
            tt,
            res,
            [1, 2, 3, 4, 5, 6, 7, 8]
        )
    }
}

/// Group `g` times tokens `t0..t0 + tt` (tt <= `AVX2_TILE`) into `out`.
///
/// # Safety
/// The CPU must support the features checked by `has_avx2`.
pub(super) unsafe fn avx2_tile(
    w: &QMatrix,
    x: &QActs,
    g: usize,
    t0: usize,
    tt: usize,
    out: &mut TileOut,
) {
    check_tile(w, x, g, t0, tt);
    assert!(tt <= AVX2_TILE);
    // SAFETY: features guaranteed by the caller; indices checked by `check_tile`.
    unsafe { dispatch!(tile256, w, x, g, t0, tt, out, [1, 2]) }
}

/// d (and m) of the 4 rows of group-block `gb` as f32, m = -offset * d for symmetric formats.
#[inline(always)]
unsafe fn scales4<const SYM: bool>(w: &QMatrix, gb: usize) -> (__m128, __m128) {
    let sc = w.scales.as_ptr();
    // SAFETY: gb < groups * nb and the scales hold 4 (SYM) or 8 f16 per group-block; F16C is enabled by
    // every caller's target features.
    unsafe {
        if SYM {
            let d = _mm_cvtph_ps(_mm_loadl_epi64(sc.add(gb * GROUP).cast()));
            (d, _mm_mul_ps(d, _mm_set1_ps(-w.offset.unwrap_or(0.0))))
        } else {
            let dm = _mm256_cvtph_ps(_mm_loadu_si128(sc.add(gb * 2 * GROUP).cast()));
            (_mm256_castps256_ps128(dm), _mm256_extractf128_ps::<1>(dm))
        }
    }
}

/// Unsigned values of group-block `gb`: the first and second half-blocks of the 4 rows, one per 128-bit lane.
#[inline(always)]
unsafe fn load512<const BITS: u32>(
    w: &QMatrix,
    quants: *const u8,
    gb: usize,
) -> (__m512i, __m512i) {
    // SAFETY: gb < groups * nb (checked by the callers); quants hold `group_block_bytes` per group-block and
    // `high` two masks per group-block for 5 bits; AVX-512 BW is enabled by every caller's target features.
    unsafe {
        let q = quants.add(gb * w.kind.group_block_bytes());
        if BITS == 8 {
            return (
                _mm512_loadu_si512(q.cast()),
                _mm512_loadu_si512(q.add(64).cast()),
            );
        }
        let low4 = _mm512_set1_epi8(0x0F);
        let v = _mm512_loadu_si512(q.cast());
        let lo = _mm512_and_si512(v, low4);
        let hi = _mm512_and_si512(_mm512_srli_epi16::<4>(v), low4);
        if BITS == 5 {
            let bit4 = _mm512_set1_epi8(0x10);
            let k = w.high.as_ptr().add(2 * gb);
            (
                _mm512_mask_add_epi8(lo, *k, lo, bit4),
                _mm512_mask_add_epi8(hi, *k.add(1), hi, bit4),
            )
        } else {
            (lo, hi)
        }
    }
}

/// Pairs of groups (8 rows) times `T` tokens: the activations' loads and scales serve both groups.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn tiles512<const BITS: u32, const SYM: bool, const T: usize>(
    w: &QMatrix,
    x: &QActs,
    groups: Range<usize>,
    t0: usize,
    res: &mut [f32],
) {
    let nb = w.nb;
    let quants = w.quants.as_slice().as_ptr();
    let xq = x.q.as_ptr();
    // Lane group i (4 floats) of a zmm belongs to row i of its group.
    let spread = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
    // After the in-lane sums: row i of the first group at lane 4i, of the second at 4i + 1.
    let gather = _mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0, 13, 9, 5, 1, 12, 8, 4, 0);
    // Decode of a matrix beyond the L2 cache streams it from memory: fetch ahead of the hardware prefetcher
    // (costs ~20% on matrices that stay cached).
    let prefetch = T == 1 && w.quants.len > PREFETCH_MIN_BYTES;
    for (pair, g) in groups.clone().step_by(2).enumerate() {
        let mut acc = [[_mm512_setzero_ps(); 2]; T];
        let mut macc = [_mm256_setzero_ps(); T];
        for b in 0..nb {
            let (ga, gb) = (group_block(nb, g, b), group_block(nb, g + 1, b));
            // SAFETY: ga, gb < groups * nb (checked by `avx512_tiles`); token rows t0..t0 + T < n exist.
            unsafe {
                if prefetch {
                    let ahead =
                        quants.wrapping_add(ga * w.kind.group_block_bytes() + PREFETCH_BYTES);
                    for line in 0..2 * w.kind.group_block_bytes() / 64 {
                        _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64 * line).cast());
                    }
                }
                let (lo_a, hi_a) = load512::<BITS>(w, quants, ga);
                let (lo_b, hi_b) = load512::<BITS>(w, quants, gb);
                let (d_a, m_a) = scales4::<SYM>(w, ga);
                let (d_b, m_b) = scales4::<SYM>(w, gb);
                let d_a = _mm512_permutexvar_ps(spread, _mm512_castps128_ps512(d_a));
                let d_b = _mm512_permutexvar_ps(spread, _mm512_castps128_ps512(d_b));
                let m8 = _mm256_set_m128(m_b, m_a);
                for t in 0..T {
                    let k = (t0 + t) * nb + b;
                    let xp = xq.add(k * BLOCK);
                    let xl = _mm512_broadcast_i32x4(_mm_loadu_si128(xp.cast()));
                    let xh = _mm512_broadcast_i32x4(_mm_loadu_si128(xp.add(16).cast()));
                    let dx = _mm512_set1_ps(*x.d.get_unchecked(k));
                    let p_a = _mm512_dpbusd_epi32(
                        _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo_a, xl),
                        hi_a,
                        xh,
                    );
                    let p_b = _mm512_dpbusd_epi32(
                        _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo_b, xl),
                        hi_b,
                        xh,
                    );
                    acc[t][0] =
                        _mm512_fmadd_ps(_mm512_cvtepi32_ps(p_a), _mm512_mul_ps(d_a, dx), acc[t][0]);
                    acc[t][1] =
                        _mm512_fmadd_ps(_mm512_cvtepi32_ps(p_b), _mm512_mul_ps(d_b, dx), acc[t][1]);
                    macc[t] = _mm256_fmadd_ps(m8, _mm256_set1_ps(*x.ds.get_unchecked(k)), macc[t]);
                }
            }
        }
        for t in 0..T {
            let [a, b] = acc[t];
            // Per 128-bit lane i: [a0 + a1, a2 + a3, b0 + b1, b2 + b3], then [row i of a, row i of b, ..].
            let s = _mm512_add_ps(
                _mm512_shuffle_ps::<0b10_00_10_00>(a, b),
                _mm512_shuffle_ps::<0b11_01_11_01>(a, b),
            );
            let s = _mm512_add_ps(
                _mm512_shuffle_ps::<0b10_00_10_00>(s, s),
                _mm512_shuffle_ps::<0b11_01_11_01>(s, s),
            );
            let rows8 = _mm512_castps512_ps256(_mm512_permutexvar_ps(gather, s));
            let rows8 = _mm256_add_ps(rows8, macc[t]);
            let mut v = [0f32; 2 * GROUP];
            // SAFETY: `v` holds 8 floats.
            unsafe { _mm256_storeu_ps(v.as_mut_ptr(), rows8) };
            let base = pair * 2 * GROUP;
            for (i, v) in v.iter().enumerate() {
                res[(base + i) * T + t] = *v;
            }
        }
    }
}

/// 0xFF in byte j where bit j of `x` is set (ggml's `bytes_from_bits_32`).
#[inline(always)]
unsafe fn bytes_from_bits(x: u32) -> __m256i {
    // SAFETY: AVX2 is enabled by every caller's target features.
    unsafe {
        let shuf = _mm256_set_epi64x(
            0x0303030303030303,
            0x0202020202020202,
            0x0101010101010101,
            0,
        );
        let bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(x as i32), shuf);
        let bytes = _mm256_or_si256(bytes, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe));
        _mm256_cmpeq_epi8(bytes, _mm256_set1_epi64x(-1))
    }
}

/// u8 x i8 dot products of one row pair's half-blocks: 8 i32 (4 per row).
#[inline(always)]
unsafe fn dot_pair<const BITS: u32>(lo: __m256i, hi: __m256i, xl: __m256i, xh: __m256i) -> __m256i {
    // SAFETY: AVX2 is enabled by every caller's target features.
    unsafe {
        let ones = _mm256_set1_epi16(1);
        if BITS == 8 {
            // lo/hi hold the signed q = u - 128; |q| * sign(x, q) stays within i16 (128 * 127 * 2).
            let pl = _mm256_maddubs_epi16(_mm256_abs_epi8(lo), _mm256_sign_epi8(xl, lo));
            let ph = _mm256_maddubs_epi16(_mm256_abs_epi8(hi), _mm256_sign_epi8(xh, hi));
            _mm256_add_epi32(_mm256_madd_epi16(pl, ones), _mm256_madd_epi16(ph, ones))
        } else {
            // u <= 31: each i16 pair sum <= 31 * 127 * 2, the sum of both halves fits i16.
            let p = _mm256_add_epi16(_mm256_maddubs_epi16(lo, xl), _mm256_maddubs_epi16(hi, xh));
            _mm256_madd_epi16(p, ones)
        }
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tile256<const BITS: u32, const SYM: bool, const T: usize>(
    w: &QMatrix,
    x: &QActs,
    g: usize,
    t0: usize,
    out: &mut TileOut,
) {
    let nb = w.nb;
    let gbb = w.kind.group_block_bytes();
    let quants = w.quants.as_slice().as_ptr();
    let xq = x.q.as_ptr();
    let spread_a = _mm256_set_epi32(1, 1, 1, 1, 0, 0, 0, 0);
    let spread_b = _mm256_set_epi32(3, 3, 3, 3, 2, 2, 2, 2);
    let low4 = _mm256_set1_epi8(0x0F);
    let bit4 = _mm256_set1_epi8(0x10);
    let flip = _mm256_set1_epi8(-128);
    // Rows 0-1 (a) and 2-3 (b), one row per 128-bit lane.
    let mut acc_a = [_mm256_setzero_ps(); T];
    let mut acc_b = [_mm256_setzero_ps(); T];
    let mut macc = [_mm_setzero_ps(); T];
    for b in 0..nb {
        let gb = group_block(nb, g, b);
        // SAFETY: as in `tile512`.
        unsafe {
            let q = quants.add(gb * gbb);
            let (lo_a, hi_a, lo_b, hi_b) = if BITS == 8 {
                let ld = |o: usize| _mm256_xor_si256(_mm256_loadu_si256(q.add(o).cast()), flip);
                (ld(0), ld(64), ld(32), ld(96))
            } else {
                let va = _mm256_loadu_si256(q.cast());
                let vb = _mm256_loadu_si256(q.add(32).cast());
                let mut r = (
                    _mm256_and_si256(va, low4),
                    _mm256_and_si256(_mm256_srli_epi16::<4>(va), low4),
                    _mm256_and_si256(vb, low4),
                    _mm256_and_si256(_mm256_srli_epi16::<4>(vb), low4),
                );
                if BITS == 5 {
                    let k = w.high.as_ptr().add(2 * gb).cast::<u32>();
                    let hb = |i: usize| _mm256_and_si256(bytes_from_bits(*k.add(i)), bit4);
                    r.0 = _mm256_or_si256(r.0, hb(0));
                    r.2 = _mm256_or_si256(r.2, hb(1));
                    r.1 = _mm256_or_si256(r.1, hb(2));
                    r.3 = _mm256_or_si256(r.3, hb(3));
                }
                r
            };
            let (d4, m4) = scales4::<SYM>(w, gb);
            // The 8-bit dot is taken over q = u - 128, so m gains 128 d.
            let m4 = if BITS == 8 {
                _mm_fmadd_ps(d4, _mm_set1_ps(128.0), m4)
            } else {
                m4
            };
            let d_a = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(d4), spread_a);
            let d_b = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(d4), spread_b);
            for t in 0..T {
                let k = (t0 + t) * nb + b;
                let xp = xq.add(k * BLOCK);
                let xl = _mm256_broadcastsi128_si256(_mm_loadu_si128(xp.cast()));
                let xh = _mm256_broadcastsi128_si256(_mm_loadu_si128(xp.add(16).cast()));
                let dx = _mm256_set1_ps(*x.d.get_unchecked(k));
                let pa = dot_pair::<BITS>(lo_a, hi_a, xl, xh);
                let pb = dot_pair::<BITS>(lo_b, hi_b, xl, xh);
                acc_a[t] =
                    _mm256_fmadd_ps(_mm256_cvtepi32_ps(pa), _mm256_mul_ps(d_a, dx), acc_a[t]);
                acc_b[t] =
                    _mm256_fmadd_ps(_mm256_cvtepi32_ps(pb), _mm256_mul_ps(d_b, dx), acc_b[t]);
                macc[t] = _mm_fmadd_ps(m4, _mm_set1_ps(*x.ds.get_unchecked(k)), macc[t]);
            }
        }
    }
    for t in 0..T {
        let mut lanes = [0f32; 16];
        let mut m = [0f32; GROUP];
        // SAFETY: the arrays hold 16 and 4 floats.
        unsafe {
            _mm256_storeu_ps(lanes.as_mut_ptr(), acc_a[t]);
            _mm256_storeu_ps(lanes.as_mut_ptr().add(8), acc_b[t]);
            _mm_storeu_ps(m.as_mut_ptr(), macc[t]);
        }
        for (i, row) in out.iter_mut().enumerate() {
            row[t] = lanes[4 * i..][..4].iter().sum::<f32>() + m[i];
        }
    }
}
