//! The tiny random Llama of the bit-exactness suite (`bench bitexact`, case
//! model "tiny"), written as a Hugging Face folder (config.json,
//! model.safetensors, tokenizer.json): for tests, the bit-exactness suite and
//! benchmarks, where a model must exist without any download.

use std::collections::BTreeMap;
use std::path::Path;

pub const VOCAB: usize = 64;
pub const HIDDEN: usize = 64;
pub const INTER: usize = 128;
pub const LAYERS: usize = 2;
pub const HEADS: usize = 4;
pub const KV_HEADS: usize = 2;
pub const HEAD_DIM: usize = 16;
pub const MAX_POS: usize = 256;
pub const EPS: f64 = 1e-5;
pub const THETA: f64 = 10000.0;

#[derive(Clone, Copy, PartialEq)]
pub enum Dtype {
    F32,
    F16,
    BF16,
}

/// Every tensor's shape and values as stored (after rounding to the dtype).
pub type Weights = BTreeMap<String, (Vec<usize>, Vec<f64>)>;

pub(crate) struct Lcg(pub(crate) u64);
impl Lcg {
    pub(crate) fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

pub fn words() -> Vec<String> {
    let mut w: Vec<String> = ["[UNK]", "<s>", "</s>"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for i in 0..VOCAB - 3 {
        w.push(format!("w{i}"));
    }
    w
}

/// Write the tiny model into `dir`. Norm weights are near 1, matrices small
/// and random; everything is a function of `seed`.
pub fn write_tiny_model(dir: &Path, dtype: Dtype, seed: u64) -> std::io::Result<Weights> {
    let mut rng = Lcg(seed);
    let mut weights = BTreeMap::new();
    let kv = KV_HEADS * HEAD_DIM;
    let mut add = |name: String, shape: Vec<usize>, norm: bool, rng: &mut Lcg| {
        let n: usize = shape.iter().product();
        let scale = 1.0 / (shape[shape.len() - 1] as f64).sqrt();
        let vals: Vec<f64> = (0..n)
            .map(|_| {
                let u = rng.next() * 2.0 - 1.0;
                let v = if norm { 1.0 + 0.2 * u } else { 2.0 * u * scale };
                round(v, dtype)
            })
            .collect();
        weights.insert(name, (shape, vals));
    };
    add(
        "model.embed_tokens.weight".into(),
        vec![VOCAB, HIDDEN],
        false,
        &mut rng,
    );
    for l in 0..LAYERS {
        let p = |s: &str| format!("model.layers.{l}.{s}.weight");
        add(p("input_layernorm"), vec![HIDDEN], true, &mut rng);
        add(
            p("self_attn.q_proj"),
            vec![HEADS * HEAD_DIM, HIDDEN],
            false,
            &mut rng,
        );
        add(p("self_attn.k_proj"), vec![kv, HIDDEN], false, &mut rng);
        add(p("self_attn.v_proj"), vec![kv, HIDDEN], false, &mut rng);
        add(
            p("self_attn.o_proj"),
            vec![HIDDEN, HEADS * HEAD_DIM],
            false,
            &mut rng,
        );
        add(p("post_attention_layernorm"), vec![HIDDEN], true, &mut rng);
        add(p("mlp.gate_proj"), vec![INTER, HIDDEN], false, &mut rng);
        add(p("mlp.up_proj"), vec![INTER, HIDDEN], false, &mut rng);
        add(p("mlp.down_proj"), vec![HIDDEN, INTER], false, &mut rng);
    }
    add("model.norm.weight".into(), vec![HIDDEN], true, &mut rng);
    add(
        "lm_head.weight".into(),
        vec![VOCAB, HIDDEN],
        false,
        &mut rng,
    );

    std::fs::create_dir_all(dir)?;
    write_safetensors(&dir.join("model.safetensors"), &weights, dtype)?;
    std::fs::write(dir.join("config.json"), config_json().to_string())?;
    write_tokenizer(&dir.join("tokenizer.json"))?;
    Ok(weights)
}

pub fn config_json() -> serde_json::Value {
    serde_json::json!({
        "architectures": ["LlamaForCausalLM"],
        "vocab_size": VOCAB,
        "hidden_size": HIDDEN,
        "intermediate_size": INTER,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS,
        "rms_norm_eps": EPS,
        "rope_theta": THETA,
        "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                         "high_freq_factor": 4.0, "original_max_position_embeddings": 64},
        "max_position_embeddings": MAX_POS,
        "tie_word_embeddings": false,
        "bos_token_id": 1,
        "eos_token_id": 2
    })
}

fn round(v: f64, d: Dtype) -> f64 {
    match d {
        Dtype::F32 => v as f32 as f64,
        Dtype::F16 => half::f16::from_f64(v).to_f64(),
        Dtype::BF16 => half::bf16::from_f64(v).to_f64(),
    }
}

pub fn write_safetensors(path: &Path, weights: &Weights, dtype: Dtype) -> std::io::Result<()> {
    let (name, size) = match dtype {
        Dtype::F32 => ("F32", 4),
        Dtype::F16 => ("F16", 2),
        Dtype::BF16 => ("BF16", 2),
    };
    let mut header = serde_json::Map::new();
    let mut data = Vec::new();
    for (k, (shape, vals)) in weights {
        let start = data.len();
        for &v in vals {
            match dtype {
                Dtype::F32 => data.extend_from_slice(&(v as f32).to_le_bytes()),
                Dtype::F16 => data.extend_from_slice(&half::f16::from_f64(v).to_le_bytes()),
                Dtype::BF16 => data.extend_from_slice(&half::bf16::from_f64(v).to_le_bytes()),
            }
        }
        assert_eq!(data.len() - start, vals.len() * size);
        header.insert(
            k.clone(),
            serde_json::json!({"dtype": name, "shape": shape, "data_offsets": [start, data.len()]}),
        );
    }
    let mut h = serde_json::Value::Object(header).to_string().into_bytes();
    while h.len() % 8 != 0 {
        h.push(b' ');
    }
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend(h);
    out.extend(data);
    std::fs::write(path, out)
}

pub(crate) fn write_tokenizer(path: &Path) -> std::io::Result<()> {
    use tokenizers::models::wordlevel::WordLevel;
    use tokenizers::pre_tokenizers::whitespace::WhitespaceSplit;
    let vocab: std::collections::HashMap<String, u32> = words()
        .into_iter()
        .enumerate()
        .map(|(i, w)| (w, i as u32))
        .collect();
    let wl = WordLevel::builder()
        .vocab(vocab.into_iter().collect())
        .unk_token("[UNK]".into())
        .build()
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let mut t = tokenizers::Tokenizer::new(wl);
    t.with_pre_tokenizer(Some(WhitespaceSplit));
    t.save(path, false)
        .map_err(|e| std::io::Error::other(e.to_string()))
}
