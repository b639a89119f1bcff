//! `infer-eval trace`: traces of the same prompt at 1 and 2 threads and at
//! prefill chunks of 512 and 7 are bit-equal, and a model with one weight
//! changed in one layer is localised to that layer, op and position.

mod common;

use infer_eval::bench::tiny_family;
use infer_eval::formats::gguf::GgufFile;
use infer_eval::model::arch::Family;
use std::path::Path;

fn cli(args: &[&str]) -> (i32, String, String) {
    common::outcome(&mut common::ie_in(Path::new("."), args))
}

fn trace(model: &Path, out: &Path, extra: &[&str]) {
    let ids = "5,17,33,8,61,22,40,9,14,50,27,3";
    let (code, _, err) = cli(&[
        &[
            "trace",
            "--model",
            model.to_str().unwrap(),
            "--prompt-ids",
            ids,
            "--out",
            out.to_str().unwrap(),
        ][..],
        extra,
    ]
    .concat());
    assert_eq!(code, 0, "{err}");
}

/// Gemma 3's tiny model: every op kind (Q/K norms, local and global RoPE,
/// windows, post norms, GeGLU) is in the trace.
#[test]
fn traces_are_equal_across_threads_and_chunks() {
    let d = tempfile::tempdir().unwrap();
    let m = d.path().join("g3.gguf");
    tiny_family::write_gguf_model(&m, Family::Gemma3, 1).unwrap();
    let (a, b, c) = (
        d.path().join("a.json"),
        d.path().join("b.json"),
        d.path().join("c.json"),
    );
    trace(&m, &a, &[]);
    trace(&m, &b, &["--threads", "2"]);
    trace(&m, &c, &["--prefill-chunk", "7", "--threads", "2"]);
    for other in [&b, &c] {
        let (code, out, err) = cli(&[
            "trace",
            "--compare",
            a.to_str().unwrap(),
            other.to_str().unwrap(),
        ]);
        assert_eq!(code, 0, "{out}{err}");
        assert!(out.starts_with("SAME"), "{out}");
    }
    let t = infer_eval::trace::read(&a).unwrap();
    let ops: std::collections::BTreeSet<&str> = t.entries.iter().map(|e| e.op.as_str()).collect();
    for op in [
        "inp_embd",
        "Qcur_normed",
        "Kcur_rope",
        "kqv_out",
        "attn_post_norm",
        "ffn_act",
        "ffn_post_norm",
        "l_out",
        "result_output",
    ] {
        assert!(ops.contains(op), "no {op} in the trace: {ops:?}");
    }
    // 6 layers x 12 positions of each per-layer op.
    assert_eq!(t.entries.iter().filter(|e| e.op == "l_out").count(), 6 * 12);
}

/// One value of layer 1's V projection changed: the first difference is
/// that layer's Vcur at position 0, and nothing before it differs.
#[test]
fn a_changed_weight_is_localised_to_its_layer_and_op() {
    let d = tempfile::tempdir().unwrap();
    let m = d.path().join("q3.gguf");
    tiny_family::write_gguf_model(&m, Family::Qwen3, 1).unwrap();
    let mut bytes = std::fs::read(&m).unwrap();
    let g = GgufFile::open(&m).unwrap();
    let t = g.tensor("blk.1.attn_v.weight").unwrap();
    let (start, _) = t.range.unwrap();
    drop(g);
    // The first row's fourth value (F32), nudged.
    let at = start + 3 * 4;
    let v = f32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    bytes[at..at + 4].copy_from_slice(&(v + 0.25).to_le_bytes());
    let m2 = d.path().join("q3-edited.gguf");
    std::fs::write(&m2, &bytes).unwrap();
    let (a, b) = (d.path().join("a.json"), d.path().join("b.json"));
    trace(&m, &a, &["--values"]);
    trace(&m2, &b, &["--values"]);
    let (ta, tb) = (
        infer_eval::trace::read(&a).unwrap(),
        infer_eval::trace::read(&b).unwrap(),
    );
    match infer_eval::trace::compare(&ta, &tb) {
        Some(infer_eval::trace::Difference::At {
            layer,
            op,
            pos,
            max_abs,
            missing,
        }) => {
            assert_eq!(
                (layer, op.as_str(), pos, missing),
                (Some(1), "Vcur", 0, false)
            );
            assert!(max_abs.unwrap() > 0.0);
        }
        other => panic!("expected a difference at layer 1 Vcur, got {other:?}"),
    }
    // And the command line says the same, noting the two model files.
    let (code, out, _) = cli(&[
        "trace",
        "--compare",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
    ]);
    assert_eq!(code, 6);
    assert!(
        out.contains("model files differ") && out.contains("layer 1, op Vcur, position 0"),
        "{out}"
    );
}
