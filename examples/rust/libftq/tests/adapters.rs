//! PEFT adapter folders and merging (Lora::load, Lora::save,
//! Model::merged_weight, Model::save_merged) against what PEFT wrote and
//! computed (tests/ref/peft, make_ref.py: the tiny model folder, adapters
//! saved by PeftModel.save_pretrained, PeftModel's and merge_and_unload()'s
//! logits) and a float64 recomputation of W' = W + scaling * B A.
mod common;

use common::{read_safetensors, reference, Raw};
use libftq::*;
use std::collections::BTreeMap;
use std::path::PathBuf;

fn cpu() -> Context {
    Context::new("cpu", Some(&Options::new().unwrap().with("num_threads", 2).unwrap())).unwrap()
}

fn tmp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("libftq-rust-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

const PROJ: [&str; 7] = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                         "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"];

fn projections() -> Vec<String> {
    (0..2).flat_map(|l| PROJ.iter().map(move |p| format!("model.layers.{l}.{p}.weight"))).collect()
}

/// float64 W + scaling * B A for weight `name`, from PEFT's adapter tensors
/// (W alone when the adapter leaves the projection alone).
fn merged_ref(w: &Raw, adapter: &BTreeMap<String, Raw>, scaling: f64, name: &str) -> Vec<f64> {
    let mut out: Vec<f64> = w.f32().iter().map(|&v| v as f64).collect();
    let stem = name.trim_end_matches(".weight");
    let Some(a) = adapter.get(&format!("base_model.model.{stem}.lora_A.weight")) else { return out };
    let b = &adapter[&format!("base_model.model.{stem}.lora_B.weight")];
    let (r, cols, rows) = (a.shape[0], a.shape[1], b.shape[0]);
    let (av, bv) = (a.f32(), b.f32());
    for i in 0..rows {
        for j in 0..cols {
            let s: f64 = (0..r).map(|k| bv[i * r + k] as f64 * av[k * cols + j] as f64).sum();
            out[i * cols + j] += scaling * s;
        }
    }
    out
}

fn assert_close(got: &[f32], want: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    let scale = want.iter().fold(0f64, |m, v| m.max(v.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((*g as f64 - w).abs() <= 1e-6 * scale, "{what}[{i}]: {g} vs {w}");
    }
}

#[test]
fn load_and_save_peft_folders() {
    let ctx = cpu();
    let model = Model::load(&ctx, reference("peft/tiny"), None).unwrap();
    let (peft, _) = read_safetensors(&reference("peft/adapter_qvod/adapter_model.safetensors"));
    let lora = Lora::load(&model, reference("peft/adapter_qvod"), Some("peft"), None).unwrap();
    assert_eq!(lora.name(), "peft");
    assert!(!lora.is_active());
    assert_eq!(lora.scaling().unwrap(), 2.0); // lora_alpha 8 / r 4
    let mut names = lora.tensor_names().unwrap();
    names.sort();
    assert_eq!(names, peft.keys().cloned().collect::<Vec<_>>());
    for (name, t) in &peft {
        assert_eq!(lora.get_tensor(name.as_str()).unwrap(), t.f32(), "{name}");
    }
    // saved again: PEFT's own file, byte for byte
    let dir = tmp("adapters");
    lora.save(dir.join("qvod"), None).unwrap();
    assert_eq!(std::fs::read(dir.join("qvod/adapter_model.safetensors")).unwrap(),
               std::fs::read(reference("peft/adapter_qvod/adapter_model.safetensors")).unwrap());
    let cfg = common::load_json(&dir.join("qvod/adapter_config.json"));
    assert_eq!((cfg.get("r").num(), cfg.get("lora_alpha").num(), cfg.get("peft_type").str()), (4.0, 8.0, "LORA"));

    // a new adapter: the file holds exactly its tensors and loads back equal
    let o = Options::new().unwrap().with("r", 2).unwrap().with("lora_alpha", 4).unwrap()
        .with("target_modules", ["k_proj", "up_proj"]).unwrap().with("init_lora_weights", "false").unwrap();
    let fresh = Lora::new(&model, Some("fresh"), Some(&o), 3).unwrap();
    let save_opts = Options::new().unwrap().with("base_model_name_or_path", "my/base").unwrap();
    fresh.save(dir.join("fresh"), Some(&save_opts)).unwrap();
    let (saved, _) = read_safetensors(&dir.join("fresh/adapter_model.safetensors"));
    assert_eq!(saved.len(), fresh.tensor_count());
    let back = Lora::load(&model, dir.join("fresh"), None, None).unwrap();
    assert_eq!(back.name(), "default");
    assert_eq!(back.tensor_names().unwrap(), fresh.tensor_names().unwrap());
    for i in 0..fresh.tensor_count() {
        let (name, shape) = fresh.tensor_info(i).unwrap();
        assert_eq!(saved[&name].shape, shape.to_vec());
        assert_eq!(saved[&name].f32(), fresh.get_tensor(i).unwrap());
        assert_eq!(back.get_tensor(i).unwrap(), fresh.get_tensor(i).unwrap());
    }
    assert_eq!(common::load_json(&dir.join("fresh/adapter_config.json")).get("base_model_name_or_path").str(),
               "my/base");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn merged_weights_and_folder() {
    let ctx = cpu();
    let model = Model::load(&ctx, reference("peft/tiny"), None).unwrap();
    let (w, _) = read_safetensors(&reference("peft/tiny/model.safetensors"));
    let (peft, _) = read_safetensors(&reference("peft/adapter_qvod/adapter_model.safetensors"));
    let lora = Lora::load(&model, reference("peft/adapter_qvod"), None, None).unwrap();
    for name in projections() {
        assert_eq!(model.weight_shape(&name).unwrap().to_vec(), w[&name].shape);
        assert_eq!(model.merged_weight(&name, None).unwrap(), w[&name].f32(), "{name}: fp32 base");
        assert_close(&model.merged_weight(&name, Some(&lora)).unwrap(), &merged_ref(&w[&name], &peft, 2.0, &name),
                     &name);
    }
    let dir = tmp("merged");
    model.save_merged(dir.join("f32"), Some(&lora), None).unwrap();
    let bf16 = Options::new().unwrap().with("torch_dtype", "bfloat16").unwrap();
    model.save_merged(dir.join("bf16"), Some(&lora), Some(&bf16)).unwrap();
    let (merged, _) = read_safetensors(&dir.join("f32/model.safetensors"));
    let (half, _) = read_safetensors(&dir.join("bf16/model.safetensors"));
    assert_eq!(merged.keys().collect::<Vec<_>>(), w.keys().collect::<Vec<_>>());
    for (name, t) in &w {
        let want = merged_ref(t, &peft, 2.0, name);
        assert_close(&merged[name].f32(), &want, name);
        assert_eq!(half[name].dtype, "BF16");
        for (h, v) in half[name].u16().iter().zip(&want) {
            let g = f32::from_bits((*h as u32) << 16) as f64;
            assert!((g - v).abs() <= v.abs() / 256.0, "{name}: bf16 {g} vs {v}");
        }
    }
    // the merged folder generates what merge_and_unload()'s logits predict
    let (r, _) = read_safetensors(&reference("peft/ref.safetensors"));
    let ids = r["input_ids"].i32();
    let logits = r["logits_qvod_merged"].f32();
    let (rows, seq, vocab) = (r["input_ids"].shape[0], r["input_ids"].shape[1], r["logits_qvod_merged"].shape[2]);
    let reloaded = Model::load(&ctx, dir.join("f32"), None).unwrap();
    let one = Options::new().unwrap().with("max_new_tokens", 1).unwrap();
    for row in 0..rows {
        let last = &logits[(row * seq + seq - 1) * vocab..(row * seq + seq) * vocab];
        let mut order: Vec<usize> = (0..vocab).collect();
        order.sort_by(|&a, &b| last[b].total_cmp(&last[a]));
        if last[order[0]] - last[order[1]] < 1e-3 {
            continue; // no clear argmax
        }
        let out = reloaded.generate(&ids[row * seq..(row + 1) * seq], Generate::new().options(&one)).unwrap();
        assert_eq!(out.tokens, vec![order[0] as i32], "row {row}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn adapter_errors_carry_the_library_message() {
    let ctx = cpu();
    let model = Model::load(&ctx, reference("peft/tiny"), None).unwrap();
    let missing = std::env::temp_dir().join("libftq-rust-no-such-adapter");
    let e = Lora::load(&model, &missing, None, None).err().unwrap();
    assert_eq!(e.status, Status::NOT_FOUND);
    assert!(e.message.contains(missing.to_str().unwrap()), "{e}");
    let e = Lora::load(&model, reference("peft/adapter_qvod"), Some("a\0b"), None).err().unwrap();
    assert_eq!(e.status, Status::INVALID_ARGUMENT);
    let other = Model::init_random(&ctx, common::TINY_CONFIG, 1, None).unwrap(); // hidden size 64, not 32
    assert_eq!(Lora::load(&other, reference("peft/adapter_qvod"), None, None).err().unwrap().status, Status::SHAPE);
    let foreign = Lora::new(&other, None, None, 0).unwrap();
    let q = "model.layers.0.self_attn.q_proj.weight";
    assert_eq!(model.merged_weight(q, Some(&foreign)).unwrap_err().status, Status::INVALID_ARGUMENT);
    let e = model.merged_weight("model.layers.0.self_attn.nope.weight", None).unwrap_err();
    assert_eq!(e.status, Status::NOT_FOUND);
    assert!(e.message.contains("nope"), "{e}");
    let lora = Lora::new(&model, None, None, 0).unwrap();
    let e = lora.save(missing.join("adapter"), None).unwrap_err();
    assert_eq!(e.status, Status::IO);
    assert!(e.message.contains("libftq-rust-no-such-adapter"), "{e}");
    let int8 = Options::new().unwrap().with("load_in_8bit", true).unwrap();
    let e = model.save_merged(missing.join("merged"), Some(&lora), Some(&int8)).unwrap_err();
    assert_eq!(e.status, Status::UNSUPPORTED);
    drop(lora);
    drop(foreign);
    let before = ctx.memory(MemoryCategory::Adapter).unwrap().0;
    for _ in 0..10 {
        drop(Lora::load(&model, reference("peft/adapter_all"), None, None).unwrap());
    }
    assert_eq!(ctx.memory(MemoryCategory::Adapter).unwrap().0, before);
}
