use std::collections::HashSet;

use super::*;
use crate::index::synthetic::{ClusterSpec, ClusteredVectors};
use crate::types::Category;

const DIMS: usize = 384;
const MODEL: &str = "all-MiniLM-L6-v2";

fn meta(tenant: &str, file: &str, n: usize, category: Category, created_at: i64) -> ChunkMeta {
    ChunkMeta {
        chunk_id: format!("{tenant}/{file}#{n}"),
        file_id: file.to_owned(),
        tenant: tenant.to_owned(),
        category,
        created_at,
    }
}

/// `n` chunks of tenant t1 spread over files f0..f9, plus their vectors.
fn data(n: usize, seed: u64) -> (Vec<ChunkMeta>, Vec<Vec<f32>>) {
    let mut g = ClusteredVectors::new(ClusterSpec::embedding_like(DIMS), seed);
    let metas = (0..n)
        .map(|i| {
            let category = if i % 2 == 0 {
                Category::Pdf
            } else {
                Category::Text
            };
            meta("t1", &format!("f{}", i % 10), i, category, i as i64)
        })
        .collect();
    (metas, g.take(n))
}

fn add_all(index: &VectorIndex, metas: &[ChunkMeta], vectors: &[Vec<f32>]) {
    let entries: Vec<VectorEntry<'_>> = metas
        .iter()
        .zip(vectors)
        .map(|(meta, v)| VectorEntry { meta, vector: v })
        .collect();
    index.add(&entries).expect("add");
}

#[test]
fn add_search_remove() {
    let index = VectorIndex::in_memory(DIMS, MODEL).expect("index");
    let (metas, vectors) = data(50, 1);
    add_all(&index, &metas, &vectors);
    assert_eq!(index.len(), 50);
    let t1 = SearchFilter::tenant("t1");
    let hits = index.search(&vectors[7], 3, &t1).expect("search");
    assert_eq!(hits[0].chunk_id, metas[7].chunk_id);
    assert!(
        (hits[0].similarity - 1.0).abs() < 1e-4,
        "{}",
        hits[0].similarity
    );
    assert!(hits.windows(2).all(|w| w[0].similarity >= w[1].similarity));

    assert!(index.remove_chunk(&metas[7].chunk_id).expect("remove"));
    assert!(
        !index
            .remove_chunk(&metas[7].chunk_id)
            .expect("remove again")
    );
    let hits = index.search(&vectors[7], 3, &t1).expect("search");
    assert!(hits.iter().all(|h| h.chunk_id != metas[7].chunk_id));
    assert_eq!(index.remove_file("t1", "f3").expect("remove file"), 5);
    assert_eq!(index.len(), 44);
    assert!(index.chunk_ids().iter().all(|id| !id.contains("/f3#")));
}

#[test]
fn readding_a_chunk_replaces_its_vector() {
    let index = VectorIndex::in_memory(DIMS, MODEL).expect("index");
    let (metas, vectors) = data(20, 2);
    add_all(&index, &metas, &vectors);
    add_all(&index, &metas[..1], &vectors[5..6]);
    assert_eq!(index.len(), 20);
    // Repeated within one batch: one vector, the last one.
    let twice = [metas[1].clone(), metas[1].clone()];
    add_all(&index, &twice, &vectors[8..10]);
    assert_eq!(index.len(), 20);
    // vectors[9] is also chunk 9's vector: both match exactly.
    let hits = index
        .search(&vectors[9], 2, &SearchFilter::tenant("t1"))
        .expect("search");
    assert!(
        hits.iter().all(|h| (h.similarity - 1.0).abs() < 1e-4),
        "{hits:?}"
    );
    assert!(
        hits.iter().any(|h| h.chunk_id == metas[1].chunk_id),
        "{hits:?}"
    );
    let hits = index
        .search(&vectors[5], 2, &SearchFilter::tenant("t1"))
        .expect("search");
    let top: HashSet<&str> = hits.iter().map(|h| h.chunk_id.as_str()).collect();
    assert!(top.contains(metas[0].chunk_id.as_str()) && top.contains(metas[5].chunk_id.as_str()));
}

#[test]
fn rejects_bad_vectors_and_missing_tenant() {
    let index = VectorIndex::in_memory(DIMS, MODEL).expect("index");
    let m = meta("t1", "f", 0, Category::Pdf, 0);
    let short = vec![1.0; DIMS - 1];
    let err = index.add(&[VectorEntry {
        meta: &m,
        vector: &short,
    }]);
    assert!(matches!(
        err,
        Err(VectorError::Dimensions {
            expected: DIMS,
            got: 383
        })
    ));
    let zero = vec![0.0; DIMS];
    assert!(matches!(
        index.add(&[VectorEntry {
            meta: &m,
            vector: &zero
        }]),
        Err(VectorError::NotNormalisable)
    ));
    assert!(index.is_empty());
    assert!(matches!(
        index.search(&vec![1.0; DIMS], 1, &SearchFilter::tenant("")),
        Err(VectorError::MissingTenant)
    ));
}

#[test]
fn save_load_round_trip_and_model_check() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("vectors.dpv");
    let (metas, vectors) = data(300, 3);
    {
        let index = VectorIndex::open(&path, DIMS, MODEL).expect("create");
        add_all(&index, &metas, &vectors);
        index.remove_chunk(&metas[0].chunk_id).expect("remove");
        index.save().expect("save");
    }
    let index = VectorIndex::open(&path, DIMS, MODEL).expect("reopen");
    assert_eq!(index.len(), 299);
    assert!(!index.chunk_ids().contains(&metas[0].chunk_id));
    let hits = index
        .search(&vectors[42], 1, &SearchFilter::tenant("t1"))
        .expect("search");
    assert_eq!(hits[0].chunk_id, metas[42].chunk_id);
    // New keys continue after the saved ones, so adds after a reload do not collide.
    let extra = meta("t1", "new", 0, Category::Text, 0);
    index
        .add(&[VectorEntry {
            meta: &extra,
            vector: &vectors[0],
        }])
        .expect("add after load");
    assert_eq!(index.len(), 300);

    let err = VectorIndex::open(&path, DIMS, "other-model")
        .err()
        .expect("model refused");
    assert!(matches!(err, VectorError::ModelMismatch { .. }));
    assert!(err.to_string().contains("other-model"), "{err}");
    let err = VectorIndex::open(&path, 768, MODEL)
        .err()
        .expect("dims refused");
    assert!(matches!(
        err,
        VectorError::ModelMismatch {
            found_dims: DIMS,
            ..
        }
    ));

    std::fs::write(&path, b"garbage").expect("corrupt");
    assert!(matches!(
        VectorIndex::open(&path, DIMS, MODEL),
        Err(VectorError::File { .. })
    ));
}

#[test]
fn filters_apply_on_exact_and_hnsw_paths() {
    let index = VectorIndex::in_memory(DIMS, MODEL).expect("index");
    let n = EXACT_SEARCH_MAX * 3;
    let (metas, vectors) = data(n, 4);
    add_all(&index, &metas, &vectors);
    let other = meta("t2", "f0", 0, Category::Pdf, 0);
    index
        .add(&[VectorEntry {
            meta: &other,
            vector: &vectors[0],
        }])
        .expect("add other tenant");
    let check = |filter: &SearchFilter| {
        let hits = index.search(&vectors[0], 10, filter).expect("search");
        assert_eq!(hits.len(), 10, "{filter:?}");
        for h in &hits {
            let m = index.meta(h.key).expect("meta");
            assert!(filter.matches(&m), "{m:?} violates {filter:?}");
        }
        hits
    };
    let t1 = SearchFilter::tenant("t1");
    // Tenant only: above the threshold, so the HNSW path.
    let hits = check(&t1);
    assert_eq!(hits[0].chunk_id, metas[0].chunk_id);
    // Half of the vectors: HNSW with a predicate.
    check(&t1.clone().with_categories([Category::Pdf]));
    // One file (a tenth, below the threshold): exact over candidates.
    check(&t1.clone().with_file_ids(["f3"]));
    // A narrow time range.
    let at = |s| chrono::DateTime::from_timestamp(s, 0).expect("timestamp");
    let hits = index
        .search(
            &vectors[0],
            10,
            &t1.clone().with_created(Some(at(100)), Some(at(105))),
        )
        .expect("search");
    assert_eq!(hits.len(), 5);
    // Low-level key filter.
    let keys = index
        .search_keys(&vectors[0], 10, |k| k % 7 == 0)
        .expect("keys");
    assert_eq!(keys.len(), 10);
    assert!(keys.iter().all(|(k, _)| k % 7 == 0));
}

/// HNSW agrees with exact search on clustered data: recall@10 >= 0.95.
#[test]
fn hnsw_recall_on_clustered_vectors() {
    const N: usize = 5_000;
    const QUERIES: usize = 200;
    const K: usize = 10;
    let index = VectorIndex::in_memory(DIMS, MODEL).expect("index");
    let (metas, vectors) = data(N, 5);
    add_all(&index, &metas, &vectors);
    let mut g = ClusteredVectors::new(ClusterSpec::embedding_like(DIMS), 5);
    // Same centers and subspace as the data (same seed), fresh points as queries.
    let _ = g.take(N);
    let queries = g.take(QUERIES);
    let mut found = 0;
    for q in &queries {
        let exact: HashSet<u64> = index
            .exact_search(q, K, |_| true)
            .expect("exact")
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        let approx = index.approx_search(q, K).expect("approx");
        found += approx.iter().filter(|(k, _)| exact.contains(k)).count();
    }
    let recall = found as f64 / (QUERIES * K) as f64;
    assert!(recall >= 0.95, "recall@10 {recall}");
}

/// HNSW is approximate (and graph building is multi-threaded, so not deterministic): it
/// must never beat exact search, and must agree with it on the top hit almost always.
#[test]
fn exact_and_hnsw_agree_on_the_top_hit() {
    let index = VectorIndex::in_memory(DIMS, MODEL).expect("index");
    let (metas, vectors) = data(1_000, 6);
    add_all(&index, &metas, &vectors);
    let queries: Vec<&Vec<f32>> = vectors.iter().step_by(10).collect();
    let mut agree = 0;
    for q in &queries {
        let exact = index.exact_search(q, 1, |_| true).expect("exact");
        let approx = index.approx_search(q, 1).expect("approx");
        assert!(approx[0].1 <= exact[0].1 + 1e-4, "HNSW beat exact search");
        if exact[0].0 == approx[0].0 {
            assert!((exact[0].1 - approx[0].1).abs() < 1e-4);
            agree += 1;
        }
    }
    assert!(
        agree * 100 >= queries.len() * 95,
        "{agree}/{}",
        queries.len()
    );
}

#[test]
fn tenant_and_file_postings_follow_adds_and_removes() {
    let index = VectorIndex::in_memory(DIMS, MODEL).expect("index");
    let (metas, vectors) = data(40, 3);
    add_all(&index, &metas, &vectors);
    // The same file id under another tenant must stay apart.
    let other = meta("t2", "f3", 0, Category::Pdf, 0);
    index
        .add(&[VectorEntry {
            meta: &other,
            vector: &vectors[3],
        }])
        .expect("add other tenant");
    let postings = |tenant: &str, file: &str| {
        let inner = index.read();
        (
            inner.by_tenant.get(tenant).map_or(0, HashSet::len),
            inner.by_file.get(file).map_or(0, HashSet::len),
        )
    };
    assert_eq!(postings("t1", "f3"), (40, 5));
    assert_eq!(postings("t2", "f3"), (1, 5));
    // Duplicate file ids in a filter count once, and the other tenant's chunk of f3 never comes back.
    let f3 = SearchFilter::tenant("t1").with_file_ids(["f3", "f3"]);
    let hits = index.search(&vectors[3], 10, &f3).expect("search");
    assert_eq!(hits.len(), 4, "f3 of t1 has 4 chunks: {hits:?}");
    assert!(
        hits.iter()
            .all(|h| h.file_id == "f3" && h.chunk_id.starts_with("t1/"))
    );

    assert_eq!(index.remove_file("t1", "f3").expect("remove"), 4);
    assert_eq!(postings("t1", "f3"), (36, 1));
    assert!(index.remove_chunk(&other.chunk_id).expect("remove chunk"));
    let inner = index.read();
    assert!(
        !inner.by_tenant.contains_key("t2"),
        "an emptied tenant is dropped"
    );
    assert!(
        !inner.by_file.contains_key("f3"),
        "an emptied file is dropped"
    );
}
