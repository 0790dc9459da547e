//! Build script: kernels/*.cu → (1) the kernel manifest, (2) PTX via nvcc when nvcc is
//! found, else the sources embedded for NVRTC, (3) the emulator library: the same .cu
//! files compiled by the host C++ compiler, each through a generated wrapper that includes
//! kernels/emu/shim.h first.

use std::env;
use std::fs;
use std::path::PathBuf;

#[path = "build/emu_source.rs"]
mod emu_source;
#[path = "build/kernel_sigs.rs"]
mod kernel_sigs;

use kernel_sigs::{parse_entry_points, strip_comments, KernelSig};

fn main() {
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    println!("cargo:rerun-if-changed=kernels");
    println!("cargo:rerun-if-changed=build.rs");
    let files = parse_kernels();
    write_manifest(&out, &files);
    build_emulator(&out, &files);
    compile_ptx(&out);
}

// ---------------------------------------------------------------------------------------
// nvcc → PTX. Finds nvcc (DUEL_NVCC, CUDA_PATH/bin, PATH), compiles every top-level
// kernels/*.cu to PTX for CUDA_COMPUTE_CAP (default 80) and writes $OUT_DIR/kernel_ptx.rs.
// Without nvcc: one cargo warning, and only the sources (with local #includes inlined) are
// embedded, for NVRTC at first use on a GPU. An nvcc error fails the build with its output.

/// Generates `$OUT_DIR/kernel_ptx.rs` (`PTX_FROM_NVCC`, `PTX_ARCH`, `NVCC`, `KERNEL_SOURCES`).
fn compile_ptx(out: &std::path::Path) {
    let kernels = std::path::Path::new(&env::var("CARGO_MANIFEST_DIR").unwrap()).join("kernels");
    for var in ["DUEL_NVCC", "CUDA_PATH", "CUDA_COMPUTE_CAP", "PATH"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    println!("cargo:rerun-if-changed={}", kernels.display());
    let mut files: Vec<PathBuf> = fs::read_dir(&kernels)
        .map(|dir| dir.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.retain(|p| p.is_file() && p.extension().is_some_and(|e| e == "cu"));
    files.sort();
    for entry in fs::read_dir(&kernels).into_iter().flatten().flatten() {
        if entry.path().is_file() {
            println!("cargo:rerun-if-changed={}", entry.path().display());
        }
    }

    let arch = ptx_arch();
    let nvcc = find_nvcc();
    if nvcc.is_none() {
        println!(
            "cargo:warning=nvcc not found (set DUEL_NVCC or CUDA_PATH, or run \
             scripts/install-cuda-compiler.sh); embedding kernel sources for NVRTC instead"
        );
    }
    let src_dir = out.join("kernel_src");
    let ptx_dir = out.join("kernel_ptx");
    let _ = fs::remove_dir_all(&ptx_dir); // no stale PTX from a kernel since removed
    fs::create_dir_all(&src_dir).unwrap();
    fs::create_dir_all(&ptx_dir).unwrap();

    // One nvcc per kernel file, in parallel; collect failures and report them all.
    let results: Vec<Result<Option<PathBuf>, String>> = std::thread::scope(|scope| {
        let jobs: Vec<_> = files
            .iter()
            .map(|file| {
                let (nvcc, arch, kernels, ptx_dir) = (&nvcc, &arch, &kernels, &ptx_dir);
                scope.spawn(move || match nvcc {
                    None => Ok(None),
                    Some(nvcc) => run_nvcc(nvcc, arch, kernels, file, ptx_dir).map(Some),
                })
            })
            .collect();
        jobs.into_iter().map(|j| j.join().unwrap()).collect()
    });
    let failures: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    if !failures.is_empty() {
        for failure in failures {
            eprintln!("{failure}");
        }
        eprintln!("error: nvcc failed to compile kernels (see above)");
        std::process::exit(1);
    }

    let mut code = String::from(
        "/// One kernel file (`kernels/<file>.cu`): its PTX when nvcc ran at build time, and\n\
         /// its source with local `#include`s inlined, for NVRTC.\n\
         #[derive(Clone, Copy, Debug)]\n\
         pub struct KernelSource {\n    \
             /// File stem, e.g. \"elementwise\".\n    pub file: &'static str,\n    \
             /// PTX from nvcc for [`PTX_ARCH`], if nvcc was found.\n    \
             pub ptx: Option<&'static str>,\n    \
             /// The .cu source with `#include \"...\"` inlined.\n    \
             pub source: &'static str,\n}\n",
    );
    code += &format!(
        "/// True when nvcc compiled the kernels to PTX at build time.\n\
         pub const PTX_FROM_NVCC: bool = {};\n\
         /// The virtual architecture the PTX targets (from CUDA_COMPUTE_CAP).\n\
         pub const PTX_ARCH: &str = {arch:?};\n\
         /// The nvcc that compiled the PTX (`duel devices --nvcc`; scripts/check-kernels.sh).\n\
         pub const NVCC: Option<&str> = {nvcc_path};\n\
         /// Every top-level kernels/*.cu, sorted by name.\n\
         pub const KERNEL_SOURCES: &[KernelSource] = &[\n",
        nvcc.is_some(),
        nvcc_path = match &nvcc {
            Some(p) => format!("Some({:?})", p.display().to_string()),
            None => "None".to_string(),
        }
    );
    for (file, ptx) in files.iter().zip(&results) {
        let stem = file.file_stem().unwrap().to_string_lossy().into_owned();
        let mut included = Vec::new();
        let source = inline_includes(file, &kernels, &mut included);
        let src_path = src_dir.join(format!("{stem}.cu"));
        fs::write(&src_path, source).unwrap();
        let ptx = match ptx {
            Ok(Some(p)) => format!("Some(include_str!({:?}))", p.display().to_string()),
            _ => "None".to_string(),
        };
        code += &format!(
            "    KernelSource {{ file: {stem:?}, ptx: {ptx}, source: include_str!({:?}) }},\n",
            src_path.display().to_string()
        );
    }
    code += "];\n";
    fs::write(out.join("kernel_ptx.rs"), code).unwrap();
}

/// `compute_XY` from CUDA_COMPUTE_CAP ("80", "sm_80", "compute_80", "8.0"); default 80.
fn ptx_arch() -> String {
    let raw = env::var("CUDA_COMPUTE_CAP").unwrap_or_default();
    let raw = raw.trim();
    let digits = raw
        .strip_prefix("compute_")
        .or_else(|| raw.strip_prefix("sm_"))
        .unwrap_or(raw)
        .replace('.', "");
    if digits.is_empty() {
        return "compute_80".to_string();
    }
    if digits.len() < 2 || !digits.chars().all(|c| c.is_ascii_alphanumeric()) {
        eprintln!("error: CUDA_COMPUTE_CAP={raw:?} is not a compute capability such as 80, sm_80 or compute_80");
        std::process::exit(1);
    }
    format!("compute_{digits}")
}

/// DUEL_NVCC, then CUDA_PATH/bin/nvcc, then nvcc on PATH.
fn find_nvcc() -> Option<PathBuf> {
    let exe = if cfg!(windows) { "nvcc.exe" } else { "nvcc" };
    let explicit = env::var_os("DUEL_NVCC")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    let cuda_path = env::var_os("CUDA_PATH")
        .filter(|v| !v.is_empty())
        .map(|p| PathBuf::from(p).join("bin").join(exe));
    let on_path = env::var_os("PATH")
        .map(|p| {
            env::split_paths(&p)
                .map(|d| d.join(exe))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    explicit
        .into_iter()
        .chain(cuda_path)
        .chain(on_path)
        .find(|p| p.is_file())
}

/// nvcc --ptx for one file; Err carries nvcc's full output.
fn run_nvcc(
    nvcc: &std::path::Path,
    arch: &str,
    kernels: &std::path::Path,
    file: &std::path::Path,
    ptx_dir: &std::path::Path,
) -> Result<PathBuf, String> {
    let stem = file.file_stem().unwrap().to_string_lossy().into_owned();
    let ptx = ptx_dir.join(format!("{stem}.ptx"));
    let mut cmd = std::process::Command::new(nvcc);
    cmd.arg("--ptx")
        .arg(format!("--gpu-architecture={arch}"))
        .args(["-O3", "--std=c++17", "-I"])
        .arg(kernels)
        .arg("-o")
        .arg(&ptx)
        .arg(file);
    let output = cmd
        .output()
        .map_err(|e| format!("error: could not run {}: {e}", nvcc.display()))?;
    if !output.status.success() {
        return Err(format!(
            "error: nvcc failed on {} ({}):\n{:?}\n{}{}",
            file.display(),
            output.status,
            cmd,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(ptx)
}

/// The source of `file` with every `#include "x"` found in kernels/ inlined once.
fn inline_includes(
    file: &std::path::Path,
    kernels: &std::path::Path,
    included: &mut Vec<PathBuf>,
) -> String {
    let text =
        fs::read_to_string(file).unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let trimmed = line.trim();
        let local = trimmed
            .strip_prefix("#include")
            .map(str::trim)
            .and_then(|r| r.strip_prefix('"'))
            .and_then(|r| r.split('"').next())
            .map(|name| kernels.join(name))
            .filter(|p| p.is_file());
        match local {
            Some(path) if included.contains(&path) => {}
            Some(path) => {
                included.push(path.clone());
                out += &format!(
                    "// ---- begin {} ----\n",
                    path.file_name().unwrap().to_string_lossy()
                );
                out += &inline_includes(&path, kernels, included);
                out += &format!(
                    "// ---- end {} ----\n",
                    path.file_name().unwrap().to_string_lossy()
                );
            }
            None if trimmed == "#pragma once" => {}
            None => {
                out += line;
                out.push('\n');
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Kernel manifest and emulator library. Every kernels/*.cu (product kernels) and
// kernels/emu/*.cu (emulator self-test kernels) is parsed for
// `extern "C" __global__ void [__launch_bounds__(..)] NAME(PARAMS)`; the manifest lists
// them, and each file becomes one C++ translation unit for the host compiler: a wrapper
// that includes kernels/emu/shim.h, then the .cu, then one thunk per kernel that unpacks
// a `void**` argument array.

/// One .cu file and its entry points.
struct KernelFile {
    path: PathBuf,
    stem: String,
    /// False for kernels/emu/*.cu: compiled into the emulator only, never by nvcc.
    product: bool,
    kernels: Vec<KernelSig>,
}

/// Parses kernels/*.cu and kernels/emu/*.cu; a malformed entry point fails the build.
fn parse_kernels() -> Vec<KernelFile> {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap()).join("kernels");
    let mut files = Vec::new();
    for (dir, product) in [(root.clone(), true), (root.join("emu"), false)] {
        let mut paths: Vec<PathBuf> = fs::read_dir(&dir)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        paths.retain(|p| p.is_file() && p.extension().is_some_and(|e| e == "cu"));
        paths.sort();
        for path in paths {
            let text = fs::read_to_string(&path)
                .unwrap_or_else(|e| build_error(&format!("cannot read {}: {e}", path.display())));
            let kernels = parse_entry_points(&strip_comments(&text))
                .unwrap_or_else(|e| build_error(&format!("{}: {e}", path.display())));
            let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
            files.push(KernelFile {
                path,
                stem,
                product,
                kernels,
            });
        }
    }
    let mut seen = std::collections::HashMap::new();
    for f in &files {
        for k in &f.kernels {
            if let Some(other) = seen.insert(k.name.clone(), f.path.clone()) {
                build_error(&format!(
                    "kernel {} is defined in both {} and {}",
                    k.name,
                    other.display(),
                    f.path.display()
                ));
            }
        }
    }
    files
}

fn build_error(msg: &str) -> ! {
    eprintln!("error: {msg}");
    std::process::exit(1)
}

/// `$OUT_DIR/kernel_manifest.rs`: `KernelInfo` and `KERNELS`, in file then source order.
fn write_manifest(out: &std::path::Path, files: &[KernelFile]) {
    let mut code = String::from(
        "/// One `extern \"C\" __global__` entry point found in kernels/ by build.rs.\n\
         #[derive(Clone, Copy, Debug, PartialEq, Eq)]\n\
         pub struct KernelInfo {\n    \
             /// The `extern \"C\"` name, used to launch it.\n    pub name: &'static str,\n    \
             /// File stem: \"elementwise\" for kernels/elementwise.cu.\n    pub file: &'static str,\n    \
             /// Parameter C types as written (e.g. `const float* __restrict__`).\n    \
             pub params: &'static [&'static str],\n    \
             /// False for emulator self-test kernels (kernels/emu/*.cu), which nvcc never sees.\n    \
             pub product: bool,\n}\n\
         /// Every kernel, product files sorted by name first, then the self-test kernels.\n\
         pub const KERNELS: &[KernelInfo] = &[\n",
    );
    for f in files {
        for k in &f.kernels {
            let params: Vec<String> = k.params.iter().map(|(t, _)| format!("{t:?}")).collect();
            code += &format!(
                "    KernelInfo {{ name: {:?}, file: {:?}, params: &[{}], product: {} }},\n",
                k.name,
                f.stem,
                params.join(", "),
                f.product
            );
        }
    }
    code += "];\n";
    fs::write(out.join("kernel_manifest.rs"), code).unwrap();
}

/// Compiles every .cu (one translation unit each, so `static` helpers in different files
/// may share names), the generated kernel registry and kernels/emu/runtime.cpp into the
/// static library `duel_emu`. A C++ error in any kernel fails the build with its message.
/// Kernels are compiled with checked memory accesses (see `checked_kernel_flags`); the
/// runtime is not.
fn build_emulator(out: &std::path::Path, files: &[KernelFile]) {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap()).join("kernels");
    let gen = out.join("emu");
    fs::create_dir_all(gen.join("src")).unwrap();
    let mut sources = Vec::new();
    let mut registry = String::from("// Generated by build.rs.\n#include \"emu/runtime.h\"\n");
    let mut entries = String::new();
    for f in files {
        let prefix = if f.product { "" } else { "emu_" };
        let text = fs::read_to_string(&f.path)
            .unwrap_or_else(|e| build_error(&format!("cannot read {}: {e}", f.path.display())));
        let source = emu_source::rewrite_static_shared(
            &f.path.display().to_string(),
            &text,
            &strip_comments(&text),
        )
        .unwrap_or_else(|e| build_error(&format!("{}: {e}", f.path.display())));
        let source_path = gen.join("src").join(format!("{prefix}{}.cu", f.stem));
        write_if_changed(&source_path, &source);
        let mut cpp = format!(
            "// Generated by build.rs from {}.\n#include \"emu/shim.h\"\n#include \"{}\"\n",
            f.path.display(),
            source_path.display()
        );
        for k in &f.kernels {
            let n = &k.name;
            let args: Vec<String> = k
                .params
                .iter()
                .enumerate()
                .map(|(i, (t, _))| format!("*({t}*)a[{i}]"))
                .collect();
            let sizes: Vec<String> = k
                .params
                .iter()
                .map(|(t, _)| format!("sizeof({t})"))
                .collect();
            let names: Vec<String> = k
                .params
                .iter()
                .map(|(t, name)| format!("{:?}", format!("{t} {name}")))
                .collect();
            let or_zero = |v: Vec<String>, zero: &str| {
                if v.is_empty() {
                    zero.to_string()
                } else {
                    v.join(", ")
                }
            };
            // The thunk reads the launch's argument array (host memory): not a kernel access.
            cpp += &format!(
                "extern \"C\" __attribute__((no_sanitize_address)) void duel_thunk_{n}(void** a) {{ (void)a; {n}({}); }}\n\
                 extern \"C\" const size_t duel_sizes_{n}[] = {{{}}};\n\
                 extern \"C\" const char* const duel_names_{n}[] = {{{}}};\n\
                 extern \"C\" const unsigned duel_bounds_{n} = {};\n",
                args.join(", "),
                or_zero(sizes, "0"),
                or_zero(names, "nullptr"),
                k.launch_bounds.as_deref().unwrap_or("0"),
            );
            registry += &format!(
                "extern \"C\" void duel_thunk_{n}(void**);\nextern \"C\" const size_t duel_sizes_{n}[];\n\
                 extern \"C\" const char* const duel_names_{n}[];\nextern \"C\" const unsigned duel_bounds_{n};\n"
            );
            entries += &format!(
                "    {{\"{n}\", duel_thunk_{n}, duel_sizes_{n}, duel_names_{n}, {}, &duel_bounds_{n}}},\n",
                k.params.len()
            );
        }
        let path = gen.join(format!("{prefix}{}.cpp", f.stem));
        write_if_changed(&path, &cpp);
        sources.push(path);
    }
    let count = files.iter().map(|f| f.kernels.len()).sum::<usize>();
    registry += &format!(
        "extern \"C\" const DuelEmuKernel duel_emu_registry[] = {{\n{entries}    {{nullptr, nullptr, nullptr, nullptr, 0, nullptr}},\n}};\n\
         extern \"C\" const size_t duel_emu_registry_len = {count};\n"
    );
    let registry_path = gen.join("registry.cpp");
    write_if_changed(&registry_path, &registry);
    sources.push(registry_path);

    let base = || {
        let mut build = cc::Build::new();
        build
            .cpp(true)
            .std("c++17")
            // Tests run kernels: an unoptimised emulator would make the parity suite crawl.
            .opt_level(2)
            .define("DUEL_EMU", "1")
            .include(&root)
            .include(root.join("emu"))
            .warnings(true)
            .extra_warnings(false)
            // `#pragma unroll` is for nvcc; gcc ignores it.
            .flag_if_supported("-Wno-unknown-pragmas")
            // nvcc never contracts __fmul_rn/__fadd_rn into an FMA; the host compiler must not
            // either (on FMA targets it would), or results like the Philox normals would stop
            // matching the cpu backend bit for bit.
            .flag("-ffp-contract=off");
        build
    };
    let runtime = base()
        .file(root.join("emu").join("runtime.cpp"))
        .file(root.join("emu").join("checks.cpp"))
        .try_compile_intermediates()
        .unwrap_or_else(|e| build_error(&format!("the emulator runtime did not compile: {e}")));
    let mut build = base();
    for flag in checked_kernel_flags() {
        build.flag(flag);
    }
    build.files(&sources).objects(&runtime);
    if let Err(e) = build.try_compile("duel_emu") {
        build_error(&format!(
            "the emulator could not compile kernels (compiler output above): {e}"
        ));
    }
}

/// How kernels are compiled for the emulator so it catches what a GPU would fault on,
/// with no sanitizer runtime library (kernels/emu/runtime.cpp implements the hooks):
/// - every load and store calls `__asan_{load,store}N_noabort(addr)` (the kernel flavour
///   of AddressSanitizer, out of line, no shadow memory, no stack or global redzones):
///   the runtime checks the address against the launch's buffers, shared memory and the
///   thread's stack, and records it for race detection;
/// - every access through a pointer checks the pointer's alignment for its type and calls
///   `__ubsan_handle_type_mismatch_v1` when it is misaligned (x86 would not fault);
/// - no auto-vectorisation: the host compiler would merge scalar accesses into wider
///   ones the kernel never made, and the alignment and race checks see what the source
///   does.
fn checked_kernel_flags() -> [&'static str; 8] {
    [
        "-fsanitize=kernel-address",
        "-fsanitize-recover=kernel-address",
        "--param=asan-instrumentation-with-call-threshold=0",
        "--param=asan-stack=0",
        "--param=asan-globals=0",
        "-fsanitize=alignment",
        "-fno-tree-vectorize",
        "-fno-tree-slp-vectorize",
    ]
}

/// Keeps generated sources' mtimes stable so unchanged inputs are not recompiled.
fn write_if_changed(path: &std::path::Path, text: &str) {
    if fs::read_to_string(path).ok().as_deref() != Some(text) {
        fs::write(path, text).unwrap();
    }
}
