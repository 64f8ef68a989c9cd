use proptest::prelude::*;

use super::*;

fn list(items: &[(&str, f32)]) -> Vec<(String, f32)> {
    items.iter().map(|(id, s)| ((*id).to_owned(), *s)).collect()
}

fn order(hits: &[FusedHit]) -> Vec<&str> {
    hits.iter().map(|h| h.chunk_id.as_str()).collect()
}

fn close(a: f32, b: f32) -> bool {
    (a - b).abs() < 1e-5
}

#[test]
fn normalized_default_leans_dense() {
    let bm25 = list(&[("a", 12.0), ("b", 6.0), ("c", 2.0)]);
    let vector = list(&[("c", 0.9), ("b", 0.8), ("d", 0.5)]);
    let hits = fuse(&bm25, &vector, &FusionConfig::default());
    // min-max: bm25 a=1 b=0.4 c=0; vector c=1 b=0.75 d=0.
    // fused: a=0.3, b=0.7*0.75+0.3*0.4=0.645, c=0.7, d=0.
    assert_eq!(order(&hits), ["c", "b", "a", "d"]);
    let c = &hits[0];
    assert_eq!((c.bm25, c.vector), (Some(2.0), Some(0.9)));
    assert!(close(c.fused, 0.7));
    assert!(close(hits[1].fused, 0.645));
    assert_eq!(hits[3].bm25, None);
}

#[test]
fn alpha_extremes_reproduce_single_lists() {
    let bm25 = list(&[("a", 3.0), ("b", 2.0), ("c", 1.0)]);
    let vector = list(&[("c", 0.9), ("b", 0.5), ("a", 0.1)]);
    let only = |alpha| {
        let cfg = FusionConfig {
            alpha,
            ..FusionConfig::default()
        };
        fuse(&bm25, &vector, &cfg)
    };
    assert_eq!(order(&only(0.0)), ["a", "b", "c"]);
    assert_eq!(order(&only(1.0)), ["c", "b", "a"]);
}

#[test]
fn rrf_weights_ranks() {
    let bm25 = list(&[("a", 10.0), ("b", 9.0)]);
    let vector = list(&[("b", 0.9), ("c", 0.8)]);
    let cfg = FusionConfig {
        method: FusionMethod::Rrf,
        rrf_k: 60.0,
        rrf_bm25_weight: 1.0,
        rrf_vector_weight: 1.0,
        ..FusionConfig::default()
    };
    let hits = fuse(&bm25, &vector, &cfg);
    assert_eq!(order(&hits), ["b", "a", "c"]);
    assert!(close(hits[0].fused, 1.0 / 62.0 + 1.0 / 61.0));
    assert!(close(hits[1].fused, 1.0 / 61.0));
    // a (bm25 rank 1) and c (vector rank 2): with a heavier vector weight c wins.
    let dense = FusionConfig {
        rrf_bm25_weight: 0.3,
        rrf_vector_weight: 0.7,
        ..cfg
    };
    let hits = fuse(&bm25, &vector, &dense);
    assert_eq!(order(&hits), ["b", "c", "a"]);
}

#[test]
fn z_score_normalisation() {
    let bm25 = list(&[("a", 3.0), ("b", 1.0)]);
    let vector = list(&[("b", 0.75), ("a", 0.25)]);
    let cfg = FusionConfig {
        norm: ScoreNorm::ZScore,
        alpha: 0.5,
        ..FusionConfig::default()
    };
    let hits = fuse(&bm25, &vector, &cfg);
    // Both lists are symmetric: a=(+1,-1), b=(-1,+1) -> tie at 0, broken by id.
    assert_eq!(order(&hits), ["a", "b"]);
    assert!(close(hits[0].fused, 0.0) && close(hits[1].fused, 0.0));
}

#[test]
fn empty_and_one_sided_inputs() {
    let cfg = FusionConfig::default();
    assert!(fuse(&[], &[], &cfg).is_empty());
    let only_text = fuse(&list(&[("a", 2.0), ("b", 1.0)]), &[], &cfg);
    assert_eq!(order(&only_text), ["a", "b"]);
    assert!(only_text.iter().all(|h| h.vector.is_none()));
    let only_vec = fuse(&[], &list(&[("x", 0.3)]), &cfg);
    assert_eq!(order(&only_vec), ["x"]);
    // One hit alone normalises to 1, not 0.
    assert!(close(only_vec[0].fused, cfg.alpha));
}

#[test]
fn ties_are_deterministic_and_duplicates_keep_first() {
    let bm25 = list(&[("b", 1.0), ("a", 1.0), ("b", 0.1)]);
    let hits = fuse(&bm25, &[], &FusionConfig::default());
    assert_eq!(order(&hits), ["a", "b"]);
    assert_eq!(hits[1].bm25, Some(1.0));
    let nan = list(&[("n", f32::NAN), ("m", 0.5)]);
    assert_eq!(order(&fuse(&[], &nan, &FusionConfig::default())), ["m"]);
}

fn arb_list() -> impl Strategy<Value = Vec<(String, f32)>> {
    prop::collection::vec(("[a-h]", -10.0f32..10.0), 0..8)
}

fn arb_config() -> impl Strategy<Value = FusionConfig> {
    (any::<bool>(), any::<bool>(), 0.0f32..=1.0, 1.0f32..100.0).prop_map(|(rrf, z, alpha, k)| {
        FusionConfig {
            method: if rrf {
                FusionMethod::Rrf
            } else {
                FusionMethod::Normalized
            },
            norm: if z {
                ScoreNorm::ZScore
            } else {
                ScoreNorm::MinMax
            },
            alpha,
            rrf_k: k,
            ..FusionConfig::default()
        }
    })
}

proptest! {
    #[test]
    fn fused_is_sorted_union_with_component_scores(
        bm25 in arb_list(), vector in arb_list(), cfg in arb_config()
    ) {
        let hits = fuse(&bm25, &vector, &cfg);
        let mut ids: Vec<&str> = bm25.iter().chain(&vector).map(|(id, _)| id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut got: Vec<&str> = order(&hits);
        got.sort_unstable();
        prop_assert_eq!(got, ids);
        for w in hits.windows(2) {
            prop_assert!(w[0].fused >= w[1].fused);
        }
        for h in &hits {
            prop_assert!(h.fused.is_finite());
            prop_assert_eq!(h.bm25.is_some(), bm25.iter().any(|(id, _)| *id == h.chunk_id));
            prop_assert_eq!(h.vector.is_some(), vector.iter().any(|(id, _)| *id == h.chunk_id));
        }
    }
}
