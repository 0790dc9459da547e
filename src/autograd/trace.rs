//! The tape of a loss as data, as a printed table, and as Graphviz DOT.

use super::{reachable_nodes, Edge, Node};
use crate::tensor::{Shape, Tensor};
use std::fmt::Write;

/// One recorded op, in forward (recording) order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TapeEntry {
    /// Position on the tape.
    pub seq: u64,
    pub op: &'static str,
    /// Each input: a label (`%7` for the output of entry 7, a leaf's name or `leaf#id`,
    /// `const` for a tensor that needs no gradient) and its shape.
    pub inputs: Vec<(String, Shape)>,
    pub output: Shape,
    /// Bytes the op keeps for its backward rule (0 once backward has run through it).
    pub saved_bytes: usize,
}

fn label(edge: &Edge) -> String {
    match edge {
        Edge::None => "const".to_string(),
        Edge::Leaf(leaf) if !leaf.name.is_empty() => leaf.name.clone(),
        Edge::Leaf(leaf) => format!("leaf#{}", leaf.id),
        Edge::Node(node) => format!("%{}", node.seq),
    }
}

fn entry(node: &Node) -> TapeEntry {
    let alive = super::lock(&node.rule).is_some();
    TapeEntry {
        seq: node.seq,
        op: node.op,
        inputs: node
            .inputs
            .iter()
            .map(|i| (label(&i.edge), i.shape.clone()))
            .collect(),
        output: node.output_shape.clone(),
        saved_bytes: if alive { node.saved_bytes } else { 0 },
    }
}

/// The ops `root` was computed from, in the order they ran (empty for a leaf or constant).
pub fn tape(root: &Tensor) -> Vec<TapeEntry> {
    match root.edge() {
        Edge::Node(node) => {
            let mut entries: Vec<TapeEntry> =
                reachable_nodes(node).iter().map(|n| entry(n)).collect();
            entries.reverse();
            entries
        }
        _ => Vec::new(),
    }
}

fn human_bytes(b: usize) -> String {
    match b {
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

/// The tape as a table: one line per op with its inputs, output shape and saved bytes.
pub fn format_tape(entries: &[TapeEntry]) -> String {
    let total: usize = entries.iter().map(|e| e.saved_bytes).sum();
    let mut out = format!(
        "{} ops on the tape, {} saved for backward\n",
        entries.len(),
        human_bytes(total)
    );
    let _ = writeln!(
        out,
        "{:>5}  {:<14} {:<44} {:<16} {:>10}",
        "#", "op", "inputs", "output", "saved"
    );
    for e in entries {
        let inputs: Vec<String> = e.inputs.iter().map(|(l, s)| format!("{l}{s}")).collect();
        let _ = writeln!(
            out,
            "{:>5}  {:<14} {:<44} {:<16} {:>10}",
            format!("%{}", e.seq),
            e.op,
            inputs.join(", "),
            e.output.to_string(),
            human_bytes(e.saved_bytes)
        );
    }
    out
}

/// The tape as a Graphviz digraph: leaves and constants as boxes, ops as ellipses.
pub fn to_dot(entries: &[TapeEntry]) -> String {
    let mut out = String::from("digraph tape {\n  rankdir=LR;\n  node [fontname=\"monospace\"];\n");
    let mut sources = std::collections::BTreeSet::new();
    for e in entries {
        let _ = writeln!(
            out,
            "  \"%{}\" [shape=ellipse, label=\"%{} {}\\n{}\\nsaved {}\"];",
            e.seq,
            e.seq,
            e.op,
            e.output,
            human_bytes(e.saved_bytes)
        );
        for (i, (l, s)) in e.inputs.iter().enumerate() {
            let from = if l.starts_with('%') {
                l.clone()
            } else {
                // each constant is its own box; a leaf keeps one box however often it is used
                let id = if l == "const" {
                    format!("const.{}.{i}", e.seq)
                } else {
                    l.clone()
                };
                if sources.insert(id.clone()) {
                    let fill = if l == "const" { "white" } else { "lightblue" };
                    let _ = writeln!(
                        out,
                        "  \"{id}\" [shape=box, style=filled, fillcolor={fill}, label=\"{l}\\n{s}\"];"
                    );
                }
                id
            };
            let _ = writeln!(out, "  \"{from}\" -> \"%{}\";", e.seq);
        }
    }
    out.push_str("}\n");
    out
}
