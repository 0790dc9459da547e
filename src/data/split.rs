//! The one split rule of the labelled image sets: which examples may be trained on, which
//! choose hyper-parameters, and which are held out for evaluation.
//!
//! Per class, in file order: the first 80% of that class's examples are `train`, the next
//! 10% `validation`, the last 10% `heldout` (counts rounded down for validation and
//! held-out, so `train` takes the remainder). The built-in digits are sorted by class, so
//! "the last 10%" of the file would be all nines; splitting each class keeps every split
//! balanced (50 of each digit in validation and held-out). GANs and the evaluation
//! classifier train on `train` only; `duel eval` chooses its Parzen σ on `validation` and
//! scores on `heldout`; image-to-image tasks evaluate on `heldout` too.

/// Indices (into the full set, ascending) of each split.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Split {
    pub train: Vec<usize>,
    pub validation: Vec<usize>,
    pub heldout: Vec<usize>,
}

/// Percent of each class in `validation` and in `heldout`.
pub const VALIDATION_PERCENT: usize = 10;
pub const HELDOUT_PERCENT: usize = 10;

impl Split {
    /// The split of a set with these labels (see the module docs).
    pub fn of_labels(labels: &[u8]) -> Split {
        let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); 256];
        for (i, &l) in labels.iter().enumerate() {
            by_class[l as usize].push(i);
        }
        let mut s = Split {
            train: Vec::new(),
            validation: Vec::new(),
            heldout: Vec::new(),
        };
        for members in by_class.iter().filter(|m| !m.is_empty()) {
            let n = members.len();
            let n_held = n * HELDOUT_PERCENT / 100;
            let n_val = n * VALIDATION_PERCENT / 100;
            let n_train = n - n_held - n_val;
            s.train.extend_from_slice(&members[..n_train]);
            s.validation
                .extend_from_slice(&members[n_train..n_train + n_val]);
            s.heldout.extend_from_slice(&members[n_train + n_val..]);
        }
        for v in [&mut s.train, &mut s.validation, &mut s.heldout] {
            v.sort_unstable();
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_per_class_disjoint_and_complete() {
        // Sorted by class like the built-in digits: 20 zeros, 20 ones, then 7 twos.
        let labels: Vec<u8> = (0..20)
            .map(|_| 0)
            .chain((0..20).map(|_| 1))
            .chain((0..7).map(|_| 2))
            .collect();
        let s = Split::of_labels(&labels);
        assert_eq!(s.heldout, vec![18, 19, 38, 39]);
        assert_eq!(s.validation, vec![16, 17, 36, 37]);
        let mut all: Vec<usize> = s
            .train
            .iter()
            .chain(&s.validation)
            .chain(&s.heldout)
            .copied()
            .collect();
        all.sort_unstable();
        assert_eq!(all, (0..labels.len()).collect::<Vec<_>>());
        // 7 twos: 10% rounds down to 0, so all seven train.
        assert!((40..47).all(|i| s.train.contains(&i)));
    }
}
