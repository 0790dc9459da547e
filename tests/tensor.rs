//! The tensor layer on cpu: creation, views (transpose, permute, narrow, broadcast,
//! reshape, squeeze), copies, dtype checks and error messages. Expected values are
//! written out by hand.

use duel::{DType, Device, Shape, Tensor};

fn t(data: &[f32], shape: &[usize]) -> Tensor {
    Tensor::from_slice(data, shape, &Device::Cpu).unwrap()
}

#[test]
fn tensor_from_slice_round_trips_and_reports_shape() {
    let x = t(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    assert_eq!(x.dims(), &[2, 3]);
    assert_eq!(x.rank(), 2);
    assert_eq!(x.numel(), 6);
    assert_eq!(x.dtype(), DType::F32);
    assert!(x.is_contiguous());
    assert_eq!(
        x.to_vec::<f32>().unwrap(),
        vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    );
}

#[test]
fn tensor_from_slice_rejects_a_wrong_length() {
    let err = Tensor::from_slice(&[1.0f32, 2.0, 3.0], [2, 2], &Device::Cpu).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("3 values") && msg.contains("[2, 2]"), "{msg}");
}

#[test]
fn tensor_to_vec_checks_the_dtype() {
    let x = t(&[1.0], &[1]);
    let msg = x.to_vec::<f64>().unwrap_err().to_string();
    assert!(
        msg.contains("f32") && msg.contains("f64") && msg.contains("to_dtype"),
        "{msg}"
    );
    assert_eq!(x.to_f64_vec().unwrap(), vec![1.0]);
}

#[test]
fn tensor_scalar_and_item() {
    let s = Tensor::scalar(2.5, &Device::Cpu).unwrap();
    assert_eq!(s.rank(), 0);
    assert_eq!(s.numel(), 1);
    assert_eq!(s.item().unwrap(), 2.5);
    let msg = t(&[1.0, 2.0], &[2]).item().unwrap_err().to_string();
    assert!(msg.contains("[2]"), "{msg}");
}

#[test]
fn tensor_transpose_is_a_view_with_swapped_strides() {
    let x = t(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    let y = x.t().unwrap();
    assert_eq!(y.dims(), &[3, 2]);
    assert!(y.shares_storage(&x));
    assert!(!y.is_contiguous());
    assert_eq!(y.layout().strides, vec![1, 3]);
    assert_eq!(
        y.to_vec::<f32>().unwrap(),
        vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]
    );
    let c = y.contiguous().unwrap();
    assert!(c.is_contiguous() && !c.shares_storage(&x));
    assert_eq!(
        c.to_vec::<f32>().unwrap(),
        vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]
    );
}

#[test]
fn tensor_permute_nchw_to_nhwc() {
    // x[n][c][h][w] = 1000n + 100c + 10h + w for shape [1, 2, 2, 2]
    let data: Vec<f32> = (0..8)
        .map(|i| (100 * (i / 4) + 10 * ((i / 2) % 2) + i % 2) as f32)
        .collect();
    let x = t(&data, &[1, 2, 2, 2]);
    let y = x.permute(&[0, 2, 3, 1]).unwrap();
    assert_eq!(y.dims(), &[1, 2, 2, 2]);
    assert_eq!(
        y.to_vec::<f32>().unwrap(),
        vec![0.0, 100.0, 1.0, 101.0, 10.0, 110.0, 11.0, 111.0]
    );
    let msg = x.permute(&[0, 1, 1, 2]).unwrap_err().to_string();
    assert!(msg.contains("not a permutation"), "{msg}");
}

#[test]
fn tensor_narrow_selects_a_window_without_copying() {
    let x = t(&(0..20).map(|v| v as f32).collect::<Vec<_>>(), &[4, 5]);
    let rows = x.narrow(0, 1, 2).unwrap();
    assert!(rows.shares_storage(&x) && rows.is_contiguous());
    assert_eq!(
        rows.to_vec::<f32>().unwrap(),
        vec![5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0]
    );
    let cols = x.narrow(-1, 3, 2).unwrap();
    assert_eq!(
        cols.to_vec::<f32>().unwrap(),
        vec![3.0, 4.0, 8.0, 9.0, 13.0, 14.0, 18.0, 19.0]
    );
    let empty = x.narrow(1, 5, 0).unwrap();
    assert_eq!(empty.dims(), &[4, 0]);
    assert_eq!(empty.to_vec::<f32>().unwrap(), Vec::<f32>::new());
    let msg = x.narrow(1, 4, 2).unwrap_err().to_string();
    assert!(msg.contains("4..6") && msg.contains("[4, 5]"), "{msg}");
}

#[test]
fn tensor_broadcast_to_repeats_with_zero_strides() {
    let x = t(&[1.0, 2.0, 3.0], &[3]);
    let y = x.broadcast_to([2, 3]).unwrap();
    assert_eq!(y.layout().strides, vec![0, 1]);
    assert_eq!(
        y.to_vec::<f32>().unwrap(),
        vec![1.0, 2.0, 3.0, 1.0, 2.0, 3.0]
    );
    let col = t(&[1.0, 2.0], &[2, 1]).broadcast_to([2, 3]).unwrap();
    assert_eq!(
        col.to_vec::<f32>().unwrap(),
        vec![1.0, 1.0, 1.0, 2.0, 2.0, 2.0]
    );
    let msg = x.broadcast_to([2, 4]).unwrap_err().to_string();
    assert!(msg.contains("[3]") && msg.contains("[2, 4]"), "{msg}");
}

#[test]
fn tensor_reshape_views_contiguous_data_and_copies_strided_data() {
    let x = t(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    let r = x.reshape([3, 2]).unwrap();
    assert!(r.shares_storage(&x));
    assert_eq!(r.dims(), &[3, 2]);
    let rt = x.t().unwrap().reshape([6]).unwrap();
    assert!(!rt.shares_storage(&x));
    assert_eq!(
        rt.to_vec::<f32>().unwrap(),
        vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]
    );
    let msg = x.reshape([4, 2]).unwrap_err().to_string();
    assert!(msg.contains("[2, 3]") && msg.contains("[4, 2]"), "{msg}");
}

#[test]
fn tensor_unsqueeze_and_squeeze() {
    let x = t(&[1.0, 2.0, 3.0], &[3]);
    let a = x.unsqueeze(0).unwrap();
    assert_eq!(a.dims(), &[1, 3]);
    let b = x.unsqueeze(1).unwrap();
    assert_eq!(b.dims(), &[3, 1]);
    assert_eq!(b.squeeze(1).unwrap().dims(), &[3]);
    assert_eq!(b.to_vec::<f32>().unwrap(), vec![1.0, 2.0, 3.0]);
    assert!(x.unsqueeze(2).is_err());
    let msg = b.squeeze(0).unwrap_err().to_string();
    assert!(msg.contains("size 3"), "{msg}");
}

#[test]
fn tensor_axis_errors_name_the_shape() {
    let x = t(&[1.0, 2.0], &[1, 2]);
    let msg = x.transpose(0, 2).unwrap_err().to_string();
    assert!(msg.contains("axis 2") && msg.contains("[1, 2]"), "{msg}");
    assert_eq!(x.transpose(-1, -2).unwrap().dims(), &[2, 1]);
}

#[test]
fn tensor_creation_helpers() {
    let z = Tensor::zeros([2, 2], DType::F32, &Device::Cpu).unwrap();
    assert_eq!(z.to_vec::<f32>().unwrap(), vec![0.0; 4]);
    let o = Tensor::ones([3], DType::F64, &Device::Cpu).unwrap();
    assert_eq!(o.to_vec::<f64>().unwrap(), vec![1.0; 3]);
    let f = Tensor::full([2], -1.5, DType::F16, &Device::Cpu).unwrap();
    assert_eq!(f.to_f64_vec().unwrap(), vec![-1.5, -1.5]);
    let a = Tensor::arange(0.0, 1.0, 0.25, DType::F32, &Device::Cpu).unwrap();
    assert_eq!(a.to_vec::<f32>().unwrap(), vec![0.0, 0.25, 0.5, 0.75]);
    assert_eq!(
        Tensor::zeros([0, 4], DType::F32, &Device::Cpu)
            .unwrap()
            .numel(),
        0
    );
    assert_eq!(Shape::new([0, 4]).numel(), 0);
}

#[test]
fn tensor_f16_and_bf16_storage_round_trip() {
    let x = t(&[1.0, -2.5, 65504.0, 1e-8], &[4]);
    let h = x.to_dtype(DType::F16).unwrap();
    assert_eq!(h.dtype(), DType::F16);
    // 1e-8 is below f16's smallest subnormal (~5.96e-8) and rounds to 0.
    assert_eq!(h.to_f64_vec().unwrap(), vec![1.0, -2.5, 65504.0, 0.0]);
    let b = x.to_dtype(DType::BF16).unwrap();
    // bf16 keeps 8 significant bits: 65504 rounds to 65536.
    assert_eq!(
        b.to_dtype(DType::F32).unwrap().to_vec::<f32>().unwrap()[..3],
        [1.0, -2.5, 65536.0]
    );
}

#[test]
fn device_parse_accepts_the_documented_names() {
    assert!(Device::parse("cpu").unwrap().is_cpu());
    let gpu = Device::cuda(0).is_ok();
    assert_eq!(
        Device::parse("auto").unwrap().is_cpu(),
        !gpu,
        "auto picks cuda exactly when one works"
    );
    let msg = Device::parse("tpu").unwrap_err().to_string();
    assert!(
        msg.contains("'tpu'") && msg.contains("cpu, cuda, cuda:N, emu or auto"),
        "{msg}"
    );
    assert!(Device::parse("cuda:x").is_err());
}
