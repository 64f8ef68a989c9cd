//! Whisper's mel filterbank, computed the way librosa's `filters.mel(sr, n_fft, n_mels)` does by default:
//! Slaney's mel scale (linear below 1 kHz, logarithmic above) and Slaney area normalisation. OpenAI ships the
//! same matrix (`mel_filters.npz`); whisper.cpp reads it from the model file.

/// Sample rate Whisper expects.
pub const SAMPLE_RATE: f64 = 16_000.0;
/// FFT window of Whisper's STFT.
pub const N_FFT: usize = 400;
/// Mel bins of Whisper tiny/base/small/medium.
pub const N_MELS: usize = 80;
/// Frequency bins of one FFT frame (`1 + n_fft / 2`).
pub const N_FREQS: usize = N_FFT / 2 + 1;

/// Width of one mel below the break frequency (Slaney: 200/3 Hz).
const F_SP: f64 = 200.0 / 3.0;
/// Where the scale turns logarithmic, in Hz.
const MIN_LOG_HZ: f64 = 1000.0;
/// Log step above the break: ln(6.4) / 27.
fn log_step() -> f64 {
    6.4f64.ln() / 27.0
}

/// Hz to Slaney mels.
pub fn hz_to_mel(hz: f64) -> f64 {
    let min_log_mel = MIN_LOG_HZ / F_SP;
    if hz >= MIN_LOG_HZ {
        min_log_mel + (hz / MIN_LOG_HZ).ln() / log_step()
    } else {
        hz / F_SP
    }
}

/// Slaney mels to Hz.
pub fn mel_to_hz(mel: f64) -> f64 {
    let min_log_mel = MIN_LOG_HZ / F_SP;
    if mel >= min_log_mel {
        MIN_LOG_HZ * (log_step() * (mel - min_log_mel)).exp()
    } else {
        F_SP * mel
    }
}

/// The `n_mels x (1 + n_fft/2)` filterbank, row-major.
pub fn filterbank(sample_rate: f64, n_fft: usize, n_mels: usize) -> Vec<f32> {
    let n_freqs = n_fft / 2 + 1;
    let fft_freqs: Vec<f64> = (0..n_freqs)
        .map(|i| i as f64 * (sample_rate / 2.0) / (n_freqs - 1) as f64)
        .collect();
    let (lo, hi) = (hz_to_mel(0.0), hz_to_mel(sample_rate / 2.0));
    let mel_f: Vec<f64> = (0..n_mels + 2)
        .map(|i| mel_to_hz(lo + (hi - lo) * i as f64 / (n_mels + 1) as f64))
        .collect();
    let mut weights = vec![0f32; n_mels * n_freqs];
    for m in 0..n_mels {
        let (left, center, right) = (mel_f[m], mel_f[m + 1], mel_f[m + 2]);
        let enorm = 2.0 / (right - left);
        for (k, &f) in fft_freqs.iter().enumerate() {
            let lower = (f - left) / (center - left);
            let upper = (right - f) / (right - center);
            let w = lower.min(upper).max(0.0);
            weights[m * n_freqs + k] = (w * enorm) as f32;
        }
    }
    weights
}

/// Whisper's filterbank: 16 kHz, n_fft 400, 80 mels.
pub fn whisper_filters() -> Vec<f32> {
    filterbank(SAMPLE_RATE, N_FFT, N_MELS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_round_trips_and_breaks_at_1khz() {
        assert!((hz_to_mel(1000.0) - 15.0).abs() < 1e-12);
        for hz in [0.0, 440.0, 1000.0, 3000.0, 8000.0] {
            assert!((mel_to_hz(hz_to_mel(hz)) - hz).abs() < 1e-9);
        }
    }

    #[test]
    fn matches_librosa_values() {
        let f = whisper_filters();
        assert_eq!(f.len(), N_MELS * N_FREQS);
        // librosa.filters.mel(sr=16000, n_fft=400, n_mels=80): a few reference entries.
        let at = |m: usize, k: usize| f[m * N_FREQS + k];
        assert!((at(0, 1) - 0.024_862_594).abs() < 1e-8, "{}", at(0, 1));
        assert!((at(1, 2) - 0.022_871_772).abs() < 1e-8, "{}", at(1, 2));
        assert!(
            (at(79, 199) - 0.000_448_759).abs() < 1e-8,
            "{}",
            at(79, 199)
        );
        assert_eq!(at(0, 0), 0.0);
        // Every filter has some weight, none is negative.
        for m in 0..N_MELS {
            let row = &f[m * N_FREQS..(m + 1) * N_FREQS];
            assert!(row.iter().all(|&w| w >= 0.0));
            assert!(row.iter().any(|&w| w > 0.0), "mel {m} is empty");
        }
    }
}
