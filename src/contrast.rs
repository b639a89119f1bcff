//! The contrast run: stock Candle (candle-transformers' quantized Llama, with
//! Candle's own matmuls: cuBLAS on CUDA, gemm on the CPU) next to our engine
//! on the same GGUF and prompts. It measures what the deterministic path buys:
//! how far stock logits are from ours on the CPU, and whether stock logits
//! change when the same prompt runs alone or inside a batch.

use crate::error::{Error, Result};
use crate::model::transformer::{Logits, SeqStep, Transformer};
use crate::sampling::argmax;
use candle_core::quantized::gguf_file;
use candle_core::{Device, Tensor};
use candle_transformers::models::quantized_llama::ModelWeights;
use serde::Serialize;
use std::path::Path;

#[derive(Debug, Clone, Serialize)]
pub struct PromptContrast {
    pub prompt: usize,
    pub tokens: usize,
    /// max |stock - ours (CPU)| over the vocabulary, at the last prompt position.
    pub stock_vs_ours_max_abs: f32,
    /// Whether the two agree on the most likely next token.
    pub stock_vs_ours_same_argmax: bool,
    /// Our logit gap between the top two tokens: a disagreement on the
    /// argmax is only excusable where this is small.
    pub ours_top2_gap: f32,
    /// Logits whose bits differ between a whole-prompt prefill and feeding the
    /// prompt one token at a time (stock).
    pub stock_chunk_bits_differ: usize,
    pub stock_chunk_max_abs: f32,
    /// Logits whose bits differ between the prompt alone and in the batch
    /// (stock; both fed one token at a time).
    pub stock_batch_bits_differ: usize,
    pub stock_batch_max_abs: f32,
    /// Logits whose bits differ between our engine on the device under test
    /// and on the CPU; None when the device under test is the CPU (there is
    /// nothing to compare: the CPU is the reference).
    pub ours_device_vs_cpu_bits_differ: Option<usize>,
    /// Logits whose bits differ between our engine on the device under test
    /// alone and in the batch.
    pub ours_batch_bits_differ: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct ContrastReport {
    pub device: String,
    pub batch: usize,
    pub vocab: usize,
    pub prompts: Vec<PromptContrast>,
}

fn to_vec(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.flatten_all()?.to_vec1::<f32>()?)
}

fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// The largest logit minus the second largest.
fn top2_gap(l: &[f32]) -> f32 {
    let (mut a, mut b) = (f32::NEG_INFINITY, f32::NEG_INFINITY);
    for &v in l {
        if v > a {
            b = a;
            a = v;
        } else if v > b {
            b = v;
        }
    }
    a - b
}

fn bits_differ(a: &[f32], b: &[f32]) -> usize {
    a.iter()
        .zip(b)
        .filter(|(x, y)| x.to_bits() != y.to_bits())
        .count()
}

fn load_stock(path: &Path, dev: &Device) -> Result<ModelWeights> {
    let bad =
        |e: &dyn std::fmt::Display| Error::bad_file(path, format!("stock Candle loader: {e}"));
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let content = gguf_file::Content::read(&mut f).map_err(|e| bad(&e))?;
    ModelWeights::from_gguf(content, &mut f, dev).map_err(|e| bad(&e))
}

/// Last-position logits of each prompt from our engine, each run alone.
fn ours_alone(model: &Transformer, prompts: &[Vec<u32>]) -> Result<Vec<Vec<f32>>> {
    let mut alone = Vec::new();
    for p in prompts {
        let mut cache = model.new_cache(p.len())?;
        let out = model.forward(&mut [SeqStep {
            tokens: p,
            cache: &mut cache,
            logits: Logits::Last,
        }])?;
        alone.push(to_vec(out[0].as_ref().expect("asked for logits"))?);
    }
    Ok(alone)
}

/// The same logits with all prompts run together in one batch.
fn ours_batched(model: &Transformer, prompts: &[Vec<u32>]) -> Result<Vec<Vec<f32>>> {
    let mut caches = prompts
        .iter()
        .map(|p| model.new_cache(p.len()))
        .collect::<Result<Vec<_>>>()?;
    let mut steps: Vec<SeqStep> = prompts
        .iter()
        .zip(caches.iter_mut())
        .map(|(p, cache)| SeqStep {
            tokens: p,
            cache,
            logits: Logits::Last,
        })
        .collect();
    model
        .forward(&mut steps)?
        .iter()
        .map(|t| to_vec(t.as_ref().expect("asked for logits")))
        .collect()
}

/// Each prompt is tokenized and its tokens repeated to `len` (so that every
/// prompt has the same length and a batch needs no padding). Logits are those
/// of the last prompt position.
pub fn run(path: &Path, texts: &[String], len: usize, dev: &Device) -> Result<ContrastReport> {
    let cpu = crate::loader::load(path, &Device::Cpu)?;
    if len == 0 || len > cpu.model.config.max_position_embeddings {
        return Err(Error::Input(format!(
            "contrast: prompt length {len} must be between 1 and the context ({})",
            cpu.model.config.max_position_embeddings
        )));
    }
    let mut prompts = Vec::new();
    for t in texts {
        let ids = cpu.tokenizer.encode_prompt(t, false)?;
        if ids.is_empty() {
            return Err(Error::Input(format!(
                "contrast: prompt {t:?} has no tokens"
            )));
        }
        prompts.push(ids.iter().copied().cycle().take(len).collect::<Vec<u32>>());
    }

    // Stock Candle on the device under test. Its batched prefill fails
    // (candle-transformers 0.11.1 feeds a strided tensor to the output
    // matmul), so batches are fed one position at a time, as in decoding.
    let stock = load_stock(path, dev)?;
    let stepwise = |batch: &[Vec<u32>]| -> Result<Vec<Vec<f32>>> {
        let mut m = stock.clone();
        let mut last = None;
        for pos in 0..len {
            let col: Vec<u32> = batch.iter().map(|p| p[pos]).collect();
            last = Some(m.forward(&Tensor::from_vec(col, (batch.len(), 1), dev)?, pos)?);
        }
        let rows = last.expect("len > 0");
        (0..batch.len()).map(|i| to_vec(&rows.get(i)?)).collect()
    };
    let mut stock_prefill = Vec::new();
    let mut stock_alone = Vec::new();
    for p in &prompts {
        let mut m = stock.clone();
        let x = Tensor::new(p.as_slice(), dev)?.unsqueeze(0)?;
        stock_prefill.push(to_vec(&m.forward(&x, 0)?)?);
        stock_alone.push(stepwise(std::slice::from_ref(p))?.remove(0));
    }
    let stock_batch = stepwise(&prompts)?;
    drop(stock);

    // Our engine: the CPU reference, and the device under test.
    // On the CPU the device under test is the reference itself.
    let ref_alone = ours_alone(&cpu.model, &prompts)?;
    let (dev_alone, dev_batch) = if dev.is_cpu() {
        (None, ours_batched(&cpu.model, &prompts)?)
    } else {
        drop(cpu);
        let m = crate::loader::load(path, dev)?.model;
        (Some(ours_alone(&m, &prompts)?), ours_batched(&m, &prompts)?)
    };
    let dut_alone = dev_alone.as_ref().unwrap_or(&ref_alone);

    let rows = (0..prompts.len())
        .map(|i| PromptContrast {
            prompt: i,
            tokens: len,
            stock_vs_ours_max_abs: max_abs(&stock_prefill[i], &ref_alone[i]),
            stock_vs_ours_same_argmax: argmax(&stock_prefill[i]) == argmax(&ref_alone[i]),
            ours_top2_gap: top2_gap(&ref_alone[i]),
            stock_chunk_bits_differ: bits_differ(&stock_prefill[i], &stock_alone[i]),
            stock_chunk_max_abs: max_abs(&stock_prefill[i], &stock_alone[i]),
            stock_batch_bits_differ: bits_differ(&stock_alone[i], &stock_batch[i]),
            stock_batch_max_abs: max_abs(&stock_alone[i], &stock_batch[i]),
            ours_device_vs_cpu_bits_differ: dev_alone
                .as_ref()
                .map(|d| bits_differ(&d[i], &ref_alone[i])),
            ours_batch_bits_differ: bits_differ(&dut_alone[i], &dev_batch[i]),
        })
        .collect();
    Ok(ContrastReport {
        device: crate::device::describe().0,
        batch: prompts.len(),
        vocab: ref_alone[0].len(),
        prompts: rows,
    })
}
