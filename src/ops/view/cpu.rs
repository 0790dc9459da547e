//! Reference `copy_into` on the cpu: element `i` of the source (row-major over its
//! layout) goes to element `i` of the destination view, for every dtype (the bits are
//! moved, not converted). Runs of the innermost axis that are contiguous in both layouts
//! are copied as slices.

use crate::device::cpu::CpuBuffer;
use crate::error::{Error, Result};
use crate::ops::cpu_shared::gather;
use crate::tensor::{Layout, Tensor};

fn copy_typed<T: Copy>(src: &[T], sl: &Layout, dst: &mut [T], dl: &Layout) {
    // Gather the source once (borrowed when contiguous), then scatter through `dl`.
    let values = gather(src, sl);
    let rank = dl.shape.rank();
    let inner = if rank == 0 { 1 } else { dl.shape.dim(rank - 1) };
    if rank > 0 && dl.strides[rank - 1] == 1 && inner > 0 {
        // Walk the destination's rows: the first index of each row, then a slice copy.
        let outer = Layout {
            shape: dl.shape.dims()[..rank - 1].to_vec().into(),
            strides: dl.strides[..rank - 1].to_vec(),
            offset: dl.offset,
        };
        for (row, start) in outer.indices().enumerate() {
            dst[start..start + inner].copy_from_slice(&values[row * inner..(row + 1) * inner]);
        }
    } else {
        for (i, d) in dl.indices().enumerate() {
            dst[d] = values[i];
        }
    }
}

pub fn copy_into(src: &Tensor, dst: &Tensor) -> Result<()> {
    let src_buffer = src.cpu_buffer("copy_into")?;
    let mut dst_buffer = dst.cpu_buffer_mut("copy_into")?;
    let (sl, dl) = (src.layout(), dst.layout());
    match (&*src_buffer, &mut *dst_buffer) {
        (CpuBuffer::F32(s), CpuBuffer::F32(d)) => copy_typed(s, sl, d, dl),
        (CpuBuffer::F64(s), CpuBuffer::F64(d)) => copy_typed(s, sl, d, dl),
        (CpuBuffer::F16(s), CpuBuffer::F16(d)) => copy_typed(s, sl, d, dl),
        (CpuBuffer::BF16(s), CpuBuffer::BF16(d)) => copy_typed(s, sl, d, dl),
        (s, d) => {
            return Err(Error::dtype(
                "copy_into",
                format!("source is {}, destination is {}", s.dtype(), d.dtype()),
            ))
        }
    }
    Ok(())
}
