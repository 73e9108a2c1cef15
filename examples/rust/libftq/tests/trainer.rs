//! Training through the safe API: the three levels (Trainer::train,
//! Trainer::step, forward_backward + Optimizer::step) give the same adapter,
//! callbacks log, stop and panic, evaluation, exact checkpoint resume.
mod common;

use common::reference;
use libftq::*;
use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};

const CFG: &str = r#"{"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
  "num_key_value_heads": 2, "vocab_size": 1481, "max_position_embeddings": 256, "initializer_range": 0.05,
  "bos_token_id": 1, "eos_token_id": 2}"#;

fn setup() -> (Context, Tokenizer) {
    let ctx = Context::new("cpu", Some(&Options::new().unwrap().with("num_threads", 2).unwrap())).unwrap();
    (ctx, Tokenizer::load(reference("tok/sp_meta"), None).unwrap())
}

fn data(ctx: &Context, tok: &Tokenizer, test_size: f64) -> Dataset {
    let o = Options::new().unwrap().with("max_seq_length", 48).unwrap().with("per_device_train_batch_size", 4).unwrap()
        .with("test_size", test_size).unwrap().with("seed", 7).unwrap();
    Dataset::load(Some(ctx), tok, common::root().join("examples/data/catalog_train_text.jsonl"), Some(&o)).unwrap()
}

fn train_opts(steps: i64) -> Options {
    Options::from_json(&format!(
        r#"{{"r": 4, "lora_alpha": 8, "lora_dropout": 0.0, "target_modules": "all-linear", "learning_rate": 0.01,
            "lr_scheduler_type": "cosine", "warmup_steps": 1, "max_grad_norm": 1.0, "weight_decay": 0.001,
            "seed": 5, "logging_steps": 1, "max_steps": {steps}}}"#)).unwrap()
}

/// Trains `steps` steps: 0 = Trainer::train, 1 = Trainer::step, 2 = forward_backward + Optimizer.
fn run(ctx: &Context, ds: &mut Dataset, steps: i64, how: u8) -> (Vec<f64>, Vec<Vec<f32>>) {
    let model = Model::init_random(ctx, CFG, 11, None).unwrap();
    let o = train_opts(steps);
    let lora = Lora::new(&model, None, Some(&o), 9).unwrap();
    let mut losses = Vec::new();
    let records = RefCell::new(Vec::new()); // outlives the trainer its callback is given to
    if how == 2 {
        lora.set_active(true).unwrap();
        let opt = Optimizer::new(&lora, steps, Some(&o)).unwrap();
        let nb = ds.num_batches(Split::Train);
        let mut b = Batch::new().unwrap();
        for k in 0..steps as usize {
            ds.get_batch(Split::Train, k / nb, k % nb, &mut b).unwrap();
            lora.zero_grad().unwrap();
            let (loss, _) = model.forward_backward(&b, None, 5, k as u64, b.num_loss_tokens() as f64).unwrap();
            let s = opt.step().unwrap();
            assert!(!s.skipped && s.grad_norm > 0.0);
            losses.push(loss);
        }
        assert_eq!(opt.steps_done(), steps);
    } else {
        let t = Trainer::new(&model, &lora, ds, Some(&o)).unwrap();
        assert_eq!(t.total_steps(), steps);
        assert!(lora.is_active());
        if how == 0 {
            t.on_log(|r| {
                records.borrow_mut().push(r.to_string());
                false
            }).unwrap();
            assert!(t.train().unwrap());
            for r in records.borrow().iter().filter(|r| r.contains("\"loss\"")) {
                let v = r.split("\"loss\":").nth(1).unwrap().split([',', '}']).next().unwrap();
                losses.push(v.trim().parse().unwrap());
            }
        } else {
            while t.global_step() < steps {
                losses.push(t.step().unwrap().loss);
            }
            assert_eq!(t.step().unwrap_err().status, Status::STATE);
        }
        assert_eq!(t.optimizer().steps_done(), steps);
    }
    let w = (0..lora.tensor_count()).map(|i| lora.get_tensor(i).unwrap()).collect();
    (losses, w)
}

#[test]
fn three_levels_agree() {
    let (ctx, tok) = setup();
    let mut ds = data(&ctx, &tok, 0.0);
    let (l0, w0) = run(&ctx, &mut ds, 4, 0);
    let (l1, w1) = run(&ctx, &mut ds, 4, 1);
    let (l2, w2) = run(&ctx, &mut ds, 4, 2);
    assert_eq!(l0.len(), 4);
    for k in 0..4 {
        assert!((l1[k] - l0[k]).abs() <= 1e-6 * l0[k].abs(), "{l1:?} vs {l0:?}");
        assert!((l2[k] - l0[k]).abs() <= 1e-6 * l0[k].abs(), "{l2:?} vs {l0:?}");
    }
    assert_eq!(w1, w0);
    for (a, b) in w2.iter().zip(&w0) {
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= 1e-5 * y.abs() + 1e-7);
        }
    }
    assert!(l0[3] < l0[0]);
}

#[test]
fn callbacks_stop_panic_and_eval() {
    let (ctx, tok) = setup();
    let ds = data(&ctx, &tok, 0.02);
    let model = Model::init_random(&ctx, CFG, 11, None).unwrap();
    let lora = Lora::new(&model, None, None, 1).unwrap();
    let o = Options::new().unwrap().with("max_steps", 6).unwrap().with("eval_steps", 3).unwrap()
        .with("logging_steps", 1).unwrap();
    let evals = RefCell::new(Vec::new()); // callbacks borrow these: they outlive the trainer
    let records = RefCell::new(Vec::new());
    let t = Trainer::new(&model, &lora, &ds, Some(&o)).unwrap();
    assert!(t.plan().unwrap().starts_with('{'));
    t.on_progress(|p| {
        assert_eq!(p.total_steps, 6);
        p.step == 2
    }).unwrap();
    assert!(!t.train().unwrap());
    assert_eq!(t.global_step(), 2);
    t.on_progress(|p| if p.step == 3 { panic!("progress panics at {}", p.step) } else { false }).unwrap();
    let r = catch_unwind(AssertUnwindSafe(|| t.train()));
    assert_eq!(r.unwrap_err().downcast_ref::<String>().unwrap(), "progress panics at 3");
    assert_eq!(t.global_step(), 3);
    t.clear_callbacks().unwrap();
    t.on_eval(|step| {
        evals.borrow_mut().push(step);
        // generation inside the callback, with the model the trainer borrows too
        let g = model.generate(&[1, 5, 6], Generate::new()).unwrap();
        Some(g.tokens.len() as f64)
    }).unwrap();
    t.on_log(|r| {
        records.borrow_mut().push(r.to_string());
        false
    }).unwrap();
    let s = t.step().unwrap();
    assert!(s.loss.is_finite() && !s.stop_requested);
    assert!(t.train().unwrap());
    assert_eq!(t.global_step(), 6);
    assert_eq!(*evals.borrow(), vec![6]);
    assert!(records.borrow().iter().any(|r| r.contains("\"eval_metric\":20")));
    assert!(t.evaluate().unwrap().is_finite());
    assert_eq!(t.nonfinite_steps(), 0);
}

#[test]
fn checkpoint_resume_is_exact() {
    let (ctx, tok) = setup();
    let mut ds = data(&ctx, &tok, 0.0);
    let (_, uninterrupted) = run(&ctx, &mut ds, 5, 0);
    let dir = std::env::temp_dir().join(format!("libftq-rust-ckpt-{}", std::process::id()));
    let model = Model::init_random(&ctx, CFG, 11, None).unwrap();
    let o = train_opts(5);
    {
        let lora = Lora::new(&model, None, Some(&o), 9).unwrap();
        let t = Trainer::new(&model, &lora, &ds, Some(&o)).unwrap();
        t.step().unwrap();
        t.step().unwrap();
        t.save_checkpoint(&dir).unwrap();
    }
    let lora = Lora::new(&model, None, Some(&o), 123).unwrap();
    let t = Trainer::new(&model, &lora, &ds, Some(&o)).unwrap();
    t.load_checkpoint(&dir).unwrap();
    assert_eq!(t.global_step(), 2);
    assert!(t.train().unwrap());
    let resumed: Vec<Vec<f32>> = (0..lora.tensor_count()).map(|i| lora.get_tensor(i).unwrap()).collect();
    assert_eq!(resumed, uninterrupted);
    drop(t);
    let other = Lora::new(&model, Some("other"), Some(&Options::new().unwrap().with("r", 8).unwrap()), 0).unwrap();
    let t2 = Trainer::new(&model, &other, &ds, Some(&o)).unwrap();
    assert_eq!(t2.load_checkpoint(&dir).unwrap_err().status, Status::SHAPE);
    assert!(t2.load_checkpoint(dir.join("missing")).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}
