//! The element-wise steps of the forward pass, written as plain loops over slices that the compiler
//! vectorises: RMS norm, rotary embedding and SiLU gating (dot products, `exp` and softmax are in
//! [`crate::models::math`]).

use crate::models::math::{dot, exp};

/// `y += a * x`.
pub fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y = a.mul_add(*x, *y);
    }
}

/// `out = x / rms(x) * weight`, per row of `width` values.
pub fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let width = weight.len();
    for (row, out) in x.chunks_exact(width).zip(out.chunks_exact_mut(width)) {
        #[expect(clippy::cast_precision_loss, reason = "widths are a few thousand")]
        let mean = dot(row, row) / width as f32;
        let scale = 1.0 / (mean + eps).sqrt();
        for ((o, v), w) in out.iter_mut().zip(row).zip(weight) {
            *o = v * scale * w;
        }
    }
}

/// `gate = silu(gate) * up`, element-wise.
pub fn silu_mul(gate: &mut [f32], up: &[f32]) {
    for (g, u) in gate.iter_mut().zip(up) {
        *g = *g / (1.0 + exp(-*g)) * u;
    }
}

/// How rotary position embedding pairs the dimensions of a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeStyle {
    /// Dimensions (2i, 2i+1) rotate together: llama GGUF files, whose q/k rows were permuted for it.
    Interleaved,
    /// Dimensions (i, i + head_dim/2) rotate together: qwen2 (the NeoX convention).
    Halves,
}

/// Rotary position embedding of one token: `heads` heads of `inv_freq.len() * 2` values at `position`.
pub fn rope(x: &mut [f32], position: usize, inv_freq: &[f32], style: RopeStyle) {
    let half = inv_freq.len();
    // The angle is formed in f32, as llama.cpp and candle do.
    #[expect(clippy::cast_precision_loss, reason = "positions are below 2^24")]
    let p = position as f32;
    let (mut sin, mut cos) = ([0f32; 128], [0f32; 128]);
    for (i, f) in inv_freq.iter().enumerate() {
        (sin[i], cos[i]) = (p * f).sin_cos();
    }
    for head in x.chunks_exact_mut(half * 2) {
        match style {
            RopeStyle::Interleaved => {
                for (i, pair) in head.chunks_exact_mut(2).enumerate() {
                    let (a, b) = (pair[0], pair[1]);
                    pair[0] = a * cos[i] - b * sin[i];
                    pair[1] = a * sin[i] + b * cos[i];
                }
            }
            RopeStyle::Halves => {
                let (lo, hi) = head.split_at_mut(half);
                for i in 0..half {
                    let (a, b) = (lo[i], hi[i]);
                    lo[i] = a * cos[i] - b * sin[i];
                    hi[i] = a * sin[i] + b * cos[i];
                }
            }
        }
    }
}

/// The inverse frequencies of rotary embedding for heads of `head_dim` values: `base^(-2i/head_dim)`.
pub fn rope_inv_freq(head_dim: usize, base: f32) -> Vec<f32> {
    (0..head_dim / 2)
        .map(|i| {
            #[expect(clippy::cast_precision_loss, reason = "head sizes are small")]
            let e = (2 * i) as f32 / head_dim as f32;
            1.0 / base.powf(e)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rope_styles_rotate_their_own_pairs_and_keep_norms() {
        let inv = rope_inv_freq(8, 10_000.0);
        let x: Vec<f32> = (1..=8).map(|v| v as f32).collect();
        for style in [RopeStyle::Interleaved, RopeStyle::Halves] {
            let mut y = x.clone();
            rope(&mut y, 0, &inv, style);
            assert_eq!(y, x, "position 0 is the identity");
            rope(&mut y, 7, &inv, style);
            let pair = |v: &[f32], i: usize| match style {
                RopeStyle::Interleaved => (v[2 * i], v[2 * i + 1]),
                RopeStyle::Halves => (v[i], v[i + 4]),
            };
            for (i, freq) in inv.iter().enumerate() {
                let (a, b) = pair(&x, i);
                let (c, d) = pair(&y, i);
                assert!((a.hypot(b) - c.hypot(d)).abs() < 1e-5, "{style:?} pair {i}");
                let angle = (a * d - b * c).atan2(a * c + b * d);
                let want = (7.0 * freq).sin().atan2((7.0 * freq).cos());
                assert!(
                    (angle - want).abs() < 1e-4,
                    "{style:?} pair {i}: {angle} vs {want}"
                );
            }
        }
    }

    #[test]
    fn rms_norm_gives_unit_rms_before_the_weight() {
        let x = [3.0, -4.0, 0.0, 5.0, 1.0, 1.0, 1.0, 1.0];
        let mut out = [0.0; 8];
        rms_norm(&x, &[1.0; 4], 0.0, &mut out);
        for row in out.chunks_exact(4) {
            let ms = row.iter().map(|v| v * v).sum::<f32>() / 4.0;
            assert!((ms - 1.0).abs() < 1e-5);
        }
    }
}
