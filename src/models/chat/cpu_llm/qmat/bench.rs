//! Single-thread speed of the kernels: `cargo test --release --lib qmat::bench -- --ignored --nocapture`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use candle_core::quantized::GgmlDType;
use half::f16;

use super::tests::values;
use super::*;

/// Random ggml bytes of `dtype` with sane f16 scales (quantizing the big matrices with candle is slow).
fn random_ggml(dtype: GgmlDType, rows: usize, cols: usize) -> Vec<u8> {
    let (bs, ts) = (dtype.block_size(), dtype.type_size());
    let mut s = 0x2545_F491_4F6C_DD1Du64;
    let mut bytes: Vec<u8> = (0..rows * cols / bs * ts)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 32) as u8
        })
        .collect();
    let scale = f16::from_f32(0.01).to_le_bytes();
    let f16_fields: &[usize] = match dtype {
        GgmlDType::Q4_1 | GgmlDType::Q5_1 | GgmlDType::Q4K | GgmlDType::Q5K => &[0, 2],
        GgmlDType::Q6K => &[208],
        _ => &[0],
    };
    for blk in bytes.chunks_exact_mut(ts) {
        for &at in f16_fields {
            blk[at..at + 2].copy_from_slice(&scale);
        }
    }
    bytes
}

/// Best time of `f` over repeated runs for at least `budget`.
fn best(budget: Duration, mut f: impl FnMut()) -> Duration {
    let start = Instant::now();
    let mut best = Duration::MAX;
    while start.elapsed() < budget || best == Duration::MAX {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed());
    }
    best
}

fn memory_read_gbs() -> f64 {
    let words = 512 << 20 >> 3;
    let data: Vec<u64> = (0..words as u64).collect();
    let t = best(Duration::from_secs(2), || {
        black_box(data.iter().fold(0u64, |a, &v| a.wrapping_add(v)));
    });
    (words * 8) as f64 / t.as_secs_f64() / 1e9
}

#[test]
#[ignore = "benchmark"]
fn decode_and_prompt() {
    let bw = memory_read_gbs();
    println!("plain memory read (sum of 512 MB u64): {bw:.1} GB/s");
    let shapes = [
        ("576x576 U4 (Q4_1)", GgmlDType::Q4_1, 576, 576),
        ("1536x576 U4 (Q4_1)", GgmlDType::Q4_1, 1536, 576),
        ("4864x896 U5 (Q5_0)", GgmlDType::Q5_0, 4864, 896),
        ("896x4864 U4 (Q4_K)", GgmlDType::Q4K, 896, 4864),
        ("151936x896 U8 (Q8_0)", GgmlDType::Q8_0, 151936, 896),
    ];
    println!("path {:?}", *BEST_PATH);
    println!(
        "{:<22} {:>9} {:>11} {:>8} {:>13} {:>14}",
        "matrix", "MB", "n=1 us", "GB/s", "n=64 GMAC/s", "n=300 GMAC/s"
    );
    let mut acts = QActs::default();
    for (name, dtype, rows, cols) in shapes {
        let w = QMatrix::from_ggml(dtype, &random_ggml(dtype, rows, cols), rows, cols)
            .expect("from_ggml");
        let budget = Duration::from_millis(if rows > 100_000 { 3000 } else { 700 });
        let mut results = Vec::new();
        for n in [1usize, 64, 300] {
            acts.quantize(&values(n * cols, n as u64), n, cols);
            let mut out = vec![0.0; rows * n];
            let t = best(budget, || matmul(&w, &acts, 0..rows, &mut out));
            results.push(t);
            black_box(&out);
        }
        let macs = |n: usize, t: Duration| (rows * cols * n) as f64 / t.as_secs_f64() / 1e9;
        println!(
            "{:<22} {:>9.2} {:>11.1} {:>8.1} {:>13.1} {:>14.1}",
            name,
            w.bytes() as f64 / 1e6,
            results[0].as_secs_f64() * 1e6,
            w.bytes() as f64 / results[0].as_secs_f64() / 1e9,
            macs(64, results[1]),
            macs(300, results[2]),
        );
    }
}
