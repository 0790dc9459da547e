//! Small dense symmetric linear algebra in f64 for the feature statistics of `duel eval`:
//! means and covariances, the symmetric eigendecomposition (cyclic Jacobi), the square root
//! of a positive semi-definite matrix, and the Fréchet distance between two Gaussians.
//!
//! The Fréchet distance ‖μ₁ − μ₂‖² + tr(Σ₁ + Σ₂ − 2(Σ₁Σ₂)^{1/2}) needs the trace of the
//! square root of Σ₁Σ₂, which is not symmetric. It has the same eigenvalues as the symmetric
//! PSD matrix M = Σ₁^{1/2} Σ₂ Σ₁^{1/2}, so tr((Σ₁Σ₂)^{1/2}) = Σ √λᵢ(M). Both square roots
//! come from Jacobi eigendecompositions of symmetric matrices, which are accurate to a few
//! ulps of the largest eigenvalue (no general-matrix Newton iteration that can diverge, and
//! no complex parts to discard as scipy's `sqrtm` must). Eigenvalues below zero by rounding
//! are clamped to 0.

/// A dense row-major `n × n` matrix.
#[derive(Clone, Debug, PartialEq)]
pub struct Matrix {
    pub n: usize,
    pub data: Vec<f64>,
}

impl Matrix {
    pub fn zeros(n: usize) -> Matrix {
        Matrix {
            n,
            data: vec![0.0; n * n],
        }
    }
    pub fn from_rows(rows: &[Vec<f64>]) -> Matrix {
        let n = rows.len();
        assert!(rows.iter().all(|r| r.len() == n), "square matrix expected");
        Matrix {
            n,
            data: rows.concat(),
        }
    }
    pub fn at(&self, i: usize, j: usize) -> f64 {
        self.data[i * self.n + j]
    }
    fn set(&mut self, i: usize, j: usize, v: f64) {
        self.data[i * self.n + j] = v;
    }
    pub fn trace(&self) -> f64 {
        (0..self.n).map(|i| self.at(i, i)).sum()
    }
    pub fn matmul(&self, other: &Matrix) -> Matrix {
        let n = self.n;
        let mut out = Matrix::zeros(n);
        for i in 0..n {
            for k in 0..n {
                let a = self.at(i, k);
                if a == 0.0 {
                    continue;
                }
                for j in 0..n {
                    out.data[i * n + j] += a * other.data[k * n + j];
                }
            }
        }
        out
    }
    /// (A + Aᵀ)/2: removes the rounding asymmetry of a product of symmetric matrices.
    fn symmetrised(mut self) -> Matrix {
        for i in 0..self.n {
            for j in i + 1..self.n {
                let v = 0.5 * (self.at(i, j) + self.at(j, i));
                self.set(i, j, v);
                self.set(j, i, v);
            }
        }
        self
    }
}

/// Eigenvalues and eigenvectors (`vectors` column k belongs to `values[k]`) of a symmetric
/// matrix by cyclic Jacobi rotations, until the off-diagonal mass is below 1e-15 of the
/// total (or 100 sweeps; Jacobi converges quadratically, ~10 sweeps for n = 64).
pub fn symmetric_eigen(a: &Matrix) -> (Vec<f64>, Matrix) {
    let n = a.n;
    let mut m = a.clone().symmetrised();
    let mut v = Matrix::zeros(n);
    for i in 0..n {
        v.set(i, i, 1.0);
    }
    let total: f64 = m.data.iter().map(|x| x * x).sum();
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| m.at(i, j) * m.at(i, j))
            .sum();
        if off <= 1e-30 * total || off == 0.0 {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = m.at(p, q);
                if apq == 0.0 {
                    continue;
                }
                // The rotation that zeroes m[p][q] (Golub & Van Loan, Algorithm 8.4.1).
                let theta = (m.at(q, q) - m.at(p, p)) / (2.0 * apq);
                let sign = if theta >= 0.0 { 1.0 } else { -1.0 };
                let t = sign / (theta.abs() + (theta * theta + 1.0).sqrt());
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let (mkp, mkq) = (m.at(k, p), m.at(k, q));
                    m.set(k, p, c * mkp - s * mkq);
                    m.set(k, q, s * mkp + c * mkq);
                }
                for k in 0..n {
                    let (mpk, mqk) = (m.at(p, k), m.at(q, k));
                    m.set(p, k, c * mpk - s * mqk);
                    m.set(q, k, s * mpk + c * mqk);
                }
                for k in 0..n {
                    let (vkp, vkq) = (v.at(k, p), v.at(k, q));
                    v.set(k, p, c * vkp - s * vkq);
                    v.set(k, q, s * vkp + c * vkq);
                }
            }
        }
    }
    ((0..n).map(|i| m.at(i, i)).collect(), v)
}

/// The PSD square root V·diag(√max(λ, 0))·Vᵀ of a symmetric positive semi-definite matrix.
pub fn sqrt_psd(a: &Matrix) -> Matrix {
    let (values, v) = symmetric_eigen(a);
    let n = a.n;
    let roots: Vec<f64> = values.iter().map(|&l| l.max(0.0).sqrt()).collect();
    let mut out = Matrix::zeros(n);
    for i in 0..n {
        for j in 0..n {
            out.data[i * n + j] = (0..n).map(|k| v.at(i, k) * roots[k] * v.at(j, k)).sum();
        }
    }
    out
}

/// Mean and covariance (divisor n − 1) of `rows` (each of length `d`).
pub fn mean_cov(rows: &[f64], d: usize) -> (Vec<f64>, Matrix) {
    let n = rows.len() / d;
    let mut mean = vec![0.0; d];
    for r in rows.chunks_exact(d) {
        for (m, x) in mean.iter_mut().zip(r) {
            *m += x;
        }
    }
    mean.iter_mut().for_each(|m| *m /= n as f64);
    let mut cov = Matrix::zeros(d);
    let mut centred = vec![0.0; d];
    for r in rows.chunks_exact(d) {
        for ((c, x), m) in centred.iter_mut().zip(r).zip(&mean) {
            *c = x - m;
        }
        for i in 0..d {
            let ci = centred[i];
            for (acc, cj) in cov.data[i * d + i..(i + 1) * d]
                .iter_mut()
                .zip(&centred[i..])
            {
                *acc += ci * cj;
            }
        }
    }
    let denom = (n.max(2) - 1) as f64;
    for i in 0..d {
        for j in i..d {
            let v = cov.at(i, j) / denom;
            cov.set(i, j, v);
            cov.set(j, i, v);
        }
    }
    (mean, cov)
}

/// Fréchet (2-Wasserstein²) distance between N(μ₁, Σ₁) and N(μ₂, Σ₂) (see the module docs).
pub fn frechet_distance(mu1: &[f64], s1: &Matrix, mu2: &[f64], s2: &Matrix) -> f64 {
    let dmu: f64 = mu1.iter().zip(mu2).map(|(a, b)| (a - b) * (a - b)).sum();
    let r1 = sqrt_psd(s1);
    let m = r1.matmul(s2).matmul(&r1).symmetrised();
    let (values, _) = symmetric_eigen(&m);
    let tr_sqrt: f64 = values.iter().map(|&l| l.max(0.0).sqrt()).sum();
    (dmu + s1.trace() + s2.trace() - 2.0 * tr_sqrt).max(0.0)
}
