//! The autodiff semantics GAN training depends on, the tape's bookkeeping, and the trace
//! of a two-layer MLP. Expected gradients are worked out by hand in the comments.

use duel::autograd::{self, no_grad, trace};
use duel::{Device, Tensor};

fn t(data: &[f32], shape: &[usize]) -> Tensor {
    Tensor::from_slice(data, shape, &Device::Cpu).unwrap()
}

fn values(x: &Tensor) -> Vec<f32> {
    x.to_vec::<f32>().unwrap()
}

#[test]
fn autograd_gradient_of_a_product_sum() {
    // L = Σ x·w  ⇒  ∂L/∂w = x
    let x = t(&[1.0, -2.0, 3.0], &[3]);
    let w = t(&[0.5, 0.25, -1.0], &[3]).with_requires_grad();
    x.mul(&w).unwrap().sum_all().unwrap().backward().unwrap();
    assert_eq!(values(&w.grad().unwrap()), vec![1.0, -2.0, 3.0]);
}

#[test]
fn autograd_detach_stops_gradient_flow() {
    // The discriminator step of a GAN: fake = G(z) is detached, so D's loss never
    // reaches G's parameters.
    let z = t(&[1.0, 2.0], &[2]);
    let g = t(&[3.0, 4.0], &[2]).with_requires_grad_named("g");
    let d = t(&[0.5, -0.5], &[2]).with_requires_grad_named("d");
    let fake = z.mul(&g).unwrap(); // [3, 8]
    let d_loss = fake.detach().mul(&d).unwrap().sum_all().unwrap();
    d_loss.backward().unwrap();
    assert!(g.grad().is_none(), "the D step must not write G's gradient");
    assert_eq!(values(&d.grad().unwrap()), vec![3.0, 8.0]);
    assert!(!fake.detach().requires_grad());
    assert!(fake.detach().shares_storage(&fake));
}

#[test]
fn autograd_generator_step_flows_through_d() {
    // The generator step backpropagates through D into G. D's leaves do receive a
    // gradient (PyTorch semantics); the trainer zeroes D's grads before D's own step and
    // only G's optimizer steps. Here: L = Σ (z·g)·d ⇒ ∂L/∂g = z·d, ∂L/∂d = z·g.
    let z = t(&[1.0, 2.0], &[2]);
    let g = t(&[3.0, 4.0], &[2]).with_requires_grad();
    let d = t(&[0.5, -0.5], &[2]).with_requires_grad();
    let g_loss = z.mul(&g).unwrap().mul(&d).unwrap().sum_all().unwrap();
    g_loss.backward().unwrap();
    assert_eq!(values(&g.grad().unwrap()), vec![0.5, -1.0]);
    assert_eq!(values(&d.grad().unwrap()), vec![3.0, 8.0]);
}

#[test]
fn autograd_no_grad_records_nothing() {
    let w = t(&[1.0, 2.0], &[2]).with_requires_grad();
    let y = no_grad(|| w.mul(&w).unwrap().sum_all().unwrap());
    assert!(!y.requires_grad());
    assert!(autograd::tape(&y).is_empty());
    let msg = y.backward().unwrap_err().to_string();
    assert!(msg.contains("does not require grad"), "{msg}");
    assert!(
        autograd::is_grad_enabled(),
        "no_grad must restore recording"
    );
    // and recording works again afterwards
    let y = w.mul(&w).unwrap().sum_all().unwrap();
    assert_eq!(autograd::tape(&y).len(), 2);
}

#[test]
fn autograd_gradients_accumulate_until_zeroed() {
    // Each backward adds x to w's gradient.
    let x = t(&[1.0, -1.0], &[2]);
    let w = t(&[2.0, 2.0], &[2]).with_requires_grad();
    let step = || x.mul(&w).unwrap().sum_all().unwrap().backward().unwrap();
    step();
    step();
    assert_eq!(values(&w.grad().unwrap()), vec![2.0, -2.0]);
    w.zero_grad();
    assert!(w.grad().is_none());
    step();
    assert_eq!(values(&w.grad().unwrap()), vec![1.0, -1.0]);
}

#[test]
fn autograd_parameter_used_twice_gets_both_contributions() {
    // L = Σ (w·a + w·b) ⇒ ∂L/∂w = a + b
    let a = t(&[1.0, 2.0, 3.0], &[3]);
    let b = t(&[10.0, 20.0, 30.0], &[3]);
    let w = t(&[0.0, 0.0, 0.0], &[3]).with_requires_grad();
    let l = w
        .mul(&a)
        .unwrap()
        .add(&w.mul(&b).unwrap())
        .unwrap()
        .sum_all()
        .unwrap();
    l.backward().unwrap();
    assert_eq!(values(&w.grad().unwrap()), vec![11.0, 22.0, 33.0]);
    // L = Σ x·x ⇒ ∂L/∂x = 2x: both inputs of one node are the same leaf
    let x = t(&[1.5, -2.0], &[2]).with_requires_grad();
    x.mul(&x).unwrap().sum_all().unwrap().backward().unwrap();
    assert_eq!(values(&x.grad().unwrap()), vec![3.0, -4.0]);
}

#[test]
fn autograd_leaf_not_requiring_grad_gets_none() {
    let x = t(&[1.0, 2.0], &[2]);
    let w = t(&[3.0, 4.0], &[2]).with_requires_grad();
    x.mul(&w).unwrap().sum_all().unwrap().backward().unwrap();
    assert!(!x.requires_grad());
    assert!(x.grad().is_none());
    assert!(w.grad().is_some());
}

#[test]
fn autograd_backward_twice_through_a_freed_graph_is_an_error() {
    let w = t(&[1.0, 2.0], &[2]).with_requires_grad();
    let loss = w.mul(&w).unwrap().sum_all().unwrap();
    loss.backward().unwrap();
    let msg = loss.backward().unwrap_err().to_string();
    assert!(
        msg.contains("a second time") && msg.contains("forward pass again"),
        "{msg}"
    );
}

#[test]
fn autograd_saved_tensors_are_released_after_backward() {
    let x = t(&[1.0, 2.0, 3.0, 4.0], &[4]).with_requires_grad();
    let loss = x.sigmoid().unwrap().mul(&x).unwrap().sum_all().unwrap();
    let before: usize = autograd::tape(&loss).iter().map(|e| e.saved_bytes).sum();
    // sigmoid keeps its output (16 B), mul keeps both operands (32 B)
    assert!(before >= 48, "saved {before} B");
    loss.backward().unwrap();
    let after: Vec<usize> = autograd::tape(&loss)
        .iter()
        .map(|e| e.saved_bytes)
        .collect();
    assert!(after.iter().all(|&b| b == 0), "{after:?}");
}

#[test]
fn autograd_backward_needs_a_one_element_loss() {
    let w = t(&[1.0, 2.0], &[2]).with_requires_grad();
    let y = w.mul(&w).unwrap();
    let msg = y.backward().unwrap_err().to_string();
    assert!(
        msg.contains("[2]") && msg.contains("backward_with"),
        "{msg}"
    );
    // backward_with seeds any shape: ∂(Σ s·w²)/∂w = 2·s·w
    y.backward_with(&t(&[1.0, 0.5], &[2])).unwrap();
    assert_eq!(values(&w.grad().unwrap()), vec![2.0, 2.0]);
    let msg = y.backward_with(&t(&[1.0], &[1])).unwrap_err().to_string();
    assert!(msg.contains("seed"), "{msg}");
}

/// `x[8, 2] → matmul w1[2, 16] + b1 → relu → matmul w2[16, 1] + b2 → mean((· − y)²)`
/// from fixed seeds (the shape of `duel trace`'s demo, which tests/cli.rs runs): the loss
/// and the (name, leaf) parameters.
fn two_layer_mlp_loss() -> (Tensor, Vec<(&'static str, Tensor)>) {
    let d = Device::Cpu;
    let param = |name: &str, shape: &[usize], seed: u64| {
        Tensor::randn(shape, seed, 0, &d)
            .unwrap()
            .with_requires_grad_named(name)
    };
    let (w1, b1) = (param("w1", &[2, 16], 11), param("b1", &[16], 12));
    let (w2, b2) = (param("w2", &[16, 1], 13), param("b2", &[1], 14));
    let x = Tensor::randn([8, 2], 15, 0, &d).unwrap();
    let y = Tensor::rand([8, 1], 16, 0, &d).unwrap();
    let hidden = x.matmul(&w1).unwrap().add(&b1).unwrap().relu().unwrap();
    let out = hidden.matmul(&w2).unwrap().add(&b2).unwrap();
    let loss = out.sub(&y).unwrap().powf(2.0).unwrap().mean_all().unwrap();
    (loss, vec![("w1", w1), ("b1", b1), ("w2", w2), ("b2", b2)])
}

#[test]
fn autograd_trace_of_a_two_layer_mlp() {
    let (loss, params) = two_layer_mlp_loss();
    let entries = autograd::tape(&loss);
    let ops: Vec<&str> = entries.iter().map(|e| e.op).collect();
    assert_eq!(
        ops,
        ["matmul", "add", "relu", "matmul", "add", "sub", "powf", "mean"]
    );
    let shapes: Vec<String> = entries.iter().map(|e| e.output.to_string()).collect();
    assert_eq!(
        shapes,
        ["[8, 16]", "[8, 16]", "[8, 16]", "[8, 1]", "[8, 1]", "[8, 1]", "[8, 1]", "[]"]
    );
    // inputs are labelled by where they come from
    assert_eq!(entries[0].inputs[0].0, "const");
    assert_eq!(entries[0].inputs[1].0, "w1");
    assert_eq!(entries[1].inputs[0].0, format!("%{}", entries[0].seq));
    assert_eq!(
        entries[1].inputs[1],
        ("b1".to_string(), duel::Shape::new([16]))
    );
    // forward order is tape order
    assert!(entries.windows(2).all(|w| w[0].seq < w[1].seq));

    let table = trace::format_tape(&entries);
    assert!(table.starts_with("8 ops on the tape"), "{table}");
    assert!(
        table.contains("matmul") && table.contains("w2[16, 1]"),
        "{table}"
    );

    let dot = trace::to_dot(&entries);
    assert!(
        dot.starts_with("digraph tape {") && dot.trim_end().ends_with('}'),
        "{dot}"
    );
    // every edge joins two declared nodes
    let declared: Vec<&str> = dot
        .lines()
        .filter(|l| l.contains("[shape="))
        .map(|l| l.trim().split('"').nth(1).unwrap())
        .collect();
    let edges: Vec<(&str, &str)> = dot
        .lines()
        .filter(|l| l.contains("->"))
        .map(|l| {
            let parts: Vec<&str> = l.split('"').collect();
            (parts[1], parts[3])
        })
        .collect();
    assert_eq!(
        edges.len(),
        entries.iter().map(|e| e.inputs.len()).sum::<usize>()
    );
    for (from, to) in edges {
        assert!(
            declared.contains(&from) && declared.contains(&to),
            "undeclared node in {from} -> {to}"
        );
    }

    loss.backward().unwrap();
    for (name, p) in &params {
        let g = p.grad().unwrap_or_else(|| panic!("{name} got no gradient"));
        assert_eq!(g.shape(), p.shape(), "{name}");
        assert!(
            g.to_f64_vec().unwrap().iter().all(|v| v.is_finite()),
            "{name}"
        );
    }
}

// ---- freeze: leaves that act as constants for a while (the generator step freezes D) ----

#[test]
fn autograd_freeze_reports_no_grad_inside_the_guard_only() {
    let w = t(&[1.0, 2.0], &[2]).with_requires_grad();
    let other = t(&[3.0], &[1]).with_requires_grad();
    let y = w.mul(&w).unwrap(); // not a leaf: ignored by freeze
    assert!(w.requires_grad() && y.requires_grad());
    {
        let _frozen = autograd::freeze(&[w.clone(), y.clone()]);
        assert!(
            !w.requires_grad(),
            "a frozen leaf reports requires_grad() == false"
        );
        assert!(w.is_leaf(), "it is still a leaf");
        // a clone of the leaf is the same leaf: frozen too
        assert!(!w.clone().requires_grad());
        assert!(other.requires_grad(), "only the given leaves are frozen");
        assert!(y.requires_grad(), "a recorded result is not frozen");
    }
    assert!(w.requires_grad(), "the freeze ends with the guard");
    // an empty freeze changes nothing
    let _none = autograd::freeze(&[]);
    assert!(w.requires_grad());
}

#[test]
fn autograd_backward_through_a_frozen_weight() {
    // L = Σ (x·w1)·w2 with w2 frozen: ∂L/∂w1 = x·w2, ∂L/∂x = w1·w2; w2 gets nothing.
    // x = [1, 2], w1 = [3, -1], w2 = [0.5, 4] ⇒ ∂L/∂w1 = [0.5, 8], ∂L/∂x = [1.5, -4].
    let x = t(&[1.0, 2.0], &[2]).with_requires_grad();
    let w1 = t(&[3.0, -1.0], &[2]).with_requires_grad_named("w1");
    let w2 = t(&[0.5, 4.0], &[2]).with_requires_grad_named("w2");
    let loss = {
        let _frozen = autograd::freeze(std::slice::from_ref(&w2));
        let loss = x.mul(&w1).unwrap().mul(&w2).unwrap().sum_all().unwrap();
        // the tape holds no edge to w2: its input is labelled a constant
        let tape = autograd::tape(&loss);
        assert!(
            tape.iter()
                .flat_map(|e| e.inputs.iter())
                .all(|(label, _)| label != "w2"),
            "w2 is on the tape"
        );
        loss
    };
    // backward after the guard dropped: the graph was recorded without w2
    loss.backward().unwrap();
    assert!(w2.grad().is_none(), "a frozen weight gets no gradient");
    assert_eq!(values(&w1.grad().unwrap()), vec![0.5, 8.0]);
    assert_eq!(values(&x.grad().unwrap()), vec![1.5, -4.0]);
}

#[test]
fn autograd_freeze_leaves_an_existing_grad_as_it_was() {
    // The D step leaves D's gradient; the G step (D frozen) must neither clear nor add to it.
    let w = t(&[2.0, -3.0], &[2]).with_requires_grad();
    let g = t(&[1.0, 1.0], &[2]).with_requires_grad();
    w.mul(&w).unwrap().sum_all().unwrap().backward().unwrap(); // ∂/∂w = 2w
    assert_eq!(values(&w.grad().unwrap()), vec![4.0, -6.0]);
    {
        let _frozen = autograd::freeze(std::slice::from_ref(&w));
        // L = Σ g·w ⇒ ∂L/∂g = w
        let loss = g.mul(&w).unwrap().sum_all().unwrap();
        loss.backward().unwrap();
    }
    assert_eq!(values(&w.grad().unwrap()), vec![4.0, -6.0]);
    assert_eq!(values(&g.grad().unwrap()), vec![2.0, -3.0]);
}

#[test]
fn autograd_freeze_guards_nest() {
    let a = t(&[1.0], &[1]).with_requires_grad();
    let b = t(&[2.0], &[1]).with_requires_grad();
    let outer = autograd::freeze(&[a.clone(), b.clone()]);
    {
        let _inner = autograd::freeze(std::slice::from_ref(&a));
        assert!(!a.requires_grad() && !b.requires_grad());
    }
    // the inner guard's end does not thaw what the outer one still freezes
    assert!(!a.requires_grad() && !b.requires_grad());
    // the same leaf frozen twice by one guard, and guards dropped out of order
    let twice = autograd::freeze(&[b.clone(), b.clone()]);
    drop(outer);
    assert!(a.requires_grad());
    assert!(!b.requires_grad(), "b is still frozen by the second guard");
    drop(twice);
    assert!(a.requires_grad() && b.requires_grad());
}

#[test]
fn autograd_freeze_is_per_thread() {
    let w = t(&[1.0], &[1]).with_requires_grad();
    let _frozen = autograd::freeze(std::slice::from_ref(&w));
    assert!(!w.requires_grad());
    let w2 = w.clone();
    let elsewhere = std::thread::spawn(move || w2.requires_grad())
        .join()
        .unwrap();
    assert!(elsewhere, "another thread's view of the leaf is not frozen");
}

#[test]
fn autograd_all_inputs_frozen_records_nothing() {
    let w = t(&[1.0, 2.0], &[2]).with_requires_grad();
    let x = t(&[3.0, 4.0], &[2]);
    let _frozen = autograd::freeze(std::slice::from_ref(&w));
    let y = x.mul(&w).unwrap().sum_all().unwrap();
    assert!(!y.requires_grad());
    assert!(autograd::tape(&y).is_empty());
    assert!(y.backward().is_err());
}

#[test]
fn autograd_freeze_matmul_weight() {
    // y = x·W, L = Σ y ⇒ ∂L/∂x = 1·Wᵀ (each row: the row sums of W); W frozen: no grad.
    // W = [[1, 2], [3, 4], [5, 6]] ⇒ row sums [3, 7, 11].
    let x = t(&[1.0, 0.0, -1.0, 2.0, 1.0, 0.5], &[2, 3]).with_requires_grad();
    let w = t(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[3, 2]).with_requires_grad();
    {
        let _frozen = autograd::freeze(std::slice::from_ref(&w));
        x.matmul(&w).unwrap().sum_all().unwrap().backward().unwrap();
    }
    assert!(w.grad().is_none());
    assert_eq!(
        values(&x.grad().unwrap()),
        vec![3.0, 7.0, 11.0, 3.0, 7.0, 11.0]
    );
    // and with x frozen instead: ∂L/∂W = xᵀ·1 (each row: the column sums of x, twice)
    x.zero_grad();
    {
        let _frozen = autograd::freeze(std::slice::from_ref(&x));
        x.matmul(&w).unwrap().sum_all().unwrap().backward().unwrap();
    }
    assert!(x.grad().is_none());
    assert_eq!(
        values(&w.grad().unwrap()),
        vec![3.0, 3.0, 1.0, 1.0, -0.5, -0.5]
    );
}

#[test]
fn autograd_freeze_conv_weight() {
    use duel::ops::conv::{conv2d, conv_transpose2d, Conv2dParams, ConvTranspose2dParams};
    // conv2d of a 3×3 input with a 2×2 kernel, L = Σ y. With W frozen: no grad for W, the
    // bias gets the number of outputs (4), and x gets what the unfrozen run gives it.
    let xv = [1.0, 2.0, 0.0, -1.0, 3.0, 1.0, 2.0, 0.0, 1.0];
    let wv = [1.0, -1.0, 2.0, 0.5];
    let run = |freeze_w: bool| {
        let x = t(&xv, &[1, 1, 3, 3]).with_requires_grad();
        let w = t(&wv, &[1, 1, 2, 2]).with_requires_grad();
        let b = t(&[0.0], &[1]).with_requires_grad();
        {
            let _frozen = freeze_w.then(|| autograd::freeze(std::slice::from_ref(&w)));
            conv2d(&x, &w, Some(&b), &Conv2dParams::default())
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
        }
        (x.grad(), w.grad(), b.grad())
    };
    let (x_free, w_free, b_free) = run(false);
    let (x_frozen, w_frozen, b_frozen) = run(true);
    assert!(w_free.is_some());
    assert!(w_frozen.is_none(), "a frozen conv weight gets no gradient");
    assert_eq!(values(&b_frozen.unwrap()), vec![4.0]);
    assert_eq!(values(&b_free.unwrap()), vec![4.0]);
    // ∂L/∂x[i,j] = Σ of the kernel taps covering (i, j): corners get one tap, the centre all
    // four (1 − 1 + 2 + 0.5 = 2.5).
    let xg = values(&x_frozen.unwrap());
    assert_eq!(xg, values(&x_free.unwrap()));
    assert_eq!(xg, vec![1.0, 0.0, -1.0, 3.0, 2.5, -0.5, 2.0, 2.5, 0.5]);

    // conv_transpose2d (the generator's layer) the same way
    let x = t(&[1.0, -2.0, 0.5, 3.0], &[1, 1, 2, 2]).with_requires_grad();
    let w = t(&wv, &[1, 1, 2, 2]).with_requires_grad();
    {
        let _frozen = autograd::freeze(std::slice::from_ref(&w));
        conv_transpose2d(&x, &w, None, &ConvTranspose2dParams::default())
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
    }
    assert!(w.grad().is_none());
    // every input pixel spreads over all 4 taps: ∂L/∂x = Σ W = 2.5
    assert_eq!(values(&x.grad().unwrap()), vec![2.5; 4]);
}
