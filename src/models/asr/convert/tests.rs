//! Converter tests over the real tiny.en model (skipped with a note when `make models` has not run).

use std::path::{Path, PathBuf};

use super::*;
use crate::models::asr::CT2_DIR_NAME;

fn ct2_dir() -> Option<PathBuf> {
    let base = std::env::var_os("DOCPIPE_MODELS_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("models"),
        PathBuf::from,
    );
    let dir = base.join(CT2_DIR_NAME);
    if dir.join("model.bin").is_file() {
        Some(dir)
    } else {
        eprintln!(
            "note: skipping converter test, no model in {} (run `make models`)",
            dir.display()
        );
        None
    }
}

#[test]
fn tiny_en_converts_with_whisper_cpp_names_shapes_and_header() {
    let Some(dir) = ct2_dir() else { return };
    let model =
        Ct2Model::parse(&std::fs::read(dir.join("model.bin")).expect("read")).expect("parse");
    let vocab = std::fs::read_to_string(dir.join("vocabulary.txt")).expect("read vocabulary");
    let g = convert(&model, &vocab).expect("convert");
    assert_eq!(
        g.hparams,
        HParams {
            n_vocab: 51_864,
            n_audio_ctx: 1500,
            n_audio_state: 384,
            n_audio_head: 6,
            n_audio_layer: 4,
            n_text_ctx: 448,
            n_text_state: 384,
            n_text_head: 6,
            n_text_layer: 4,
            n_mels: 80,
            ftype: 1,
        }
    );
    // 7 + 15 per encoder layer, 4 + 24 per decoder layer: what whisper.cpp's loader expects for tiny.
    assert_eq!(g.tensors.len(), 7 + 4 * 15 + 4 + 4 * 24);
    let find = |name: &str| {
        g.tensors
            .iter()
            .find(|t| t.name == name)
            .unwrap_or_else(|| panic!("{name} missing"))
    };
    let q = find("encoder.blocks.0.attn.query.weight");
    assert_eq!((q.dims.clone(), q.f32), (vec![384, 384], false));
    assert_eq!(find("encoder.conv1.bias").dims, vec![384, 1]);
    assert!(find("encoder.conv1.bias").f32);
    assert_eq!(find("encoder.conv1.weight").dims, vec![384, 80, 3]);
    assert_eq!(
        find("decoder.blocks.3.cross_attn.value.bias").dims,
        vec![384]
    );
    assert_eq!(
        find("decoder.token_embedding.weight").dims,
        vec![51_864, 384]
    );
    assert!(find("encoder.positional_embedding").f32);
    assert!(!g.tensors.iter().any(|t| t.name.contains("key.bias")));
    for t in &g.tensors {
        let elems: usize = t.dims.iter().product();
        assert_eq!(
            t.data.len(),
            elems * if t.f32 { 4 } else { 2 },
            "{}",
            t.name
        );
    }
    // The fused projection is split in order: the value weights are the last third of CTranslate2's rows.
    let fused = model
        .get("encoder/layer_0/self_attention/linear_0/weight")
        .expect("fused");
    let v = find("encoder.blocks.0.attn.value.weight");
    assert_eq!(v.data[..], fused.data[2 * 384 * 384 * 2..]);
    // Vocabulary: raw bytes, spaces restored from GPT-2's `Ġ`.
    assert_eq!(g.vocab.len(), N_TEXT_TOKENS);
    assert_eq!(g.vocab[0], b"!");
    assert!(g.vocab.iter().any(|t| t == b" the"));

    let mut out = Vec::new();
    g.write(&mut out).expect("write");
    assert_eq!(&out[..4], b"lmgg");
    assert_eq!(
        i32::from_le_bytes(out[4..8].try_into().expect("4 bytes")),
        51_864
    );
    // ~77.7 MB, as the reference whisper.cpp conversion of tiny.en.
    assert!(
        (77_000_000..78_500_000).contains(&out.len()),
        "{}",
        out.len()
    );
}

#[test]
fn vocabulary_maps_gpt2_spelling_back_to_bytes() {
    let mut text = String::new();
    for i in 0..N_TEXT_TOKENS {
        text.push_str(match i {
            0 => "Ġhello",
            1 => "Ċ",
            _ => "a",
        });
        text.push('\n');
    }
    let v = parse_vocabulary(&text).expect("valid");
    assert_eq!(v[0], b" hello");
    assert_eq!(v[1], b"\n");
    assert!(parse_vocabulary("a\nb\n").is_err());
}
