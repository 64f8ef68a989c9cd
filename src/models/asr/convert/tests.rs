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

/// The parsed `model.bin` and `vocabulary.txt` of the real model, or `None` (with a note) without them.
fn real_model() -> Option<(Ct2Model, String)> {
    let dir = ct2_dir()?;
    let model =
        Ct2Model::parse(&std::fs::read(dir.join("model.bin")).expect("read")).expect("parse");
    let vocab = std::fs::read_to_string(dir.join("vocabulary.txt")).expect("read vocabulary");
    Some((model, vocab))
}

#[test]
fn tiny_en_converts_with_whisper_cpp_names_shapes_and_header() {
    let Some((model, vocab)) = real_model() else {
        return;
    };
    let g = convert(&model, &vocab, Encoding::F16).expect("convert");
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
    assert_eq!(
        (q.dims.clone(), q.encoding),
        (vec![384, 384], Encoding::F16)
    );
    assert_eq!(find("encoder.conv1.bias").dims, vec![384, 1]);
    assert_eq!(find("encoder.conv1.bias").encoding, Encoding::F32);
    assert_eq!(find("encoder.conv1.weight").dims, vec![384, 80, 3]);
    assert_eq!(
        find("decoder.blocks.3.cross_attn.value.bias").dims,
        vec![384]
    );
    assert_eq!(
        find("decoder.token_embedding.weight").dims,
        vec![51_864, 384]
    );
    assert_eq!(find("encoder.positional_embedding").encoding, Encoding::F32);
    assert!(!g.tensors.iter().any(|t| t.name.contains("key.bias")));
    for t in &g.tensors {
        let elems: usize = t.dims.iter().product();
        assert_eq!(t.data.len(), t.encoding.bytes(elems), "{}", t.name);
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
fn q8_0_writes_weight_matrices_only_and_keeps_their_values() {
    let Some((model, vocab)) = real_model() else {
        return;
    };
    let f16 = convert(&model, &vocab, Encoding::F16).expect("convert f16");
    let q8 = convert(&model, &vocab, Encoding::Q8_0).expect("convert q8_0");
    // "mostly Q8_0" (7) with ggml's quantization version 2, as its quantizer writes it.
    assert_eq!(q8.hparams.ftype, 2007);
    for (a, b) in f16.tensors.iter().zip(&q8.tensors) {
        assert_eq!((&a.name, &a.dims), (&b.name, &b.dims));
        let expected = match a.encoding {
            Encoding::F16 if a.name.contains(".conv") => Encoding::F16,
            Encoding::F16 => Encoding::Q8_0,
            other => other,
        };
        assert_eq!(b.encoding, expected, "{}", b.name);
    }
    // Dequantised, the query weights stay within half a quantization step of the f16 values, plus the f16
    // rounding of the scale (at most 127 steps times 2^-11 relative).
    let pick = |g: &GgmlWhisper| {
        g.tensors
            .iter()
            .find(|t| t.name == "decoder.blocks.0.attn.query.weight")
            .expect("query")
            .data
            .clone()
    };
    let exact: Vec<f32> = pick(&f16)
        .chunks_exact(2)
        .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())
        .collect();
    let quantized = pick(&q8);
    for (block, values) in quantized.chunks_exact(34).zip(exact.chunks_exact(32)) {
        let d = f16::from_le_bytes([block[0], block[1]]).to_f32();
        for (&q, &x) in block[2..].iter().zip(values) {
            let restored = f32::from(q as i8) * d;
            assert!((restored - x).abs() <= d * 0.57 + 1e-6, "{restored} vs {x}");
        }
    }
}

#[test]
fn q8_0_blocks_match_ggml_layout() {
    let mut values = vec![0.0f32; 64];
    values[0] = 1.27;
    values[1] = -0.5;
    let bytes = quantize_q8_0(&values);
    assert_eq!(bytes.len(), 68);
    assert!((f16::from_le_bytes([bytes[0], bytes[1]]).to_f32() - 0.01).abs() < 1e-5);
    assert_eq!(bytes[2] as i8, 127);
    assert_eq!(bytes[3] as i8, -50);
    // An all-zero block has scale 0 and zero quants.
    assert!(bytes[34..].iter().all(|&b| b == 0));
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
