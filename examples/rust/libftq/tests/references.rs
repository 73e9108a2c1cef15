//! The safe API against independent references committed in tests/ref:
//! transformers + PEFT greedy generations (model/gqa.safetensors), real
//! bitsandbytes NF4/FP4 vectors (quant/quant_ref.bin), Hugging Face
//! tokenizers' ids and texts (tok/*/expected.json, chat.json) and TRL's
//! tokenized rows (tok/data/rows_expected.json).
mod common;

use common::{load_json, read_refio, read_safetensors, reference, write_safetensors, Json, Raw};
use libftq::*;
use std::collections::BTreeMap;

fn cpu() -> Context {
    Context::new("cpu", Some(&Options::new().unwrap().with("num_threads", 2).unwrap())).unwrap()
}

#[test]
fn generation_matches_transformers_and_peft() {
    let (t, meta) = read_safetensors(&reference("model/gqa.safetensors"));
    let c = Json::parse(&meta["config"]);
    let dir = std::env::temp_dir().join(format!("libftq-rust-gqa-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let n = |k: &str| c.get(k).num() as i64;
    let config = format!(
        r#"{{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": {}, "intermediate_size": {},
            "num_hidden_layers": {}, "num_attention_heads": {}, "num_key_value_heads": {}, "vocab_size": {},
            "rms_norm_eps": 1e-5, "rope_theta": {}, "max_position_embeddings": 256, "tie_word_embeddings": false,
            "bos_token_id": 1, "eos_token_id": {}, "pad_token_id": 0, "torch_dtype": "float32"}}"#,
        n("hidden_size"), n("intermediate_size"), n("num_hidden_layers"), n("num_attention_heads"),
        n("num_key_value_heads"), n("vocab_size"), c.get("rope_theta").num(), n("eos_token_id"));
    std::fs::write(dir.join("config.json"), config).unwrap();
    let weights: BTreeMap<String, Raw> =
        t.iter().filter(|(k, _)| k.starts_with("w.")).map(|(k, v)| (k[2..].to_string(), v.clone())).collect();
    write_safetensors(&dir.join("model.safetensors"), &weights);

    let ctx = cpu();
    let model = Model::load(&ctx, &dir, None).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let ids = t["input_ids"].i32();
    let prompt = &ids[..6];
    let o = Options::new().unwrap().with("max_new_tokens", 8).unwrap();
    let base = model.generate(prompt, Generate::new().options(&o)).unwrap();
    assert_eq!(base.tokens, t["generate.base"].i32());
    let lc = c.get("lora");
    let targets: Vec<&str> = lc.get("target_modules").arr().iter().map(|s| s.str()).collect();
    let lo = Options::new().unwrap()
        .with("r", lc.get("r").num() as i64).unwrap()
        .with("lora_alpha", lc.get("lora_alpha").num()).unwrap()
        .with("target_modules", targets).unwrap()
        .with("init_lora_weights", "false").unwrap();
    let lora = Lora::new(&model, None, Some(&lo), 0).unwrap();
    let names: Vec<String> = c.get("lora_tensors").arr().iter().map(|s| s.str().to_string()).collect();
    assert_eq!(lora.tensor_names().unwrap(), names);
    for name in &names {
        let v = t[&format!("lora.{name}")].f32();
        lora.set_tensor(name.as_str(), &v).unwrap();
        assert_eq!(lora.get_tensor(name.as_str()).unwrap(), v);
    }
    lora.set_active(true).unwrap();
    let tuned = model.generate(prompt, Generate::new().options(&o)).unwrap();
    assert_eq!(tuned.tokens, t["generate.lora"].i32());
    lora.set_active(false).unwrap();
    assert_eq!(model.generate(prompt, Generate::new().options(&o)).unwrap(), base);
}

#[test]
fn four_bit_matches_bitsandbytes() {
    let r = read_refio(&reference("quant/quant_ref.bin"));
    let ctx = cpu();
    for qt in ["nf4", "fp4"] {
        for dt in ["f32", "f16", "bf16"] {
            for bs in [64, 512, 4096] {
                let name = format!("q4/{qt}/{dt}/bs{bs}");
                let (x, deq) = (&r[&format!("{name}/x")], &r[&format!("{name}/deq")]);
                let o = Options::new().unwrap().with("bnb_4bit_quant_type", qt).unwrap()
                    .with("quant_blocksize", bs).unwrap();
                let q = Quantizer::new(&ctx, Some(&o)).unwrap();
                let shape = [x.shape[0] as i64];
                match dt {
                    "f32" => {
                        let t = q.quantize(&x.f32(), &shape).unwrap();
                        assert_eq!(t.dequantize().unwrap(), deq.f32(), "{name}");
                    }
                    _ => {
                        let bits = x.u16();
                        let src = if dt == "f16" { Floats::F16(&bits) } else { Floats::Bf16(&bits) };
                        let t = q.quantize(src, &shape).unwrap();
                        let mut out = vec![0u16; bits.len()];
                        let dst = if dt == "f16" { FloatsMut::F16(&mut out) } else { FloatsMut::Bf16(&mut out) };
                        t.dequantize_into(dst).unwrap();
                        assert_eq!(out, deq.u16(), "{name}");
                    }
                }
            }
        }
    }
}

#[test]
fn tokenizer_matches_tokenizers() {
    let tok = Tokenizer::load(reference("tok/sp_legacy"), None).unwrap();
    let expected = load_json(&reference("tok/sp_legacy/expected.json"));
    let corpus = load_json(&reference("tok/corpus.json"));
    let texts = corpus.get("texts_b64").arr();
    let mut checked = 0;
    for (case, b64) in expected.get("cases").arr().iter().zip(texts) {
        let bytes = common::base64(b64.str());
        let Ok(text) = std::str::from_utf8(&bytes) else { continue }; // ill-formed UTF-8: &str cannot hold it
        let ids: Vec<i32> = case.get("ids").ints().iter().map(|&v| v as i32).collect();
        assert_eq!(tok.encode(text, 0).unwrap(), ids, "{text:?}");
        let sp: Vec<i32> = case.get("ids_special").ints().iter().map(|&v| v as i32).collect();
        assert_eq!(tok.encode(text, encode::ADD_SPECIAL).unwrap(), sp);
        let st: Vec<i32> = case.get("ids_special_as_text").ints().iter().map(|&v| v as i32).collect();
        assert_eq!(tok.encode(text, encode::SPECIAL_AS_TEXT).unwrap(), st);
        assert_eq!(tok.decode(&ids, 0).unwrap(), case.get("decoded").str());
        assert_eq!(tok.decode(&sp, decode::SKIP_SPECIAL).unwrap(), case.get("decoded_skip").str());
        checked += 1;
    }
    assert!(checked > 300, "{checked} cases");
    assert_eq!(tok.id_to_token(tok.special_id(SpecialToken::Eos).unwrap()).unwrap(), "</s>");
    assert_eq!(tok.token_to_id("<s>").unwrap(), tok.special_id(SpecialToken::Bos).unwrap());
    assert_eq!(tok.decode(&[100_000_000], 0).unwrap_err().status, Status::NOT_FOUND);

    let chat = load_json(&reference("tok/chat.json"));
    let mut toks: BTreeMap<String, Tokenizer> = BTreeMap::new();
    for case in chat.get("cases").arr() {
        let name = case.get("tokenizer").str().to_string();
        let t = toks.entry(name.clone()).or_insert_with(|| Tokenizer::load(reference(&format!("tok/{name}")), None).unwrap());
        let msgs: Vec<String> = case.get("messages").arr().iter()
            .map(|m| format!("{{\"role\":{},\"content\":{}}}", json_string(m.get("role").str()),
                             json_string(m.get("content").str())))
            .collect();
        let r = t.apply_chat_template(&format!("[{}]", msgs.join(",")), case.get("add_generation_prompt").bool());
        if case.has("error") {
            assert_eq!(r.unwrap_err().status, Status::FORMAT);
            continue;
        }
        let text = r.unwrap();
        assert_eq!(text, case.get("text").str());
        let ids: Vec<i32> = case.get("ids").ints().iter().map(|&v| v as i32).collect();
        assert_eq!(t.encode(&text, 0).unwrap(), ids);
        assert_eq!(t.chat_template().unwrap(), case.get("kind").str());
    }
}

#[test]
fn dataset_rows_match_trl() {
    let expected = load_json(&reference("tok/data/rows_expected.json"));
    for cfg in expected.get("configs").arr() {
        let tok = Tokenizer::load(reference(&format!("tok/{}", cfg.get("tokenizer").str())), None).unwrap();
        let mut o = Options::new().unwrap().with("max_seq_length", 0).unwrap();
        for (k, v) in cfg.get("options").obj() {
            match v {
                Json::Bool(b) => o.set(k, *b).unwrap(),
                Json::Str(s) => o.set(k, s.as_str()).unwrap(),
                _ => panic!("option {k}"),
            };
        }
        let ds = Dataset::load(None, &tok, reference("tok/data/rows.jsonl"), Some(&o)).unwrap();
        let rows = cfg.get("rows").arr();
        assert_eq!(ds.num_examples(Split::Train), rows.len());
        for (i, row) in rows.iter().enumerate() {
            let ex = ds.example(Split::Train, i).unwrap();
            let ids: Vec<i32> = row.get("ids").ints().iter().map(|&v| v as i32).collect();
            let mask: Vec<u8> = row.get("mask").ints().iter().map(|&v| v as u8).collect();
            assert_eq!(ex.ids, &ids[..]);
            assert_eq!(ex.loss_mask, &mask[..]);
        }
    }
}

#[test]
fn batches_and_exact_match() {
    let tok = Tokenizer::load(reference("tok/smollm2"), None).unwrap();
    let o = Options::new().unwrap().with("per_device_train_batch_size", 4).unwrap()
        .with("test_size", 0.1).unwrap().with("assistant_only_loss", true).unwrap();
    let ctx = cpu();
    let mut ds = Dataset::load(Some(&ctx), &tok, common::root().join("examples/data/catalog_train_messages.jsonl"),
                               Some(&o)).unwrap();
    assert_eq!(ds.num_examples(Split::Train) + ds.num_examples(Split::Eval), 1000);
    assert_eq!(ds.stat(DatasetStat::Rows), 1000);
    let mut b = Batch::new().unwrap();
    ds.next_batch(&mut b).unwrap();
    assert_eq!(ds.cursor().unwrap(), (0, 1));
    assert_eq!(b.position().unwrap(), (0, 0));
    let (rows, len) = (b.rows(), b.seq_len());
    assert_eq!(rows, 4);
    let (ids, labels, mask) = (b.input_ids(), b.labels(), b.attention_mask());
    assert_eq!(ids.len(), rows * len);
    assert_eq!(b.num_tokens(), mask.iter().map(|&m| m as i64).sum::<i64>());
    let loss = (0..rows).map(|r| (1..len).filter(|&t| labels[r * len + t] != IGNORE_INDEX).count() as i64).sum::<i64>();
    assert_eq!(b.num_loss_tokens(), loss);
    for (r, &k) in b.example_indices().iter().enumerate() {
        let ex = ds.example(Split::Train, k as usize).unwrap();
        assert_eq!(&ids[r * len..r * len + ex.ids.len()], ex.ids);
    }
    let (starts, lengths) = b.sequences().unwrap();
    assert_eq!(starts.len(), 4);
    assert_eq!(lengths.iter().map(|&l| l as i64).sum::<i64>(), b.num_tokens());
    let mut again = Batch::new().unwrap();
    ds.get_batch(Split::Train, 0, 0, &mut again).unwrap();
    assert_eq!(again.input_ids(), b.input_ids());
    assert_ne!(ds.fingerprint(), 0);
    ds.seek(1, 2).unwrap();
    assert_eq!(ds.cursor().unwrap(), (1, 2));
    assert_eq!(ds.get_batch(Split::Train, 0, 1_000_000, &mut b).unwrap_err().status, Status::INVALID_ARGUMENT);

    for case in load_json(&common::root().join("examples/data/exact_match_cases.json")).arr() {
        assert_eq!(exact_match(case.get("prediction").str(), case.get("reference").str()), case.get("match").bool());
    }
}
