//! Communicators through the safe API: ids and their text, one-rank and
//! two-rank (threads, shared memory) collectives, an abort reaching the
//! peer, and two trainer ranks against one trainer with twice the
//! gradient accumulation.
mod common;

use common::reference;
use libftq::*;
use std::sync::Barrier;

const CFG: &str = r#"{"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
  "num_key_value_heads": 2, "vocab_size": 1481, "max_position_embeddings": 256, "initializer_range": 0.05,
  "bos_token_id": 1, "eos_token_id": 2}"#;

fn cpu() -> Context {
    Context::new("cpu", Some(&Options::new().unwrap().with("num_threads", 1).unwrap())).unwrap()
}

fn timeout(s: f64) -> Options {
    Options::new().unwrap().with("comm_timeout_s", s).unwrap()
}

#[test]
fn id_text_round_trip() {
    let id = CommId::new(DeviceType::Cpu).unwrap();
    let text = id.to_string();
    assert!(text.starts_with("ftq1-shm-"), "{text}");
    assert_eq!(format!("  {text}\n").parse::<CommId>().unwrap(), id);
    assert_eq!(CommId::from_bytes(id.as_bytes()).unwrap(), id);
    assert_ne!(CommId::new(DeviceType::Cpu).unwrap(), id);
    assert_eq!("not an id".parse::<CommId>().unwrap_err().status, Status::FORMAT);
    assert_eq!(CommId::from_bytes(&[0u8; 160]).unwrap_err().status, Status::INVALID_ARGUMENT);
    assert_eq!(CommId::from_bytes(&[1, 2, 3]).unwrap_err().status, Status::INVALID_ARGUMENT);
}

#[test]
fn one_rank() {
    let ctx = cpu();
    let comm = Comm::new(&ctx, &CommId::new(DeviceType::Cpu).unwrap(), 0, 1, Some(&timeout(5.0))).unwrap();
    assert_eq!((comm.rank(), comm.size()), (0, 1));
    comm.barrier().unwrap();
    comm.check().unwrap();
    let mut v = [1.5, -2.0];
    comm.allreduce(&mut v, ReduceOp::Max).unwrap();
    assert_eq!(v, [1.5, -2.0]);
    let e = Comm::new(&ctx, &CommId::new(DeviceType::Cpu).unwrap(), 2, 2, None).err().unwrap();
    assert_eq!(e.status, Status::INVALID_ARGUMENT);
    assert!(e.message.contains("rank 2 of world size 2"), "{e}");
}

#[test]
fn two_ranks_and_abort() {
    let id = CommId::new(DeviceType::Cpu).unwrap();
    let aborted = Barrier::new(2);
    std::thread::scope(|s| {
        let threads: Vec<_> = (0..2usize)
            .map(|r| {
                let aborted = &aborted;
                s.spawn(move || {
                    let ctx = cpu();
                    let comm = Comm::new(&ctx, &id, r, 2, Some(&timeout(20.0))).unwrap();
                    let mut v = [r as f64 + 1.0, 10.0 * r as f64];
                    comm.allreduce(&mut v, ReduceOp::Sum).unwrap();
                    assert_eq!(v, [3.0, 10.0]);
                    let mut m = [r as f64];
                    comm.allreduce(&mut m, ReduceOp::Min).unwrap();
                    assert_eq!(m, [0.0]);
                    comm.barrier().unwrap();
                    if r == 0 {
                        // from another thread, as a signal watcher would
                        let h = comm.abort_handle();
                        std::thread::scope(|s2| {
                            s2.spawn(|| h.abort());
                        });
                        aborted.wait();
                        None
                    } else {
                        aborted.wait();
                        Some(comm.barrier().unwrap_err())
                    }
                })
            })
            .collect();
        let errs: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        let e = errs[1].clone().unwrap();
        assert_eq!(e.status, Status::COMM, "{e}");
        assert!(e.message.contains("abort"), "{e}");
    });
}

/// Per-step losses of a run (one rank of `world` when an id is given).
fn train(steps: i64, accum: i64, id: Option<(CommId, usize, usize)>) -> Vec<f64> {
    let ctx = cpu();
    let tok = Tokenizer::load(reference("tok/sp_meta"), None).unwrap();
    let o = Options::from_json(&format!(
        r#"{{"r": 4, "lora_alpha": 8, "lora_dropout": 0.1, "target_modules": "all-linear", "learning_rate": 0.01,
            "seed": 5, "logging_steps": 1, "max_steps": {steps}, "max_seq_length": 48,
            "per_device_train_batch_size": 2, "gradient_accumulation_steps": {accum}, "comm_timeout_s": 30}}"#))
    .unwrap();
    let path = common::root().join("examples/data/catalog_train_text.jsonl");
    let data = Dataset::load(Some(&ctx), &tok, path, Some(&o)).unwrap();
    let model = Model::init_random(&ctx, CFG, 11, None).unwrap();
    let lora = Lora::new(&model, None, Some(&o), 9).unwrap();
    let comm = id.map(|(id, r, w)| Comm::new(&ctx, &id, r, w, Some(&o)).unwrap());
    let losses = std::cell::RefCell::new(Vec::new());
    {
        let t = Trainer::new(&model, &lora, &data, Some(&o)).unwrap();
        t.set_comm(comm.as_ref()).unwrap();
        assert_eq!(t.total_steps(), steps);
        t.on_progress(|p| {
            losses.borrow_mut().push(p.loss);
            false
        })
        .unwrap();
        assert!(t.train().unwrap());
    }
    losses.into_inner()
}

#[test]
fn two_trainer_ranks_follow_one_with_double_accumulation() {
    let one = train(4, 2, None);
    let id = CommId::new(DeviceType::Cpu).unwrap();
    let two: Vec<Vec<f64>> = std::thread::scope(|s| {
        let h: Vec<_> = (0..2).map(|r| s.spawn(move || train(4, 1, Some((id, r, 2))))).collect();
        h.into_iter().map(|t| t.join().unwrap()).collect()
    });
    assert_eq!(two[0], two[1]); // every rank logs the reduced loss
    assert_eq!(one.len(), 4);
    for (a, b) in two[0].iter().zip(&one) {
        assert!((a - b).abs() <= 1e-5 * b.abs(), "{:?} vs {:?}", two[0], one);
    }
}
