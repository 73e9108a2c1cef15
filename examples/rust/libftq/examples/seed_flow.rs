//! The seed notebook's flow from Rust: load a model with its linear layers
//! quantized to NF4, add a LoRA adapter, fine-tune it on the example data
//! set (examples/data: catalog records, chat format, assistant-only loss),
//! save a checkpoint, and generate — greedy exact match on held-out prompts
//! before and after training.
//!
//!     cargo run --release --example seed_flow -- [--model GGUF_OR_DIR] [--steps 200] [--eval 20]
//!     cargo run --example seed_flow -- --tiny --steps 4 --eval 2   # a small random model, quickly
use std::io::Write;
use std::path::PathBuf;

use libftq::{
    exact_match, json_string, Context, Dataset, Generate, Lora, Model, Options, Progress, Tokenizer, Trainer,
};

struct Args {
    model: PathBuf,
    tiny: bool,
    steps: i64,
    eval: usize,
    out: PathBuf,
    device: String,
}

fn args() -> Args {
    let default_model = std::env::var("FTQ_SMOLLM2_GGUF").map(PathBuf::from).unwrap_or_else(|_| {
        PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/libftq/SmolLM2-135M-Instruct.Q4_1.gguf")
    });
    let mut a = Args { model: default_model, tiny: false, steps: 200, eval: 20, out: "seed-flow-output".into(),
                       device: "cpu".into() };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--model" => a.model = value().into(),
            "--tiny" => a.tiny = true,
            "--steps" => a.steps = value().parse().expect("--steps"),
            "--eval" => a.eval = value().parse().expect("--eval"),
            "--out" => a.out = value().into(),
            "--device" => a.device = value(),
            _ => panic!("unknown flag {flag} (--model, --tiny, --steps, --eval, --out, --device)"),
        }
    }
    a
}

/// The string value of `key` in a one-line JSON object (enough for the example data).
fn json_field(line: &str, key: &str) -> Option<String> {
    let start = line.find(&format!("\"{key}\""))? + key.len() + 2;
    let rest = &line[start..];
    let rest = &rest[rest.find('"')? + 1..];
    let mut out = String::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'u' => {
                    let hex: String = chars.by_ref().take(4).collect();
                    out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?).unwrap_or('\u{fffd}'));
                }
                c => out.push(c),
            },
            c => out.push(c),
        }
    }
    None
}

fn exact_match_rate(model: &Model, tok: &Tokenizer, rows: &[(String, String)], stream: bool)
                    -> libftq::Result<usize> {
    let gen = Options::new()?.with("max_new_tokens", 32)?;
    let mut hits = 0;
    for (i, (prompt, reference)) in rows.iter().enumerate() {
        let text = tok.apply_chat_template(&format!("[{{\"role\":\"user\",\"content\":{}}}]", json_string(prompt)),
                                           true)?;
        let show = stream && i == 0;
        let mut on_token = |t: i32, _: usize| {
            if show && !tok.is_special(t) {
                let piece = tok.token_to_piece(t).unwrap_or_default();
                print!("{}", String::from_utf8_lossy(&piece));
                std::io::stdout().flush().ok();
            }
            false
        };
        if show {
            print!("    answer: ");
        }
        let out = model.generate(&tok.encode(&text, 0)?, Generate::new().options(&gen).on_token(&mut on_token))?;
        if show {
            println!();
        }
        hits += exact_match(&tok.decode(&out.tokens, libftq::decode::SKIP_SPECIAL)?, reference) as usize;
    }
    Ok(hits)
}

fn main() -> libftq::Result<()> {
    let a = args();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../..");
    let data_dir = root.join("examples/data");
    println!("libftq {}", libftq::version_string());
    let ctx = Context::new(&a.device, None)?;
    ctx.set_log_callback(|level, msg| {
        if level <= libftq::LogLevel::Warn {
            println!("  [{level:?}] {msg}");
        }
    })?;
    println!("device: {}", ctx.device_name());

    // 1. the base model, linear layers quantized to NF4 as they load
    let quant = Options::new()?.with("load_in_4bit", true)?.with("bnb_4bit_quant_type", "nf4")?;
    let (tok, model) = if a.tiny {
        let tok = Tokenizer::load(root.join("tests/ref/tok/smollm2"), None)?;
        let cfg = format!(r#"{{"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": {}, "bos_token_id": 1,
            "eos_token_id": 2}}"#, tok.vocab_size());
        let model = Model::init_random(&ctx, &cfg, 0, Some(&quant))?;
        (tok, model)
    } else {
        if !a.model.exists() {
            eprintln!("{} not found: run scripts/get-model.sh, or pass --model or --tiny", a.model.display());
            std::process::exit(2);
        }
        (Tokenizer::load(&a.model, None)?, Model::load(&ctx, &a.model, Some(&quant))?)
    };
    println!("model: {}, {:.1} M parameters", model.config_string("architectures")?,
             model.parameter_count(libftq::ParamKind::All)? as f64 / 1e6);

    // 2. the adapter (PEFT's LoraConfig names)
    let lora_opts = Options::new()?.with("r", 16)?.with("lora_alpha", 32)?.with("lora_dropout", 0.05)?
        .with("target_modules", "all-linear")?;
    let lora = Lora::new(&model, None, Some(&lora_opts), 0)?;
    println!("adapter: {} trainable parameters", lora.num_parameters()?);

    // 3. the data: chat rows, only the answers trained
    let data_opts = Options::new()?.with("assistant_only_loss", true)?.with("max_seq_length", 256)?
        .with("per_device_train_batch_size", 8)?;
    let data = Dataset::load(Some(&ctx), &tok, data_dir.join("catalog_train_messages.jsonl"), Some(&data_opts))?;
    let held_out: Vec<(String, String)> = std::fs::read_to_string(data_dir.join("catalog_eval_prompts.jsonl"))
        .expect("catalog_eval_prompts.jsonl")
        .lines()
        .take(a.eval)
        .filter_map(|l| Some((json_field(l, "prompt")?, json_field(l, "reference")?)))
        .collect();

    lora.set_active(true)?;
    let before = exact_match_rate(&model, &tok, &held_out, true)?;
    println!("before training: exact match {before}/{}", held_out.len());

    // 4. training
    let train_opts = Options::new()?.with("max_steps", a.steps)?.with("learning_rate", 5e-4)?
        .with("lr_scheduler_type", "cosine")?.with("warmup_ratio", 0.03)?.with("max_grad_norm", 0.3)?
        .with("weight_decay", 0.001)?;
    let every = (a.steps / 10).max(1);
    let started = std::time::Instant::now();
    {
        let trainer = Trainer::new(&model, &lora, &data, Some(&train_opts))?;
        trainer.on_progress(move |p: &Progress| {
            if p.step % every == 0 {
                println!("  step {:4}/{}  loss {:.4}  lr {:.2e}  {:.0} tokens/s", p.step, p.total_steps, p.loss,
                         p.learning_rate, p.tokens_per_second);
            }
            false
        })?;
        trainer.train()?;
        println!("trained {} steps in {:.1} s", trainer.global_step(), started.elapsed().as_secs_f64());
        // 5. save: a training checkpoint (adapter + optimizer + data cursor)
        std::fs::create_dir_all(&a.out).ok();
        trainer.save_checkpoint(a.out.join("checkpoint"))?;
        println!("saved {}", a.out.join("checkpoint").display());
    }

    // 6. generate with the trained adapter
    let after = exact_match_rate(&model, &tok, &held_out, true)?;
    println!("after training: exact match {after}/{}", held_out.len());
    Ok(())
}
