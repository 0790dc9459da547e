//! `duel gradcheck` as a test: every case of every op passes, and every op the engine
//! records on the tape has cases. A new op that records itself without gradient checks
//! fails here.

use duel::autograd::gradcheck;
use std::collections::BTreeSet;

/// Every name the engine records on the tape. Adding an op means adding it here and
/// giving it gradcheck cases.
const RECORDED_OPS: &[&str] = &[
    // elementwise
    "copy",
    "neg",
    "exp",
    "log",
    "sqrt",
    "abs",
    "relu",
    "leaky_relu",
    "sigmoid",
    "tanh",
    "clamp",
    "powf",
    "affine",
    "add",
    "sub",
    "mul",
    "div",
    "pow",
    "maximum",
    "minimum",
    // views, reductions, cast
    "reshape",
    "transpose",
    "permute",
    "narrow",
    "broadcast_to",
    "unsqueeze",
    "squeeze",
    "sum",
    "mean",
    "max",
    "cast",
    // dense and convolution
    "matmul",
    "conv2d",
    "conv_transpose2d",
    "batch_norm",
    "instance_norm2d",
    "dropout",
    "concat",
    "upsample_nearest2d",
    "pad2d",
    // losses
    "bce_with_logits",
    "least_squares",
    "l1",
    "mse",
];

#[test]
fn gradcheck_every_case_passes() {
    let mut failed = Vec::new();
    let mut rows = 0;
    for case in duel::ops::gradcheck_cases().unwrap() {
        for row in gradcheck::check(&case).unwrap() {
            rows += 1;
            if !row.passed {
                failed.push(format!(
                    "{} ({}) input {}: max abs {:.2e}, max rel {:.2e}",
                    row.op, row.variant, row.input, row.max_abs_err, row.max_rel_err
                ));
            }
        }
    }
    assert!(rows > 0);
    assert!(
        failed.is_empty(),
        "{} of {rows} checks failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

#[test]
fn gradcheck_covers_every_recorded_op() {
    let checked: BTreeSet<&str> = duel::ops::gradcheck_cases()
        .unwrap()
        .iter()
        .map(|c| c.op)
        .collect();
    let missing: Vec<&&str> = RECORDED_OPS
        .iter()
        .filter(|op| !checked.contains(**op))
        .collect();
    assert!(
        missing.is_empty(),
        "ops without gradcheck cases: {missing:?}"
    );
    let unlisted: Vec<&&str> = checked
        .iter()
        .filter(|op| !RECORDED_OPS.contains(op))
        .collect();
    assert!(
        unlisted.is_empty(),
        "gradcheck ops missing from RECORDED_OPS: {unlisted:?}"
    );
}

#[test]
fn gradcheck_list_includes_every_literal_op_name_in_the_sources() {
    // Op names written as literals at `record("…"`, or as `const OP: &str = "…"` in a
    // family's mod.rs, where it records (cpu.rs and simt.rs use such constants only to
    // label their error messages).
    let mut found = BTreeSet::new();
    let mut stack = vec![std::path::PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/ops"
    ))];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                let in_mod_rs = path.file_name().is_some_and(|n| n == "mod.rs");
                for marker in ["record(\"", "const OP: &str = \""] {
                    if marker.starts_with("const") && !in_mod_rs {
                        continue;
                    }
                    for (at, _) in text.match_indices(marker) {
                        let rest = &text[at + marker.len()..];
                        found.insert(rest[..rest.find('"').unwrap()].to_string());
                    }
                }
            }
        }
    }
    assert!(found.len() >= 10, "the scan found too little: {found:?}");
    let unlisted: Vec<&String> = found
        .iter()
        .filter(|op| !RECORDED_OPS.contains(&op.as_str()))
        .collect();
    assert!(
        unlisted.is_empty(),
        "recorded ops missing from RECORDED_OPS: {unlisted:?}"
    );
}
