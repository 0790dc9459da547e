//! The engine against its stated arithmetic, bit for bit: every element a chain of FMAs
//! from zero over each block of `KC` products in order, each block's sum stored (first
//! block, not accumulating) or added to `C`.

use super::*;

/// The definition, one element at a time (`f32::mul_add` is the correctly rounded FMA).
fn reference(
    (m, n, k): (usize, usize, usize),
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
    a: impl Fn(usize, usize) -> f32,
    b: impl Fn(usize, usize) -> f32,
) {
    for i in 0..m {
        for j in 0..n {
            let mut v = c[i * ldc + j];
            for p0 in (0..k).step_by(KC) {
                let mut acc = 0f32;
                for p in p0..k.min(p0 + KC) {
                    acc = a(i, p).mul_add(b(p, j), acc);
                }
                v = if p0 == 0 && !accumulate { acc } else { v + acc };
            }
            if k == 0 && !accumulate {
                v = 0.0;
            }
            c[i * ldc + j] = v;
        }
    }
}

/// Values of mixed sign and magnitude (so another summation order rounds differently).
fn values(len: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2_654_435_761).max(1);
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            let unit = (s >> 8) as f32 / (1 << 24) as f32 - 0.5;
            unit * [1.0, 0.01, 30.0][(s % 3) as usize]
        })
        .collect()
}

/// (row stride, column stride) of an `r x c` operand stored row-major, transposed or
/// with both strides above one, and the length it needs.
fn layout(kind: usize, r: usize, c: usize) -> (usize, usize, usize) {
    match kind {
        0 => (c, 1, r * c),
        1 => (1, r, r * c),
        _ => (2 * c + 1, 2, r * (2 * c + 1)),
    }
}

#[test]
fn every_loop_and_split_gives_the_defined_bits() {
    let shapes = [
        (1, 1, 1),
        (5, 17, 3),
        (6, 16, 256),
        (7, 33, 257),
        (13, 50, 600),
        (150, 40, 20),
        (20, 2100, 9),
        (3, 4, 0),
        (70, 1, 600),
        (7, 1, 40),
    ];
    let loops: Vec<Loops> = Loops::ALL.into_iter().filter(|l| l.available()).collect();
    assert!(loops.contains(&Loops::Portable));
    let mut checked = 0;
    for (si, &(m, n, k)) in shapes.iter().enumerate() {
        for (ak, bk) in [(0, 0), (1, 0), (0, 1), (2, 2)] {
            let (ars, acs, alen) = layout(ak, m, k);
            let (brs, bcs, blen) = layout(bk, k, n);
            let (av, bv) = (values(alen, 7 + si as u32), values(blen, 91 + si as u32));
            // A single column packed (row stride 1) is run as its transpose; others get
            // a row stride past n.
            let ldc = if n == 1 { 1 } else { n + 3 };
            // Past each row's n values: a sentinel that no product may touch.
            let start: Vec<f32> = values(m * ldc, 5)
                .iter()
                .enumerate()
                .map(|(x, &v)| if x % ldc >= n { 777.0 } else { v })
                .collect();
            for accumulate in [false, true] {
                let mut want = start.clone();
                reference(
                    (m, n, k),
                    &mut want,
                    ldc,
                    accumulate,
                    |i, p| av[i * ars + p * acs],
                    |p, j| bv[p * brs + j * bcs],
                );
                for &l in &loops {
                    for threads in [1, 3] {
                        let mut got = start.clone();
                        // SAFETY: the layouts' lengths cover every index; `l` available.
                        unsafe {
                            sgemm(
                                l,
                                (m, n, k),
                                (got.as_mut_ptr(), ldc),
                                accumulate,
                                (av.as_ptr(), ars, acs),
                                (bv.as_ptr(), brs, bcs),
                                threads,
                            )
                        };
                        for (x, (g, w)) in got.iter().zip(&want).enumerate() {
                            assert_eq!(
                                g.to_bits(),
                                w.to_bits(),
                                "{l:?} {threads} threads {m}x{n}x{k} layouts {ak}/{bk} \
                                 accumulate {accumulate}: C[{}][{}] = {g:e}, want {w:e}",
                                x / ldc,
                                x % ldc
                            );
                        }
                        checked += 1;
                    }
                }
            }
        }
    }
    assert_eq!(checked, shapes.len() * 4 * 2 * loops.len() * 2);
}

/// The definition is not vacuous here: on these values a single chain over all of `k`
/// (no blocks) rounds differently somewhere, so the test above tells the orders apart.
#[test]
fn the_block_order_is_visible_in_the_bits() {
    let (m, n, k) = (13, 50, 600);
    let (a, b) = (values(m * k, 11), values(k * n, 12));
    let mut blocked = vec![0f32; m * n];
    // SAFETY: row-major operands of the stated sizes.
    unsafe {
        sgemm(
            Loops::Portable,
            (m, n, k),
            (blocked.as_mut_ptr(), n),
            false,
            (a.as_ptr(), k, 1),
            (b.as_ptr(), n, 1),
            1,
        )
    };
    let differs = (0..m * n).any(|x| {
        let (i, j) = (x / n, x % n);
        let one_chain = (0..k).fold(0f32, |acc, p| a[i * k + p].mul_add(b[p * n + j], acc));
        one_chain.to_bits() != blocked[x].to_bits()
    });
    assert!(
        differs,
        "inputs too tame to tell the block order from one chain"
    );
}

/// An infinity in one row of `A` makes NaN and inf only where the definition puts them:
/// the zero padding of an edge tile never meets it in a stored element.
#[test]
fn non_finite_values_stay_in_their_rows() {
    let (m, n, k) = (7, 19, 5);
    let mut a = values(m * k, 3);
    a[2] = f32::INFINITY; // row 0
    let b = values(k * n, 4);
    let mut want = vec![0f32; m * n];
    reference(
        (m, n, k),
        &mut want,
        n,
        false,
        |i, p| a[i * k + p],
        |p, j| b[p * n + j],
    );
    for l in Loops::ALL.into_iter().filter(|l| l.available()) {
        let mut got = vec![0f32; m * n];
        // SAFETY: row-major operands of the stated sizes.
        unsafe {
            sgemm(
                l,
                (m, n, k),
                (got.as_mut_ptr(), n),
                false,
                (a.as_ptr(), k, 1),
                (b.as_ptr(), n, 1),
                1,
            )
        };
        for (x, (g, w)) in got.iter().zip(&want).enumerate() {
            let same = g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan());
            assert!(same, "{l:?}: C[{}][{}] = {g}, want {w}", x / n, x % n);
            assert_eq!(x < n, !g.is_finite(), "{l:?}: only row 0 is non-finite");
        }
    }
}

/// A product against a packed `A` — whole, or rows from a panel boundary on, as conv's
/// channel tiles read the packed `Wᵀ` — has the defined bits too, for either packing
/// layout of the operand (row-major, transposed) and thread count; rows off a panel
/// boundary or past the matrix are refused.
#[test]
fn packed_operands_give_the_defined_bits() {
    let loops: Vec<Loops> = Loops::ALL.into_iter().filter(|l| l.available()).collect();
    let (m, n, k) = (40, 37, 600);
    let mut checked = 0;
    for ak in [0, 1] {
        let (ars, acs, alen) = layout(ak, m, k);
        let (av, bv) = (values(alen, 21), values(k * n, 22));
        for &l in &loops {
            // SAFETY: the layout covers m x k; `l` available.
            let packed = unsafe { PackedA::new(l, (av.as_ptr(), ars, acs), m, k) };
            assert!(packed.rows(3, 6).is_none() && packed.rows(36, 6).is_none());
            for (i0, rows) in [(0, m), (12, 17), (36, 4)] {
                let mut want = vec![0f32; rows * n];
                reference(
                    (rows, n, k),
                    &mut want,
                    n,
                    false,
                    |i, p| av[(i0 + i) * ars + p * acs],
                    |p, j| bv[p * n + j],
                );
                for threads in [1, 3] {
                    let mut got = vec![1f32; rows * n];
                    let a = packed.rows(i0, rows).unwrap();
                    // SAFETY: b is k x n row-major, got holds rows x n.
                    unsafe {
                        sgemm_packed(
                            a,
                            n,
                            (got.as_mut_ptr(), n),
                            false,
                            (bv.as_ptr(), n, 1),
                            threads,
                        )
                    };
                    let same = got
                        .iter()
                        .zip(&want)
                        .all(|(g, w)| g.to_bits() == w.to_bits());
                    assert!(same, "{l:?} layout {ak} rows {i0}+{rows} {threads} threads");
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, 2 * loops.len() * 3 * 2);
}
