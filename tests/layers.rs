//! The layering rule of DESIGN.md, checked on the source: every module names only modules
//! at or below its own place in `ORDER` (`crate::x` paths outside comments).
//!
//! The design's rows, bottom first, made a total order where a row has several members
//! (`device · tensor`: the dtype and shape leaves, then devices, then `Tensor` and its tape
//! recording; `nn · optim`; `data · eval · io`: io, then data, then eval, which reads both).
//! The binary (main.rs, cli/) sits above all of it and is not scanned. Root re-exports
//! (`crate::Tensor`) are not used inside the library, so every path names its module.

use std::fs;
use std::path::{Path, PathBuf};

/// Bottom first. A file belongs to the first entry its path (relative to src/) starts with.
const ORDER: &[&str] = &[
    "error",
    "profile",
    "kernels",
    "tensor/shape",
    "tensor/dtype",
    "device",
    "tensor",
    "ops",
    "autograd",
    "nn",
    "optim",
    "io",
    "data",
    "eval",
    "gan",
    "bench",
    "prelude",
    "lib",
];

fn rank_of_file(rel: &str) -> usize {
    let stem = rel.trim_end_matches(".rs");
    ORDER
        .iter()
        .position(|m| stem == *m || stem.starts_with(&format!("{m}/")))
        .unwrap_or_else(|| panic!("src/{rel} is in no layer of tests/layers.rs ORDER: add it"))
}

/// The rank of what `crate::<path>` names: the longest ORDER entry it starts with.
fn rank_of_path(path: &str) -> Option<usize> {
    let mut best: Option<(usize, usize)> = None;
    for (rank, m) in ORDER.iter().enumerate() {
        let m_path = m.replace('/', "::");
        if (path == m_path || path.starts_with(&format!("{m_path}::")))
            && best.is_none_or(|(len, _)| m_path.len() > len)
        {
            best = Some((m_path.len(), rank));
        }
    }
    best.map(|(_, rank)| rank)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("read src/") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `crate::a::b…` paths on the non-comment part of each line.
fn crate_paths(source: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (n, line) in source.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            let tail = &rest[i + "crate::".len()..];
            let end = tail
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(tail.len());
            found.push((n + 1, tail[..end].trim_end_matches(':').to_string()));
            rest = &tail[end..];
        }
    }
    found
}

#[test]
fn every_module_imports_only_from_layers_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    assert!(
        files.len() > 50,
        "found only {} files under src/",
        files.len()
    );
    let mut upward = Vec::new();
    let mut checked = 0;
    for file in &files {
        let rel = file
            .strip_prefix(&src)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        if rel == "main.rs" || rel.starts_with("cli/") {
            // The binary: it sits above the whole library, and there `crate::` is main.rs.
            continue;
        }
        let own = rank_of_file(&rel);
        let source = fs::read_to_string(file).expect("read a source file");
        for (line, path) in crate_paths(&source) {
            let Some(dep) = rank_of_path(&path) else {
                upward.push(format!("src/{rel}:{line}: crate::{path} is in no layer"));
                continue;
            };
            checked += 1;
            if dep > own {
                upward.push(format!(
                    "src/{rel}:{line}: {} imports crate::{path} ({}, a layer above it)",
                    ORDER[own], ORDER[dep]
                ));
            }
        }
    }
    assert!(
        checked > 300,
        "only {checked} crate:: paths found: is the scan broken?"
    );
    assert!(upward.is_empty(), "upward edges:\n{}", upward.join("\n"));
}

#[test]
fn the_scan_sees_paths_and_skips_comments() {
    let found = crate_paths(
        "use crate::ops::conv; // crate::gan::x\nlet a = crate::tensor::Tensor::zeros;",
    );
    let paths: Vec<&str> = found.iter().map(|(_, p)| p.as_str()).collect();
    assert_eq!(paths, ["ops::conv", "tensor::Tensor::zeros"]);
    assert_eq!(rank_of_path("tensor::shape::Shape"), Some(3));
    assert_eq!(rank_of_path("tensor::Tensor"), Some(6));
    assert_eq!(rank_of_file("ops/conv/cpu.rs"), 7);
}
