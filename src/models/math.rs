//! Vectorisable math shared by docpipe's CPU forward passes (the BERT embedder and the chat models): loops over
//! slices without branches or library calls, which the compiler turns into SIMD code.

/// Lanes of the partial sums in reductions, so that the compiler can keep them in one vector register.
const LANES: usize = 16;

/// `a · b`, summed in [`LANES`] independent partial sums (vectorisable, unlike a plain `iter().sum()`).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [0f32; LANES];
    let (a_main, a_tail) = a.split_at(a.len() - a.len() % LANES);
    let (b_main, b_tail) = b.split_at(a_main.len());
    for (ca, cb) in a_main.chunks_exact(LANES).zip(b_main.chunks_exact(LANES)) {
        for i in 0..LANES {
            acc[i] = ca[i].mul_add(cb[i], acc[i]);
        }
    }
    let tail: f32 = a_tail.iter().zip(b_tail).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

/// `e^x`, vectorisable: a degree-6 polynomial on the reduced argument scaled by a power of two built in the
/// exponent bits. Relative error below 3e-7 over [-87, 88]; 0 below -87.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let clamped = x.clamp(-87.0, 88.0);
    let n = (clamped * LOG2E).round();
    let r = n.mul_add(-LN2_LO, n.mul_add(-LN2_HI, clamped));
    let p = r
        .mul_add(1.0 / 720.0, 1.0 / 120.0)
        .mul_add(r, 1.0 / 24.0)
        .mul_add(r, 1.0 / 6.0)
        .mul_add(r, 0.5)
        .mul_add(r, 1.0)
        .mul_add(r, 1.0);
    #[expect(clippy::cast_possible_truncation, reason = "n is within [-126, 127]")]
    let scale = f32::from_bits((((n as i32) + 127) as u32) << 23);
    if x < -87.0 { 0.0 } else { p * scale }
}

/// Softmax of `scores` in place.
pub fn softmax(scores: &mut [f32]) {
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for s in scores.iter_mut() {
        *s = exp(*s - max);
    }
    let sum: f32 = scores.iter().sum();
    let inv = 1.0 / sum;
    for s in scores.iter_mut() {
        *s *= inv;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_3e_7_relative_of_the_library_exp() {
        let mut worst = 0f64;
        for i in -87_000..=88_000 {
            #[expect(clippy::cast_precision_loss, reason = "test grid")]
            let x = i as f32 / 1000.0;
            let want = f64::from(x).exp();
            let got = f64::from(exp(x));
            worst = worst.max(((got - want) / want).abs());
        }
        assert!(worst < 3e-7, "worst relative error {worst:e}");
        assert_eq!(exp(-100.0), 0.0);
    }

    #[test]
    fn softmax_sums_to_one_and_keeps_order() {
        let mut s = vec![1.0, 3.0, -2.0, 0.5, 3.0];
        softmax(&mut s);
        assert!((s.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(s[1] > s[0] && s[0] > s[3] && s[3] > s[2]);
        assert!((s[1] - s[4]).abs() < 1e-7);
    }

    #[test]
    fn dot_matches_a_plain_sum_for_every_tail_length() {
        for len in 0..70 {
            #[expect(clippy::cast_precision_loss, reason = "test values")]
            let a: Vec<f32> = (0..len).map(|i| (i as f32 * 0.37).sin()).collect();
            #[expect(clippy::cast_precision_loss, reason = "test values")]
            let b: Vec<f32> = (0..len).map(|i| (i as f32 * 0.11).cos()).collect();
            let want: f64 = a
                .iter()
                .zip(&b)
                .map(|(x, y)| f64::from(*x) * f64::from(*y))
                .sum();
            assert!((f64::from(dot(&a, &b)) - want).abs() < 1e-5, "len {len}");
        }
    }
}
