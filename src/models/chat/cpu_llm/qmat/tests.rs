use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};

use super::*;

/// Deterministic values in [-1, 1) with a few larger outliers (xorshift).
pub(super) fn values(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|i| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let v = (s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0;
            if i % 97 == 0 { v * 4.0 } else { v }
        })
        .collect()
}

/// ggml bytes of `w` [rows, cols] quantized by candle, and candle's dequantization.
fn ggml(dtype: GgmlDType, w: &[f32], rows: usize, cols: usize) -> (Vec<u8>, Vec<f32>) {
    let t = Tensor::from_slice(w, (rows, cols), &Device::Cpu).expect("tensor");
    let q = QTensor::quantize(&t, dtype).expect("quantize");
    let bytes = q.data().expect("data").into_owned();
    let deq = q
        .dequantize(&Device::Cpu)
        .expect("dequantize")
        .flatten_all()
        .expect("flat");
    (bytes, deq.to_vec1::<f32>().expect("vec"))
}

/// Types and the largest dequantization error allowed, relative to the row's largest magnitude.
const TYPES: [(GgmlDType, f32); 11] = [
    (GgmlDType::Q4_0, 1e-6),
    (GgmlDType::Q4_1, 1e-6),
    (GgmlDType::Q5_0, 1e-6),
    (GgmlDType::Q5_1, 1e-6),
    (GgmlDType::Q8_0, 1e-6),
    // d * sc and dmin * mn rounded to f16: 2^-11 relative.
    (GgmlDType::Q4K, 1e-3),
    (GgmlDType::Q5K, 1e-3),
    // Re-quantised to 8 bits per 32 values: half a step of amax / 127, plus f16 rounding of d.
    (GgmlDType::Q6K, 0.5 / 127.0 + 1e-3),
    (GgmlDType::F32, 0.5 / 127.0 + 1e-3),
    (GgmlDType::F16, 0.5 / 127.0 + 1e-3),
    (GgmlDType::BF16, 0.5 / 127.0 + 1e-3),
];

const ROWS: usize = 13;
const COLS: usize = 512;

fn paths() -> Vec<Path> {
    let all = [
        Path::Scalar,
        #[cfg(target_arch = "x86_64")]
        Path::Avx2,
        #[cfg(target_arch = "x86_64")]
        Path::Avx512,
    ];
    all.into_iter().filter(|p| p.supported()).collect()
}

#[test]
fn dequantize_row_matches_candle() {
    let w = values(ROWS * COLS, 1);
    for (dtype, tol) in TYPES {
        let (bytes, deq) = ggml(dtype, &w, ROWS, COLS);
        let q = QMatrix::from_ggml(dtype, &bytes, ROWS, COLS).expect("from_ggml");
        assert_eq!((q.rows(), q.cols()), (ROWS, COLS));
        let mut row = vec![0.0; COLS];
        for r in 0..ROWS {
            q.dequantize_row(r, &mut row);
            let want = &deq[r * COLS..][..COLS];
            let amax = want.iter().fold(0f32, |a, v| a.max(v.abs())).max(1e-6);
            for (k, (a, b)) in row.iter().zip(want).enumerate() {
                assert!(
                    (a - b).abs() <= tol * amax,
                    "{dtype:?} row {r} col {k}: {a} vs candle {b}"
                );
            }
        }
    }
}

#[test]
fn bytes_are_not_inflated() {
    let w = values(ROWS * COLS, 2);
    // Bytes per weight: padding to 4 rows aside, at most the ggml size (Q5_0 pays for nothing extra either).
    for (dtype, per_weight) in [
        (GgmlDType::Q4_1, 0.625),
        (GgmlDType::Q4_0, 0.5625),
        (GgmlDType::Q5_0, 0.6875),
        (GgmlDType::Q8_0, 1.0625),
        (GgmlDType::Q4K, 0.625),
    ] {
        let (bytes, _) = ggml(dtype, &w, ROWS, COLS);
        let q = QMatrix::from_ggml(dtype, &bytes, ROWS, COLS).expect("from_ggml");
        let padded_rows = ROWS.div_ceil(2 * GROUP) * 2 * GROUP;
        assert_eq!(
            q.bytes() as f64,
            per_weight * (padded_rows * COLS) as f64,
            "{dtype:?}"
        );
    }
}

#[test]
fn from_ggml_rejects_bad_input() {
    let (bytes, _) = ggml(GgmlDType::Q4_1, &values(4 * 64, 3), 4, 64);
    assert!(QMatrix::from_ggml(GgmlDType::Q4_1, &bytes[1..], 4, 64).is_err());
    assert!(QMatrix::from_ggml(GgmlDType::Q4_1, &bytes, 5, 64).is_err());
    assert!(QMatrix::from_ggml(GgmlDType::Q2K, &vec![0; 84 * 4], 4, 256).is_err());
    assert!(QMatrix::from_ggml(GgmlDType::Q4K, &bytes, 1, 64).is_err());
}

#[test]
fn quantize_reuses_buffers() {
    let mut a = QActs::default();
    a.quantize(&values(9 * 96, 4), 9, 96);
    let caps = (a.q.capacity(), a.d.capacity(), a.ds.capacity());
    let ptr = a.q.as_ptr();
    a.quantize(&values(3 * 64, 5), 3, 64);
    assert_eq!((a.q.capacity(), a.d.capacity(), a.ds.capacity()), caps);
    assert_eq!(a.q.as_ptr(), ptr);
    assert_eq!(a.n(), 3);
    // Each value dequantizes to within half a step of its block's scale.
    let x = values(3 * 64, 5);
    for (k, v) in x.iter().enumerate() {
        let d = a.d[k / BLOCK];
        assert!((d * f32::from(a.q[k]) - v).abs() <= 0.5 * d * 1.0001, "{k}");
    }
}

/// Dequantized activations, [n, cols].
fn dequantized_acts(a: &QActs) -> Vec<f32> {
    a.q.iter()
        .enumerate()
        .map(|(k, &q)| a.d[k / BLOCK] * f32::from(q))
        .collect()
}

#[test]
fn matmul_matches_references_on_every_path() {
    let w = values(ROWS * COLS, 6);
    let ranges = [0..ROWS, 1..12, 3..8, 5..6, 7..13, 4..8, 2..2];
    for (dtype, _) in TYPES {
        let (bytes, _) = ggml(dtype, &w, ROWS, COLS);
        let q = QMatrix::from_ggml(dtype, &bytes, ROWS, COLS).expect("from_ggml");
        let mut wq = vec![0.0; ROWS * COLS];
        for (r, row) in wq.chunks_exact_mut(COLS).enumerate() {
            q.dequantize_row(r, row);
        }
        let mut acts = QActs::default();
        for n in 1..=9 {
            let x = values(n * COLS, 100 + n as u64);
            acts.quantize(&x, n, COLS);
            let xq = dequantized_acts(&acts);
            for path in paths() {
                for rows in ranges.clone() {
                    let mut out = vec![f32::NAN; rows.len() * n];
                    matmul_with(path, &q, &acts, rows.clone(), &mut out);
                    for r in rows.clone() {
                        for t in 0..n {
                            let (wr, xt) = (&wq[r * COLS..][..COLS], &xq[t * COLS..][..COLS]);
                            let (w0, x0) = (&w[r * COLS..][..COLS], &x[t * COLS..][..COLS]);
                            let exact: f64 = wr
                                .iter()
                                .zip(xt)
                                .map(|(a, b)| f64::from(*a) * f64::from(*b))
                                .sum();
                            let mag: f64 = wr
                                .iter()
                                .zip(xt)
                                .map(|(a, b)| f64::from((a * b).abs()))
                                .sum();
                            let got = f64::from(out[(r - rows.start) * n + t]);
                            let ctx = format!("{dtype:?} {path:?} n={n} rows={rows:?} r={r} t={t}");
                            assert!(
                                (got - exact).abs() <= 1e-5 * mag + 1e-6,
                                "{ctx}: {got} vs {exact}"
                            );
                            // Against the unquantized product: the error is bounded by the quantization errors.
                            let f32_ref: f64 = w0
                                .iter()
                                .zip(x0)
                                .map(|(a, b)| f64::from(*a) * f64::from(*b))
                                .sum();
                            let bound: f64 = (0..COLS)
                                .map(|k| {
                                    f64::from(
                                        (w0[k] - wr[k]).abs() * x0[k].abs()
                                            + wr[k].abs() * (x0[k] - xt[k]).abs(),
                                    )
                                })
                                .sum();
                            assert!(
                                (got - f32_ref).abs() <= bound * 1.001 + 1e-5 * mag + 1e-6,
                                "{ctx}: {got} vs unquantized {f32_ref} (bound {bound})"
                            );
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn matmul_checks_shapes() {
    let (bytes, _) = ggml(GgmlDType::Q8_0, &values(4 * 64, 7), 4, 64);
    let q = QMatrix::from_ggml(GgmlDType::Q8_0, &bytes, 4, 64).expect("from_ggml");
    let mut acts = QActs::default();
    acts.quantize(&values(2 * 32, 8), 2, 32);
    assert!(std::panic::catch_unwind(|| matmul(&q, &acts, 0..4, &mut [0.0; 8])).is_err());
    acts.quantize(&values(2 * 64, 8), 2, 64);
    assert!(std::panic::catch_unwind(|| matmul(&q, &acts, 0..4, &mut [0.0; 7])).is_err());
    matmul(&q, &acts, 0..4, &mut [0.0; 8]);
}
