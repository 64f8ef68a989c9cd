//! Deterministic synthetic data for tests and benchmarks: clustered unit vectors that resemble
//! sentence embeddings, and Zipf-distributed text.
//!
//! Uniform random vectors are a pathological case for any ANN index (every point is almost
//! equidistant from every other); real embeddings sit near a low-dimensional structure of
//! topics. So each vector here is a topic center, plus a displacement inside a shared
//! low-dimensional subspace, plus a little isotropic noise, then normalised.

/// SplitMix64: small, fast, deterministic; enough for test data (not for anything secret).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        // The top 53 bits fill a double's mantissa exactly.
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.uniform() * n as f64) as usize % n.max(1)
    }

    /// Standard normal (Box-Muller).
    pub fn gaussian(&mut self) -> f32 {
        let u1 = self.uniform().max(f64::MIN_POSITIVE);
        let u2 = self.uniform();
        ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
    }
}

/// The shape of a clustered vector collection.
#[derive(Debug, Clone, Copy)]
pub struct ClusterSpec {
    /// Vector dimensions.
    pub dims: usize,
    /// Number of topic centers.
    pub clusters: usize,
    /// Dimensions of the shared subspace points spread in.
    pub intrinsic_dims: usize,
    /// Length of the in-subspace displacement relative to the (unit) center.
    pub spread: f32,
    /// Length of the isotropic noise relative to the center.
    pub noise: f32,
}

impl ClusterSpec {
    /// 384-d, a few hundred topics: within-topic cosine about 0.6-0.8, like MiniLM
    /// embeddings of passages about the same subject.
    pub fn embedding_like(dims: usize) -> ClusterSpec {
        ClusterSpec {
            dims,
            clusters: 300,
            intrinsic_dims: 24,
            spread: 0.7,
            noise: 0.25,
        }
    }
}

/// A generator of clustered unit vectors; points and queries drawn from one instance share
/// its centers and subspace.
pub struct ClusteredVectors {
    spec: ClusterSpec,
    centers: Vec<Vec<f32>>,
    basis: Vec<Vec<f32>>,
    rng: Rng,
}

fn random_unit(rng: &mut Rng, dims: usize) -> Vec<f32> {
    let mut v: Vec<f32> = (0..dims).map(|_| rng.gaussian()).collect();
    normalise(&mut v);
    v
}

fn normalise(v: &mut [f32]) {
    let norm = v
        .iter()
        .map(|x| x * x)
        .sum::<f32>()
        .sqrt()
        .max(f32::MIN_POSITIVE);
    v.iter_mut().for_each(|x| *x /= norm);
}

impl ClusteredVectors {
    /// Draws centers and the shared subspace from `seed`.
    pub fn new(spec: ClusterSpec, seed: u64) -> ClusteredVectors {
        let mut rng = Rng::new(seed);
        let centers = (0..spec.clusters)
            .map(|_| random_unit(&mut rng, spec.dims))
            .collect();
        let basis = (0..spec.intrinsic_dims)
            .map(|_| random_unit(&mut rng, spec.dims))
            .collect();
        ClusteredVectors {
            spec,
            centers,
            basis,
            rng,
        }
    }

    /// The next unit vector.
    pub fn sample(&mut self) -> Vec<f32> {
        let s = self.spec;
        let center = &self.centers[self.rng.below(s.clusters)];
        let mut v = center.clone();
        let sub_scale = s.spread / (s.intrinsic_dims as f32).sqrt();
        for b in &self.basis {
            let z = self.rng.gaussian() * sub_scale;
            v.iter_mut().zip(b).for_each(|(x, bi)| *x += z * bi);
        }
        let iso_scale = s.noise / (s.dims as f32).sqrt();
        for x in &mut v {
            *x += self.rng.gaussian() * iso_scale;
        }
        normalise(&mut v);
        v
    }

    /// `n` vectors.
    pub fn take(&mut self, n: usize) -> Vec<Vec<f32>> {
        (0..n).map(|_| self.sample()).collect()
    }
}

/// A vocabulary of pronounceable made-up words, sampled with a Zipf distribution
/// (frequency of the r-th word proportional to 1/r), like natural language.
pub struct ZipfText {
    words: Vec<String>,
    cumulative: Vec<f64>,
    rng: Rng,
}

const SYLLABLES: [&str; 24] = [
    "ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "be", "da", "fu", "go", "ha", "ji", "ko", "la",
    "ma", "no", "pe", "qi", "re", "su", "ta", "ze",
];

impl ZipfText {
    /// A vocabulary of `vocabulary` words.
    pub fn new(vocabulary: usize, seed: u64) -> ZipfText {
        let mut rng = Rng::new(seed);
        let words = (0..vocabulary)
            .map(|i| {
                let n = 2 + rng.below(3);
                let mut w: String = (0..n)
                    .map(|_| SYLLABLES[rng.below(SYLLABLES.len())])
                    .collect();
                w.push_str(&i.to_string());
                w
            })
            .collect();
        let mut total = 0.0;
        let cumulative = (1..=vocabulary)
            .map(|r| {
                total += 1.0 / r as f64;
                total
            })
            .collect();
        ZipfText {
            words,
            cumulative,
            rng,
        }
    }

    /// One word.
    pub fn word(&mut self) -> &str {
        let total = self.cumulative.last().copied().unwrap_or(1.0);
        let x = self.rng.uniform() * total;
        let i = self.cumulative.partition_point(|c| *c < x);
        &self.words[i.min(self.words.len() - 1)]
    }

    /// `n` words separated by spaces.
    pub fn text(&mut self, n: usize) -> String {
        let mut out = String::new();
        for i in 0..n {
            if i > 0 {
                out.push(' ');
            }
            let w = self.word().to_owned();
            out.push_str(&w);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clustered_vectors_are_unit_and_clustered() {
        let spec = ClusterSpec {
            clusters: 5,
            ..ClusterSpec::embedding_like(64)
        };
        let mut g = ClusteredVectors::new(spec, 7);
        let vs = g.take(200);
        for v in &vs {
            let n: f32 = v.iter().map(|x| x * x).sum();
            assert!((n - 1.0).abs() < 1e-4);
        }
        // Each point's best neighbour is much closer than a random pair.
        let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
        let best: f32 = (1..vs.len())
            .map(|j| dot(&vs[0], &vs[j]))
            .fold(-1.0, f32::max);
        assert!(best > 0.4, "best neighbour cosine {best}");
    }
}
