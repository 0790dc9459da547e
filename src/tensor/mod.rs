//! `Tensor`: shared storage + a strided layout + dtype + device. Cloning a tensor is
//! cheap (an `Arc`); views (transpose, narrow, broadcast, reshape of contiguous data)
//! share storage; ops return new tensors.

pub mod dtype;
pub mod shape;
pub mod tape;

pub use dtype::{DType, Element};
pub use shape::{Layout, Shape, MAX_RANK};

use tape::Edge;

use crate::device::cpu::CpuBuffer;
use crate::device::simt::{DeviceBuffer, DevicePtr};
use crate::device::Device;
use crate::error::{Error, Result};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// The memory behind one or more tensors.
#[derive(Debug)]
pub enum Storage {
    Cpu(RwLock<CpuBuffer>),
    Simt(DeviceBuffer),
}

struct Inner {
    storage: Arc<Storage>,
    layout: Layout,
    dtype: DType,
    device: Device,
    /// Where this tensor's gradient goes: nowhere, a leaf's `.grad`, or the tape node
    /// of the op that produced it.
    edge: Edge,
}

#[derive(Clone)]
pub struct Tensor {
    inner: Arc<Inner>,
}

impl Tensor {
    // ---- construction ---------------------------------------------------------------

    #[doc(hidden)]
    /// Wrap existing storage (used by ops to return results).
    pub fn from_storage(
        storage: Arc<Storage>,
        layout: Layout,
        dtype: DType,
        device: Device,
    ) -> Tensor {
        Tensor {
            inner: Arc::new(Inner {
                storage,
                layout,
                dtype,
                device,
                edge: Edge::None,
            }),
        }
    }

    /// The same data with another autograd edge (used by `autograd`).
    pub(crate) fn with_edge(&self, edge: Edge) -> Tensor {
        let i = &self.inner;
        Tensor {
            inner: Arc::new(Inner {
                storage: i.storage.clone(),
                layout: i.layout.clone(),
                dtype: i.dtype,
                device: i.device.clone(),
                edge,
            }),
        }
    }

    pub(crate) fn edge(&self) -> &Edge {
        &self.inner.edge
    }

    /// A contiguous tensor over a fresh cpu buffer.
    pub fn from_cpu_buffer(buffer: CpuBuffer, shape: impl Into<Shape>) -> Result<Tensor> {
        let shape = shape.into();
        if buffer.len() != shape.numel() {
            return Err(Error::shape(
                "from_cpu_buffer",
                format!(
                    "{} values do not fill shape {shape} ({} elements)",
                    buffer.len(),
                    shape.numel()
                ),
            ));
        }
        let dtype = buffer.dtype();
        Ok(Tensor::from_storage(
            Arc::new(Storage::Cpu(RwLock::new(buffer))),
            Layout::contiguous(shape),
            dtype,
            Device::Cpu,
        ))
    }

    #[doc(hidden)]
    /// A contiguous tensor over fresh device memory holding `bytes` (already laid out).
    pub fn from_device_buffer(
        buffer: DeviceBuffer,
        shape: impl Into<Shape>,
        dtype: DType,
        device: &Device,
    ) -> Tensor {
        Tensor::from_storage(
            Arc::new(Storage::Simt(buffer)),
            Layout::contiguous(shape),
            dtype,
            device.clone(),
        )
    }

    /// Copy `data` (row-major) into a new tensor of `shape` on `device`.
    pub fn from_slice<T: Element>(
        data: &[T],
        shape: impl Into<Shape>,
        device: &Device,
    ) -> Result<Tensor> {
        Tensor::from_vec(data.to_vec(), shape, device)
    }

    pub fn from_vec<T: Element>(
        data: Vec<T>,
        shape: impl Into<Shape>,
        device: &Device,
    ) -> Result<Tensor> {
        let buffer = match T::DTYPE {
            DType::F32 => CpuBuffer::F32(bytemuck::cast_vec(data)),
            DType::F64 => CpuBuffer::F64(bytemuck::cast_vec(data)),
            DType::F16 => CpuBuffer::F16(bytemuck::cast_vec(data)),
            DType::BF16 => CpuBuffer::BF16(bytemuck::cast_vec(data)),
        };
        Tensor::from_cpu_buffer(buffer, shape)?.to_device(device)
    }

    pub fn scalar(value: f32, device: &Device) -> Result<Tensor> {
        Tensor::from_vec(vec![value], Shape::scalar(), device)
    }

    // ---- accessors ------------------------------------------------------------------

    pub fn shape(&self) -> &Shape {
        &self.inner.layout.shape
    }
    pub fn dims(&self) -> &[usize] {
        self.inner.layout.shape.dims()
    }
    pub fn rank(&self) -> usize {
        self.shape().rank()
    }
    pub fn numel(&self) -> usize {
        self.shape().numel()
    }
    pub fn dtype(&self) -> DType {
        self.inner.dtype
    }
    pub fn device(&self) -> &Device {
        &self.inner.device
    }
    pub fn layout(&self) -> &Layout {
        &self.inner.layout
    }
    #[doc(hidden)]
    pub fn storage(&self) -> &Arc<Storage> {
        &self.inner.storage
    }
    pub fn is_contiguous(&self) -> bool {
        self.inner.layout.is_contiguous()
    }
    /// True when both tensors view the same memory.
    pub fn shares_storage(&self, other: &Tensor) -> bool {
        Arc::ptr_eq(&self.inner.storage, &other.inner.storage)
    }

    #[doc(hidden)]
    /// Read access to the cpu buffer (the whole storage, not just this view).
    pub fn cpu_buffer(&self, op: &'static str) -> Result<RwLockReadGuard<'_, CpuBuffer>> {
        match &*self.inner.storage {
            Storage::Cpu(lock) => Ok(lock.read().unwrap_or_else(|e| e.into_inner())),
            Storage::Simt(_) => Err(Error::device(
                op,
                format!("expected a cpu tensor, got one on {}", self.device()),
            )),
        }
    }
    #[doc(hidden)]
    /// Write access to the cpu buffer, for in-place updates (optimizers).
    pub fn cpu_buffer_mut(&self, op: &'static str) -> Result<RwLockWriteGuard<'_, CpuBuffer>> {
        match &*self.inner.storage {
            Storage::Cpu(lock) => Ok(lock.write().unwrap_or_else(|e| e.into_inner())),
            Storage::Simt(_) => Err(Error::device(
                op,
                format!("expected a cpu tensor, got one on {}", self.device()),
            )),
        }
    }
    #[doc(hidden)]
    /// Base address of the device storage (the layout's offset is applied by kernels).
    pub fn device_ptr(&self, op: &'static str) -> Result<DevicePtr> {
        match &*self.inner.storage {
            Storage::Simt(buf) => Ok(buf.ptr()),
            Storage::Cpu(_) => Err(Error::device(
                op,
                "expected a cuda/emu tensor, got a cpu one",
            )),
        }
    }

    #[doc(hidden)]
    /// The device address of this view's first element (storage base + offset, in bytes
    /// of the dtype): what a kernel parameter for the tensor takes.
    pub fn view_ptr(&self, op: &'static str) -> Result<DevicePtr> {
        Ok(self.device_ptr(op)?
            + (self.inner.layout.offset * self.inner.dtype.size_in_bytes()) as u64)
    }

    // ---- views ----------------------------------------------------------------------
    // The view methods (reshape, transpose, permute, narrow, broadcast_to, unsqueeze,
    // squeeze, …) live in `ops::view`, where each records its backward rule.

    /// The same storage seen through another layout (no autograd edge): the building
    /// block of the views in `ops::view`.
    pub(crate) fn with_layout(&self, layout: Layout) -> Tensor {
        Tensor::from_storage(
            self.inner.storage.clone(),
            layout,
            self.dtype(),
            self.device().clone(),
        )
    }

    // ---- copies ---------------------------------------------------------------------

    /// Copy to `device` (self when already there).
    pub fn to_device(&self, device: &Device) -> Result<Tensor> {
        if self.device().same(device) {
            return Ok(self.clone());
        }
        let src = self.contiguous()?;
        let bytes = src.host_bytes()?;
        match device.simt() {
            None => {
                let mut buffer = CpuBuffer::zeros(self.dtype(), self.numel());
                buffer.as_bytes_mut().copy_from_slice(&bytes);
                Tensor::from_cpu_buffer(buffer, self.shape().clone())
            }
            Some(simt) => {
                let buffer = simt.alloc(bytes.len())?;
                simt.runtime().copy_to_device(buffer.ptr(), &bytes)?;
                Ok(Tensor::from_device_buffer(
                    buffer,
                    self.shape().clone(),
                    self.dtype(),
                    device,
                ))
            }
        }
    }

    /// The raw bytes of a contiguous tensor with offset 0, copied to the host.
    fn host_bytes(&self) -> Result<Vec<u8>> {
        debug_assert!(self.is_contiguous() && self.layout().offset == 0);
        let len = self.numel() * self.dtype().size_in_bytes();
        match &*self.inner.storage {
            Storage::Cpu(lock) => {
                let buffer = lock.read().unwrap_or_else(|e| e.into_inner());
                Ok(buffer.as_bytes()[..len].to_vec())
            }
            Storage::Simt(buf) => {
                let mut out = vec![0u8; len];
                buf.runtime().copy_to_host(buf.ptr(), &mut out)?;
                Ok(out)
            }
        }
    }

    /// The elements in row-major order, copied to the host. `T` must match the dtype.
    pub fn to_vec<T: Element>(&self) -> Result<Vec<T>> {
        if T::DTYPE != self.dtype() {
            return Err(Error::dtype(
                "to_vec",
                format!(
                    "tensor holds {} but {} was asked for; convert with .to_dtype(..) first",
                    self.dtype(),
                    T::DTYPE
                ),
            ));
        }
        let bytes = self.contiguous()?.host_bytes()?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }

    /// The elements as f64, whatever the dtype (for tests and printing).
    pub fn to_f64_vec(&self) -> Result<Vec<f64>> {
        Ok(match self.dtype() {
            DType::F32 => self.to_vec::<f32>()?.into_iter().map(f64::from).collect(),
            DType::F64 => self.to_vec::<f64>()?,
            DType::F16 => self
                .to_vec::<half::f16>()?
                .into_iter()
                .map(f64::from)
                .collect(),
            DType::BF16 => self
                .to_vec::<half::bf16>()?
                .into_iter()
                .map(f64::from)
                .collect(),
        })
    }

    /// The single value of a one-element tensor.
    pub fn item(&self) -> Result<f64> {
        if self.numel() != 1 {
            return Err(Error::shape(
                "item",
                format!(
                    "item() needs one element, the tensor has shape {}",
                    self.shape()
                ),
            ));
        }
        Ok(self.to_f64_vec()?[0])
    }
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Tensor({} {} on {})",
            self.shape(),
            self.dtype(),
            self.device()
        )
    }
}
