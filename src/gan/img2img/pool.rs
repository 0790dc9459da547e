//! CycleGAN's image pool (Shrivastava et al., 2017): each discriminator is shown a batch
//! drawn from a history of the last generated images rather than only the newest, which
//! damps oscillation.
//!
//! For each image of a batch, in order: while the pool holds fewer than `capacity`
//! images, the image is stored and returned; once full, with probability ½ a uniformly
//! chosen stored image is returned and replaced by the new one, otherwise the new image is
//! returned (the reference's rule). The coin and the index come from a Philox stream
//! (seed, position): image `k` of the run uses words `2k` (coin: swap iff the word's top
//! bit is set) and `2k + 1` (index: `⌊word · capacity / 2^32⌋`). The stored images and the
//! position are the pool's whole state ([`ImagePool::state`] / [`ImagePool::restore`]).

use crate::device::Device;
use crate::error::{Error, Result};
use crate::ops::rng::Philox;
use crate::tensor::Tensor;

pub struct ImagePool {
    capacity: usize,
    seed: u64,
    /// Images offered so far (the stream position is twice this).
    offered: u64,
    /// Stored images, each `[C, H, W]` as f32 on the cpu.
    images: Vec<Vec<f32>>,
}

impl ImagePool {
    pub fn new(capacity: usize, seed: u64) -> ImagePool {
        ImagePool {
            capacity,
            seed,
            offered: 0,
            images: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.images.len()
    }
    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }
    pub fn offered(&self) -> u64 {
        self.offered
    }

    /// Offer `batch` (`[N, C, H, W]`, no gradient needed) and get the batch to show D, on
    /// `batch`'s device.
    pub fn query(&mut self, batch: &Tensor) -> Result<Tensor> {
        if self.capacity == 0 {
            return Ok(batch.detach());
        }
        let dims = batch.dims().to_vec();
        let n = dims[0];
        let per: usize = dims[1..].iter().product();
        let values: Vec<f32> = batch.detach().to_device(&Device::Cpu)?.to_vec()?;
        let rng = Philox::new(self.seed);
        let mut out = Vec::with_capacity(values.len());
        for k in 0..n {
            let image = &values[k * per..(k + 1) * per];
            if self.images.first().is_some_and(|s| s.len() != per) {
                return Err(Error::shape(
                    "image pool",
                    format!(
                        "images of shape {:?} offered to a pool of other images",
                        &dims[1..]
                    ),
                ));
            }
            let pos = 2 * self.offered;
            self.offered += 1;
            if self.images.len() < self.capacity {
                self.images.push(image.to_vec());
                out.extend_from_slice(image);
            } else if rng.word(pos) >> 31 == 1 {
                let j = ((rng.word(pos + 1) as u64 * self.capacity as u64) >> 32) as usize;
                out.extend_from_slice(&self.images[j]);
                self.images[j] = image.to_vec();
            } else {
                out.extend_from_slice(image);
            }
        }
        Tensor::from_vec(out, dims, batch.device())
    }

    /// The stored images as one `[len, C, H, W]` tensor (None when empty) and the number of
    /// images offered so far.
    pub fn state(&self, image_dims: &[usize]) -> Result<(Option<Tensor>, u64)> {
        if self.images.is_empty() {
            return Ok((None, self.offered));
        }
        let mut dims = vec![self.images.len()];
        dims.extend_from_slice(image_dims);
        let t = Tensor::from_vec(self.images.concat(), dims, &Device::Cpu)?;
        Ok((Some(t), self.offered))
    }

    /// Restore what [`ImagePool::state`] returned.
    pub fn restore(&mut self, images: Option<&Tensor>, offered: u64) -> Result<()> {
        self.images.clear();
        if let Some(t) = images {
            let n = t.dims()[0];
            if n > self.capacity {
                return Err(Error::invalid(format!(
                    "the saved pool holds {n} images, more than its capacity {}",
                    self.capacity
                )));
            }
            let v: Vec<f32> = t
                .to_device(&Device::Cpu)?
                .to_dtype(crate::tensor::DType::F32)?
                .to_vec()?;
            let per = v.len() / n.max(1);
            self.images = v.chunks(per.max(1)).map(|c| c.to_vec()).collect();
        }
        self.offered = offered;
        Ok(())
    }
}
