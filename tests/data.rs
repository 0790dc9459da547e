//! Data: the built-in digits, the IDX reader (good and corrupt files), the batch sampler.

use std::collections::HashSet;
use std::io::Write;
use std::path::PathBuf;

use duel::data::idx::{encode_idx, read_idx};
use duel::data::{BatchState, Batches, Digits};
use duel::Device;

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("duel_data_{tag}_{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

#[test]
fn data_builtin_digits_load() {
    let d = Digits::builtin().unwrap();
    assert_eq!(d.images.dims(), &[5000, 1, 28, 28]);
    assert_eq!(d.len(), 5000);
    assert_eq!(d.image_size(), (28, 28));
    let v = d.images.to_vec::<f32>().unwrap();
    let (lo, hi) = v
        .iter()
        .fold((f32::MAX, f32::MIN), |(a, b), &x| (a.min(x), b.max(x)));
    assert!(v.iter().all(|x| (-1.0..=1.0).contains(x)));
    // Background pixels are 0 → −1, strokes reach 255 → 1.
    assert_eq!((lo, hi), (-1.0, 1.0));
    // Verified by scripts/convert-mnist-5k.py: 500 per class.
    assert_eq!(d.class_counts(), vec![500; 10]);
    // A batch equals the matching rows of the full tensor.
    let (b, l) = d.batch(&[4999, 0, 2500], &Device::Cpu).unwrap();
    assert_eq!(b.dims(), &[3, 1, 28, 28]);
    let bv = b.to_vec::<f32>().unwrap();
    assert_eq!(&bv[..784], &v[4999 * 784..]);
    assert_eq!(&bv[784..1568], &v[..784]);
    assert_eq!(l, vec![d.labels[4999], d.labels[0], d.labels[2500]]);
    assert!(d.batch(&[5000], &Device::Cpu).is_err());
}

#[test]
fn data_idx_round_trip_plain_and_gzip() {
    let dir = tmpdir("rt");
    let pixels: Vec<u8> = (0..2 * 3 * 4).map(|i| (i * 11) as u8).collect();
    let img = encode_idx(&[2, 3, 4], &pixels).unwrap();
    assert_eq!(&img[..8], &[0, 0, 8, 3, 0, 0, 0, 2]);
    let lab = encode_idx(&[2], &[7, 3]).unwrap();
    let (ip, lp) = (dir.join("img.idx"), dir.join("lab.idx.gz"));
    std::fs::write(&ip, &img).unwrap();
    std::fs::write(&lp, gzip(&lab)).unwrap();
    let r = read_idx(&ip).unwrap();
    assert_eq!(r.dims, vec![2, 3, 4]);
    assert_eq!(r.data, pixels);
    let d = Digits::from_paths(&ip, &lp).unwrap();
    assert_eq!(d.images.dims(), &[2, 1, 3, 4]);
    assert_eq!(d.labels, vec![7, 3]);
    let v = d.images.to_vec::<f32>().unwrap();
    for (x, &p) in v.iter().zip(&pixels) {
        assert_eq!(*x, p as f32 / 127.5 - 1.0);
    }
    // Gzipped images load the same.
    let igz = dir.join("img.gz");
    std::fs::write(&igz, gzip(&img)).unwrap();
    assert_eq!(read_idx(&igz).unwrap(), r);
    std::fs::remove_dir_all(&dir).ok();
}

fn expect_err_naming(result: duel::Result<impl std::fmt::Debug>, file: &str, needle: &str) {
    let e = result.expect_err("expected an error").to_string();
    assert!(e.contains(file), "error does not name {file}: {e}");
    assert!(e.contains(needle), "error lacks {needle:?}: {e}");
}

#[test]
fn data_idx_errors_name_the_file() {
    let dir = tmpdir("err");
    let good_img = encode_idx(&[2, 2, 2], &[0; 8]).unwrap();
    let good_lab = encode_idx(&[2], &[0, 1]).unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    let img = write("good-img", &good_img);
    let lab = write("good-lab", &good_lab);

    // Missing file.
    expect_err_naming(
        Digits::from_paths(dir.join("nope-img"), &lab),
        "nope-img",
        "No such file",
    );
    // Bad magic.
    let mut b = good_img.clone();
    b[0] = 0x12;
    expect_err_naming(read_idx(write("badmagic", &b)), "badmagic", "bad magic");
    // Wrong dtype code (0x0D = float).
    let mut b = good_img.clone();
    b[2] = 0x0d;
    expect_err_naming(read_idx(write("dtype", &b)), "dtype", "dtype code 0x0d");
    // Truncated data, truncated header, too short for a magic.
    expect_err_naming(
        read_idx(write("trunc", &good_img[..good_img.len() - 3])),
        "trunc",
        "truncated IDX data",
    );
    expect_err_naming(
        read_idx(write("trunchdr", &good_img[..9])),
        "trunchdr",
        "truncated IDX header",
    );
    expect_err_naming(read_idx(write("tiny", &[0, 0])), "tiny", "not an IDX file");
    // Dims not matching the data length (extra bytes).
    let mut b = good_img.clone();
    b.push(0);
    expect_err_naming(read_idx(write("extra", &b)), "extra", "do not match");
    // Truncated gzip stream.
    let gz = gzip(&good_img);
    expect_err_naming(
        read_idx(write("truncgz", &gz[..gz.len() / 2])),
        "truncgz",
        "gzip",
    );
    // Labels count ≠ images count.
    let lab3 = write("lab3", &encode_idx(&[3], &[0, 1, 2]).unwrap());
    expect_err_naming(Digits::from_paths(&img, &lab3), "lab3", "3 labels");
    // A label file given as images and vice versa.
    expect_err_naming(Digits::from_paths(&lab, &lab), "good-lab", "3 dimensions");
    expect_err_naming(Digits::from_paths(&img, &img), "good-img", "1 dimension");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn data_batches_epoch_visits_every_index_once() {
    let n = 103;
    for seed in [0u64, 1, 42] {
        for epoch in 0..3 {
            let mut p = Batches::permutation(n, seed, epoch);
            assert_ne!(
                p,
                (0..n).collect::<Vec<_>>(),
                "a shuffle of 103 is not the identity"
            );
            p.sort_unstable();
            assert_eq!(p, (0..n).collect::<Vec<_>>());
        }
    }
    assert_ne!(Batches::permutation(n, 7, 0), Batches::permutation(n, 7, 1));
    assert_ne!(Batches::permutation(n, 7, 0), Batches::permutation(n, 8, 0));
    // With batch size 10: 10 batches per epoch, the 3 left over are dropped.
    let mut b = Batches::new(n, 10, 7).unwrap();
    assert_eq!(b.batches_per_epoch(), 10);
    let mut seen = HashSet::new();
    for _ in 0..10 {
        for i in b.next_batch() {
            assert!(seen.insert(i), "index {i} twice in one epoch");
        }
    }
    assert_eq!(seen.len(), 100);
    assert_eq!(b.state().epoch, 0);
    let first_of_epoch1 = b.next_batch();
    assert_eq!(b.state().epoch, 1);
    assert_eq!(
        first_of_epoch1,
        Batches::permutation(n, 7, 1)[..10].to_vec()
    );
    // Divisible case: every index exactly once.
    let mut b = Batches::new(100, 25, 3).unwrap();
    let mut all: Vec<usize> = (0..4).flat_map(|_| b.next_batch()).collect();
    all.sort_unstable();
    assert_eq!(all, (0..100).collect::<Vec<_>>());
    assert!(Batches::new(10, 0, 0).is_err());
    assert!(Batches::new(10, 11, 0).is_err());
}

#[test]
fn data_batches_reproducible_and_resumable() {
    let mut a = Batches::new(50, 8, 123).unwrap();
    let mut b = Batches::new(50, 8, 123).unwrap();
    let seq_a: Vec<Vec<usize>> = (0..20).map(|_| a.next_batch()).collect();
    let seq_b: Vec<Vec<usize>> = (0..20).map(|_| b.next_batch()).collect();
    assert_eq!(seq_a, seq_b);
    // Stop after 9 batches (mid-epoch 1), save the state, resume in a fresh sampler.
    let mut c = Batches::new(50, 8, 123).unwrap();
    for _ in 0..9 {
        c.next_batch();
    }
    let s: BatchState = c.state();
    assert_eq!((s.seed, s.epoch, s.position), (123, 1, 24));
    let mut r = Batches::resume(50, 8, s).unwrap();
    let rest: Vec<Vec<usize>> = (9..20).map(|_| r.next_batch()).collect();
    assert_eq!(rest, seq_a[9..].to_vec());
    let mut other = Batches::new(50, 8, 124).unwrap();
    assert_ne!(other.next_batch(), seq_a[0]);
}
