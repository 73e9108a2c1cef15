//! The safe API: options, contexts, errors, callbacks (and panics inside
//! them), adapters, quantizer buffers, memory returning to zero.
mod common;

use common::TINY_CONFIG;
use libftq::*;
use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;

fn cpu() -> Context {
    Context::new("cpu", Some(&Options::new().unwrap().with("num_threads", 2).unwrap())).unwrap()
}

#[test]
fn version_and_build_info() {
    let (a, b, c) = version();
    assert_eq!(version_string(), format!("{a}.{b}.{c}"));
    assert_eq!(version_number(), a * 10000 + b * 100 + c);
    assert!(build_info().contains(&format!("version={}", version_string())));
    assert_eq!(Status::OK.name(), Status(0).name());
}

#[test]
fn options_by_type_and_errors() {
    let mut o = Options::new().unwrap()
        .with("r", 16).unwrap()
        .with("lora_alpha", 32).unwrap() // an int for a float option
        .with("lora_dropout", 0.05).unwrap()
        .with("use_rslora", true).unwrap()
        .with("target_modules", ["q_proj", "v_proj"]).unwrap();
    assert_eq!(o.get_int("r").unwrap(), 16);
    assert_eq!(o.get("lora_alpha").unwrap(), OptionValue::Float(32.0));
    assert!(o.get_bool("use_rslora").unwrap());
    assert_eq!(o.get_string("target_modules").unwrap(), "q_proj,v_proj");
    assert!(o.is_set("r").unwrap() && !o.is_set("bias").unwrap());
    o.set("r", "12").unwrap(); // text is parsed
    assert_eq!(o.get_int("r").unwrap(), 12);
    o.unset("r").unwrap();
    assert_eq!(o.get_int("r").unwrap(), 8);
    let e = o.set("lora_rank", 4).unwrap_err();
    assert_eq!(e.status, Status::UNKNOWN_OPTION);
    assert!(e.message.contains("lora_rank"), "{e}");
    assert_eq!(last_error().0, Status::UNKNOWN_OPTION);
    clear_error();
    assert_eq!(last_error(), (Status::OK, String::new()));
    assert_eq!(o.set("bnb_4bit_quant_type", "nf5").unwrap_err().status, Status::OPTION_RANGE);
    assert_eq!(o.set("r", 1.5).unwrap_err().status, Status::OPTION_TYPE);
    assert_eq!(o.set("r", "a\0b").unwrap_err().status, Status::INVALID_ARGUMENT);
    let json = o.to_json(false).unwrap();
    let copy = Options::from_json(&json).unwrap();
    assert_eq!(copy.to_json(false).unwrap(), json);
    let clone = o.try_clone().unwrap();
    assert_eq!(clone.to_json(true).unwrap(), o.to_json(true).unwrap());
    let e = Options::from_json(r#"{"r": 2, "bogus": 1}"#).unwrap_err();
    assert!(e.message.contains("bogus"));
    assert_eq!(Options::from_json("{").unwrap_err().status, Status::FORMAT);
    assert_eq!(Options::from_json_file("/nonexistent/cfg.json").unwrap_err().status, Status::IO);
}

#[test]
fn registry() {
    let all = list_options();
    assert!(all.len() > 30);
    let r = option_info("r").unwrap();
    assert_eq!((r.ty, r.group.as_str(), r.default.as_str()), (OptionType::Int, "lora", "8"));
    assert!(r.range.unwrap().0 >= 1.0);
    let q = option_info("bnb_4bit_quant_type").unwrap();
    assert_eq!(q.choices.unwrap(), vec!["nf4", "fp4"]);
    assert!(option_info("target_modules").unwrap().is_list);
    assert_eq!(option_info("nope").unwrap_err().status, Status::UNKNOWN_OPTION);
}

#[test]
fn context_properties_and_errors() {
    let ctx = cpu();
    assert_eq!(ctx.device_type(), DeviceType::Cpu);
    assert!(ctx.device_name().starts_with("cpu"));
    assert_eq!(ctx.num_threads(), 2);
    assert_eq!(ctx.memory(MemoryCategory::All).unwrap(), (0, 0));
    let (free, total) = ctx.device_memory().unwrap();
    assert!(free > 0 && free <= total);
    ctx.synchronize().unwrap();
    let e = Context::new("tpu", None).err().unwrap();
    assert_eq!(e.status, Status::INVALID_ARGUMENT);
    assert!(e.message.contains("tpu"));
    if cuda_device_count().unwrap() == 0 {
        assert_eq!(Context::new("cuda", None).err().unwrap().status, Status::NO_DEVICE);
    }
}

#[test]
fn log_callback_and_levels() {
    let ctx = cpu();
    let seen = Rc::new(RefCell::new(Vec::new()));
    let s = seen.clone();
    ctx.set_log_callback(move |level, msg| s.borrow_mut().push((level, msg.to_string()))).unwrap();
    drop(Model::init_random(&ctx, TINY_CONFIG, 1, None).unwrap());
    assert!(seen.borrow().iter().any(|(l, m)| *l == LogLevel::Info && m.contains("random")));
    seen.borrow_mut().clear();
    ctx.set_log_level(LogLevel::Warn).unwrap();
    drop(Model::init_random(&ctx, TINY_CONFIG, 1, None).unwrap());
    assert!(seen.borrow().is_empty());
    ctx.set_log_level(LogLevel::Info).unwrap();
    ctx.clear_log_callback().unwrap();
    drop(Model::init_random(&ctx, TINY_CONFIG, 1, None).unwrap());
    assert!(seen.borrow().is_empty());
}

#[test]
fn panic_in_log_callback_reaches_the_caller() {
    let ctx = cpu();
    ctx.set_log_callback(|_, msg| panic!("log says: {msg}")).unwrap();
    let r = catch_unwind(AssertUnwindSafe(|| Model::init_random(&ctx, TINY_CONFIG, 0, None).map(|_| ())));
    let payload = r.unwrap_err();
    assert!(payload.downcast_ref::<String>().unwrap().contains("random initialisation"));
    ctx.clear_log_callback().unwrap();
    assert_eq!(ctx.memory(MemoryCategory::All).unwrap().0, 0); // the model was dropped while unwinding
    Model::init_random(&ctx, TINY_CONFIG, 0, None).unwrap();
}

#[test]
fn generation_callbacks_stream_stop_and_panic() {
    let ctx = cpu();
    let model = Model::init_random(&ctx, TINY_CONFIG, 1, None).unwrap();
    let o = Options::new().unwrap().with("max_new_tokens", 6).unwrap();
    let full = model.generate(&[1, 2, 3], Generate::new().options(&o)).unwrap();
    assert_eq!(full.tokens.len(), 6);
    assert_eq!(full.finish_reason, FinishReason::Length);
    let mut seen = Vec::new();
    let mut cb = |t: i32, i: usize| {
        seen.push((t, i));
        false
    };
    let out = model.generate(&[1, 2, 3], Generate::new().options(&o).on_token(&mut cb)).unwrap();
    assert_eq!(out, full);
    assert_eq!(seen, full.tokens.iter().enumerate().map(|(i, &t)| (t, i)).collect::<Vec<_>>());
    let mut stop = |_: i32, i: usize| i == 1;
    let out = model.generate(&[1, 2, 3], Generate::new().options(&o).on_token(&mut stop)).unwrap();
    assert_eq!(out.tokens, full.tokens[..2]);
    assert_eq!(out.finish_reason, FinishReason::Callback);
    let calls = RefCell::new(0);
    let mut boom = |_: i32, i: usize| {
        *calls.borrow_mut() += 1;
        if i == 2 {
            panic!("boom at 2");
        }
        false
    };
    let r = catch_unwind(AssertUnwindSafe(|| model.generate(&[1, 2, 3], Generate::new().options(&o).on_token(&mut boom))));
    assert_eq!(*r.unwrap_err().downcast_ref::<&str>().unwrap(), "boom at 2");
    assert_eq!(*calls.borrow(), 3);
    // still usable, and the panic does not leak into later calls
    assert_eq!(model.generate(&[1, 2, 3], Generate::new().options(&o)).unwrap(), full);
    let stopped = model.generate(&[1, 2, 3], Generate::new().options(&o).stop_sequence(&full.tokens[..1])).unwrap();
    assert_eq!(stopped.tokens, full.tokens[..1]);
    assert_eq!(stopped.finish_reason, FinishReason::StopSequence);
    let sampled = Options::new().unwrap().with("do_sample", true).unwrap().with("max_new_tokens", 5).unwrap();
    let a = model.generate(&[1], Generate::new().options(&sampled).seed(7)).unwrap();
    assert_eq!(a, model.generate(&[1], Generate::new().options(&sampled).seed(7)).unwrap());
    assert_eq!(model.generate(&[], Generate::new()).unwrap_err().status, Status::INVALID_ARGUMENT);
    assert_eq!(model.generate(&[1, 100000], Generate::new()).unwrap_err().status, Status::INVALID_ARGUMENT);
}

#[test]
fn model_and_lora() {
    let ctx = cpu();
    let model = Model::init_random(&ctx, TINY_CONFIG, 1, None).unwrap();
    assert_eq!(model.config_int("hidden_size").unwrap(), 64);
    assert_eq!(model.config_string("architectures").unwrap(), "LlamaForCausalLM");
    assert!(model.config_float("rms_norm_eps").unwrap() > 0.0);
    assert!(model.config_json().unwrap().contains("\"vocab_size\": 256"));
    assert_eq!(model.config_int("nope").unwrap_err().status, Status::NOT_FOUND);
    assert_eq!(model.parameter_count(ParamKind::Embedding).unwrap(), 256 * 64);
    assert!(model.parameter_bytes(ParamKind::All).unwrap() > 0);
    assert_eq!(model.memory(MemoryCategory::All).unwrap(), ctx.memory(MemoryCategory::All).unwrap().0);
    assert!(!model.eos_token_ids().unwrap().is_empty());
    let opts = Options::new().unwrap().with("r", 4).unwrap().with("lora_alpha", 8).unwrap()
        .with("target_modules", ["q_proj", "down_proj"]).unwrap();
    {
        let lora = Lora::new(&model, Some("mine"), Some(&opts), 9).unwrap();
        assert_eq!(lora.name(), "mine");
        assert_eq!(lora.scaling().unwrap(), 2.0);
        assert_eq!(lora.tensor_count(), 8);
        let (name, shape) = lora.tensor_info(0).unwrap();
        assert_eq!(name, "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight");
        assert_eq!(shape, [4, 64]);
        let a = lora.get_tensor(0).unwrap();
        assert!(a.iter().all(|v| v.abs() <= 1.0 / 8.0) && a.iter().any(|&v| v != 0.0)); // kaiming bound 1/sqrt(64)
        assert!(lora.get_tensor(1).unwrap().iter().all(|&v| v == 0.0));
        let b: Vec<f32> = (0..64 * 4).map(|i| i as f32).collect();
        lora.set_tensor(name.replace("lora_A", "lora_B").as_str(), &b).unwrap();
        assert_eq!(lora.get_tensor(1).unwrap(), b);
        assert_eq!(lora.set_tensor(1usize, &b[..3]).unwrap_err().status, Status::SHAPE);
        assert_eq!(lora.get_tensor("nope").unwrap_err().status, Status::NOT_FOUND);
        assert!(lora.get_grad(0).unwrap().iter().all(|&v| v == 0.0));
        lora.zero_grad().unwrap();
        assert!(!lora.is_active());
        lora.set_active(true).unwrap();
        assert!(lora.is_active());
        assert!(ctx.memory(MemoryCategory::Adapter).unwrap().0 > 0);
    }
    assert_eq!(ctx.memory(MemoryCategory::Adapter).unwrap().0, 0);
    let bad = Options::new().unwrap().with("bias", "all");
    assert_eq!(bad.err().unwrap().status, Status::OPTION_RANGE);
}

#[test]
fn quantizer_buffers_and_calibration() {
    let ctx = cpu();
    let nf4 = Options::new().unwrap().with("bnb_4bit_quant_type", "nf4").unwrap();
    let q = Quantizer::new(&ctx, Some(&nf4)).unwrap();
    assert_eq!(q.scheme(), QScheme::Nf4);
    let x: Vec<f32> = (0..256).map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0).collect();
    let t = q.quantize(&x, &[4, 64]).unwrap();
    assert_eq!((t.shape(), t.scheme(), t.clipped()), (vec![4, 64], QScheme::Nf4, 0));
    assert_eq!(t.nbytes(), q.quantized_bytes(&[4, 64]).unwrap());
    let deq = t.dequantize().unwrap();
    let mut fake = vec![0f32; 256];
    q.fake_quantize(&x, &mut fake, &[256]).unwrap();
    assert_eq!(deq, fake);
    let mut half = vec![0u16; 256];
    t.dequantize_into(FloatsMut::F16(&mut half)).unwrap();
    assert!(half.iter().any(|&h| h != 0));
    let st = q.error_stats(&x, &[256]).unwrap();
    let mse: f64 = x.iter().zip(&deq).map(|(a, b)| ((a - b) as f64).powi(2)).sum::<f64>() / 256.0;
    assert!((st.mse - mse).abs() <= 1e-6 * mse.max(1e-12));
    assert_eq!(q.quantize(&x, &[3, 64]).err().unwrap().status, Status::SHAPE);
    let mut short = vec![0f32; 3];
    assert_eq!(q.fake_quantize(&x, &mut short, &[256]).unwrap_err().status, Status::SHAPE);
    let int8 = Options::new().unwrap().with("load_in_8bit", true).unwrap()
        .with("int8_scheme", "asymmetric").unwrap().with("int8_granularity", "tensor").unwrap();
    let q8 = Quantizer::new(&ctx, Some(&int8)).unwrap();
    assert_eq!(q8.calibration().unwrap_err().status, Status::STATE);
    let act: Vec<f32> = (0..1000).map(|i| -1.0 + 4.0 * i as f32 / 999.0).collect();
    q8.observe(&act).unwrap();
    let (scale, zp) = q8.calibration().unwrap();
    assert!((scale - 4.0 / 255.0).abs() < 1e-6 && zp == (1.0 / scale).round() as i32);
    let wide = vec![-4.0f32, 0.0, 1.0, 6.0];
    assert_eq!(q8.quantize(&wide, &[4]).unwrap().clipped(), 2);
    let mut g = vec![0f32; 4];
    q8.fake_quantize_backward(&wide, &vec![1.0f32; 4], &mut g, &[4]).unwrap();
    assert_eq!(g, vec![0.0, 1.0, 1.0, 0.0]);
    q8.reset_calibration();
    assert!(q8.calibration().is_err());
    let bad = Options::new().unwrap().with("quant_blocksize", 100).unwrap();
    assert_eq!(Quantizer::new(&ctx, Some(&bad)).err().unwrap().status, Status::OPTION_RANGE);
}

#[test]
fn memory_returns_to_zero_across_loops() {
    let ctx = cpu();
    let q4 = Options::new().unwrap().with("load_in_4bit", true).unwrap().with("bnb_4bit_quant_type", "nf4").unwrap();
    let tok_json = std::fs::read_to_string(common::reference("tok/sp_legacy/tokenizer.json")).unwrap();
    for i in 0..30 {
        let model = Model::init_random(&ctx, TINY_CONFIG, i, Some(&q4)).unwrap();
        let lora = Lora::new(&model, None, None, i).unwrap();
        lora.set_active(true).unwrap();
        let q = Quantizer::new(&ctx, None).unwrap();
        let t = q.quantize(&vec![1.0f32; 512], &[512]).unwrap();
        let tok = Tokenizer::from_json(&tok_json, None).unwrap();
        let _ = tok.decode(&tok.encode("hello", 0).unwrap(), 0).unwrap();
        assert!(ctx.memory(MemoryCategory::All).unwrap().0 > 0);
        drop(t);
        drop(q);
        drop(lora);
        drop(model);
        assert_eq!(ctx.memory(MemoryCategory::All).unwrap().0, 0);
    }
}
