//! The `cuda` device on machines without a GPU: clear errors, never a panic.
//! On a GPU machine these tests check the other side: the device opens.

use duel::device::cuda;
use duel::Device;

fn has_gpu() -> bool {
    cuda::probe().is_ok_and(|gpus| !gpus.is_empty())
}

#[test]
fn cuda_device_without_gpu_is_a_clear_error() {
    let result = std::panic::catch_unwind(|| Device::cuda(0).map(|d| d.to_string()));
    let result = result.expect("Device::cuda(0) panicked");
    if has_gpu() {
        assert_eq!(result.unwrap(), "cuda:0");
        return;
    }
    let msg = result.unwrap_err().to_string();
    assert!(
        msg.contains("use --device cpu"),
        "message should say what to do instead: {msg}"
    );
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        assert_eq!(msg, "CUDA driver not found (libcuda.so); use --device cpu");
    }
}

#[test]
fn cuda_parse_ordinal_without_gpu_is_an_error() {
    let result = std::panic::catch_unwind(|| Device::parse("cuda:1").map(|d| d.to_string()));
    let result = result.expect("Device::parse(\"cuda:1\") panicked");
    match cuda::probe() {
        Ok(gpus) if gpus.len() > 1 => assert_eq!(result.unwrap(), "cuda:1"),
        Ok(gpus) if gpus.len() == 1 => {
            let msg = result.unwrap_err().to_string();
            assert!(msg.contains("1 GPU found"), "{msg}");
        }
        _ => assert!(result.unwrap_err().to_string().contains("--device cpu")),
    }
}

#[test]
fn cuda_auto_falls_back_to_cpu_without_gpu() {
    let device = Device::parse("auto").expect("auto never fails");
    if has_gpu() {
        assert_eq!(device.to_string(), "cuda:0");
    } else {
        assert!(device.is_cpu(), "auto picked {device} with no GPU");
    }
}

#[test]
fn cuda_probe_without_driver_explains_why() {
    if unsafe { cudarc::driver::sys::is_culib_present() } {
        return; // a driver is installed: probe's answer depends on the machine
    }
    let why = cuda::probe().unwrap_err();
    assert!(why.contains("CUDA driver not found"), "{why}");
}

#[test]
fn cuda_kernel_sources_are_embedded() {
    // Every top-level kernels/*.cu is embedded with its includes inlined, for NVRTC.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("kernels");
    let mut on_disk: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "cu"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let embedded: Vec<String> = duel::kernels::KERNEL_SOURCES
        .iter()
        .map(|k| k.file.to_string())
        .collect();
    assert_eq!(embedded, on_disk);
    for k in duel::kernels::KERNEL_SOURCES {
        assert!(
            !k.source.contains("#include \""),
            "{}: include left",
            k.file
        );
        assert_eq!(k.ptx.is_some(), duel::kernels::PTX_FROM_NVCC, "{}", k.file);
        if let Some(ptx) = k.ptx {
            assert!(ptx.contains(".entry"), "{}: PTX has no entry", k.file);
        }
    }
}
