//! Results do not depend on the thread count: three dcgan28 training steps (the default
//! configuration: width 64, batch 64, Adam) under rayon pools of 1, 2 and 3 threads leave
//! bitwise identical training state (every parameter, batch-norm buffer and optimizer
//! moment) and identical per-step losses. The cpu kernels split work into partitions fixed
//! by the shapes, never by the pool, and combine partial sums in a fixed order. Nor on the
//! instruction set: the AVX-512 loops and their portable fallbacks give the same bits.

use duel::gan::{Arch, DataSpec, TrainConfig, Trainer, Variant};
use duel::Device;

mod common;
use common::bits;

/// (name, bits) of every state tensor, and the losses of each step, after `steps` steps.
type Outcome = (Vec<(String, Vec<u64>)>, Vec<(u64, u64)>);

fn train_with_threads(threads: usize, steps: usize) -> Outcome {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("a rayon pool");
    pool.install(|| {
        let config = TrainConfig::defaults(Variant::NsGan, Arch::Dcgan28, DataSpec::Digits);
        let mut t = Trainer::new(config, &Device::Cpu).expect("trainer");
        let losses = (0..steps)
            .map(|_| {
                let m = t.train_step().expect("step");
                (m.d_loss.to_bits(), m.g_loss.to_bits())
            })
            .collect();
        let state = t
            .state_tensors()
            .into_iter()
            .map(|(n, x)| (n, bits(&x)))
            .collect();
        (state, losses)
    })
}

#[test]
fn dcgan28_training_is_bitwise_identical_on_1_2_and_3_threads() {
    let (one_state, one_losses) = train_with_threads(1, 3);
    assert!(!one_state.is_empty(), "the trainer has state tensors");
    for threads in [2, 3] {
        let (state, losses) = train_with_threads(threads, 3);
        assert_eq!(
            losses, one_losses,
            "{threads} threads: losses differ from 1 thread"
        );
        assert_eq!(state.len(), one_state.len());
        for ((name, a), (name_b, b)) in one_state.iter().zip(&state) {
            assert_eq!(name, name_b);
            let first = a.iter().zip(b).position(|(x, y)| x != y);
            assert!(
                first.is_none(),
                "{threads} threads: {name} differs from 1 thread first at element {}",
                first.unwrap_or(0)
            );
        }
    }
}

#[test]
fn train_threads_flag_is_recorded_in_the_config_and_zero_is_refused() {
    let tmp = common::TempDir::new("threads");
    let runs = tmp.arg("runs");
    let out = common::duel(&[
        "train",
        "--data",
        "ring8",
        "--steps",
        "2",
        "--threads",
        "3",
        "--runs-dir",
        &runs,
        "--name",
        "t",
        "--quiet",
        "--device",
        "cpu",
    ]);
    assert!(
        out.status.success(),
        "duel train --threads 3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(tmp.path("runs/t/config.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["threads"], 3, "config.json: {text}");

    let out = common::duel(&[
        "train",
        "--data",
        "ring8",
        "--threads",
        "0",
        "--runs-dir",
        &runs,
        "--device",
        "cpu",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--threads must be at least 1"), "{err}");
}

/// The vector loops of the cpu kernels (AVX-512 or AVX2, whichever is detected) and their
/// fallbacks (`DUEL_CPU_ISA=avx2`: the AVX2 loops on an AVX-512 CPU; `baseline`: the
/// portable loops, what a CPU without AVX2 runs) give the same bits: dcgan28 runs of 3
/// steps leave byte-identical checkpoints.
#[test]
fn dcgan28_training_is_bitwise_identical_with_the_vector_paths_turned_off() {
    let tmp = common::TempDir::new("isa");
    let runs = tmp.arg("runs");
    let runs_of = [
        ("native", None),
        ("avx2", Some("avx2")),
        ("baseline", Some("baseline")),
    ];
    for (name, isa) in runs_of {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_duel"));
        cmd.args(["train", "--steps", "3", "--threads", "2", "--quiet"])
            .args(["--device", "cpu", "--runs-dir", &runs, "--name", name]);
        match isa {
            Some(v) => cmd.env(duel::device::cpu::isa::ISA_ENV, v),
            None => cmd.env_remove(duel::device::cpu::isa::ISA_ENV),
        };
        let out = cmd.output().expect("run duel");
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let native = std::fs::read(tmp.path("runs/native/checkpoint.safetensors")).expect("native");
    assert!(native.len() > 1000, "a real checkpoint");
    for (name, _) in &runs_of[1..] {
        let other = std::fs::read(tmp.path(&format!("runs/{name}/checkpoint.safetensors")))
            .expect("checkpoint");
        assert!(
            native == other,
            "the checkpoints differ with DUEL_CPU_ISA={name}"
        );
    }
}
