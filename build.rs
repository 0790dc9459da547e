//! Build script: kernels/*.cu → (1) the kernel manifest, (2) PTX via nvcc when nvcc is
//! found, else the sources embedded for NVRTC, (3) the emulator library: the same .cu
//! files compiled by the host C++ compiler, each through a generated wrapper that includes
//! kernels/emu/shim.h first.

use std::env;
use std::fs;
use std::path::PathBuf;

#[path = "build/emu_source.rs"]
mod emu_source;

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

/// Generates `$OUT_DIR/kernel_ptx.rs` (`PTX_FROM_NVCC`, `PTX_ARCH`, `KERNEL_SOURCES`).
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
         /// Every top-level kernels/*.cu, sorted by name.\n\
         pub const KERNEL_SOURCES: &[KernelSource] = &[\n",
        nvcc.is_some()
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
            // NVRTC has no C library headers unless a CUDA include dir is given.
            None if trimmed == "#include <stdint.h>" => out += NVRTC_STDINT,
            None => {
                out += line;
                out.push('\n');
            }
        }
    }
    out
}

/// Replaces `#include <stdint.h>` in the embedded (NVRTC) source.
const NVRTC_STDINT: &str = "#if !defined(__CUDACC_RTC__) || __has_include(<stdint.h>)
#include <stdint.h>
#else
typedef signed char int8_t; typedef unsigned char uint8_t;
typedef short int16_t; typedef unsigned short uint16_t;
typedef int int32_t; typedef unsigned int uint32_t;
typedef long long int64_t; typedef unsigned long long uint64_t;
#endif
";

// ---------------------------------------------------------------------------------------
// Kernel manifest and emulator library. Every kernels/*.cu (product kernels) and
// kernels/emu/*.cu (emulator self-test kernels) is parsed for
// `extern "C" __global__ void [__launch_bounds__(..)] NAME(PARAMS)`; the manifest lists
// them, and each file becomes one C++ translation unit for the host compiler: a wrapper
// that includes kernels/emu/shim.h, then the .cu, then one thunk per kernel that unpacks
// a `void**` argument array.

/// One `extern "C" __global__` entry point: its name and (C type, name) per parameter.
struct KernelSig {
    name: String,
    params: Vec<(String, String)>,
    /// The first `__launch_bounds__` argument (max threads per block), as written.
    launch_bounds: Option<String>,
}

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

/// Removes // and /* */ comments (outside string and char literals), keeping newlines.
fn strip_comments(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i < b.len() && !(b[i] == b'*' && b.get(i + 1) == Some(&b'/')) {
                    if b[i] == b'\n' {
                        out.push(b'\n');
                    }
                    i += 1;
                }
                i += 2;
                out.push(b' ');
            }
            q @ (b'"' | b'\'') => {
                out.push(q);
                i += 1;
                while i < b.len() && b[i] != q {
                    if b[i] == b'\\' && i + 1 < b.len() {
                        out.push(b[i]);
                        i += 1;
                    }
                    out.push(b[i]);
                    i += 1;
                }
                if i < b.len() {
                    out.push(q);
                }
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn is_ident_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Index just past the parenthesis that closes the one at `open`.
fn matching_paren(b: &[u8], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (i, &c) in b.iter().enumerate().skip(open) {
        match c {
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
    }
    None
}

/// Every `__global__` function; each must have the contract's form.
fn parse_entry_points(src: &str) -> Result<Vec<KernelSig>, String> {
    let b = src.as_bytes();
    let mut kernels = Vec::new();
    let mut pos = 0;
    while let Some(found) = src[pos..].find("__global__") {
        let at = pos + found;
        pos = at + "__global__".len();
        let standalone =
            (at == 0 || !is_ident_byte(b[at - 1])) && b.get(pos).is_none_or(|&c| !is_ident_byte(c));
        if !standalone {
            continue;
        }
        let line = src[..at].matches('\n').count() + 1;
        let before = src[..at].trim_end();
        if !before.ends_with("extern \"C\"") {
            return Err(format!(
                "line {line}: a __global__ function must be declared `extern \"C\" __global__ \
                 void NAME(...)` so it can be launched by name"
            ));
        }
        // Tokens up to the parameter list: `void`, optional __launch_bounds__(..), NAME.
        let mut i = pos;
        let mut words = Vec::new();
        let mut launch_bounds = None;
        let params_at = loop {
            while i < b.len() && b[i].is_ascii_whitespace() {
                i += 1;
            }
            if i >= b.len() {
                return Err(format!("line {line}: unterminated kernel declaration"));
            }
            if b[i] == b'(' {
                break i;
            }
            let start = i;
            while i < b.len() && is_ident_byte(b[i]) {
                i += 1;
            }
            if start == i {
                return Err(format!(
                    "line {line}: unexpected '{}' in a kernel declaration",
                    b[i] as char
                ));
            }
            let word = &src[start..i];
            if word == "__launch_bounds__" {
                while i < b.len() && b[i].is_ascii_whitespace() {
                    i += 1;
                }
                let open = i;
                i = matching_paren(b, i)
                    .ok_or_else(|| format!("line {line}: unbalanced __launch_bounds__"))?;
                let inside = &src[open + 1..i - 1];
                launch_bounds = Some(inside.split(',').next().unwrap_or("").trim().to_string());
            } else {
                words.push(word);
            }
        };
        let name = match words.as_slice() {
            ["void", name] => name.to_string(),
            _ => {
                return Err(format!(
                    "line {line}: expected `extern \"C\" __global__ void NAME(...)`, found `{}`",
                    words.join(" ")
                ))
            }
        };
        let close = matching_paren(b, params_at)
            .ok_or_else(|| format!("line {line}: unbalanced parameter list of {name}"))?;
        let params = split_params(&src[params_at + 1..close - 1])
            .map_err(|e| format!("line {line}: kernel {name}: {e}"))?;
        kernels.push(KernelSig {
            name,
            params,
            launch_bounds,
        });
        pos = close;
    }
    Ok(kernels)
}

/// Splits at top-level commas; each parameter is (type, name) = (text minus the last
/// identifier, the last identifier).
fn split_params(list: &str) -> Result<Vec<(String, String)>, String> {
    let list = list.trim();
    if list.is_empty() || list == "void" {
        return Ok(Vec::new());
    }
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in list.char_indices() {
        match c {
            '(' | '<' | '[' => depth += 1,
            ')' | '>' | ']' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&list[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&list[start..]);
    parts
        .into_iter()
        .map(|p| {
            let p = p.split_whitespace().collect::<Vec<_>>().join(" ");
            let name_start = p
                .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .map_or(0, |i| i + 1);
            let (ty, name) = (p[..name_start].trim(), &p[name_start..]);
            if ty.is_empty() || name.is_empty() || name.as_bytes()[0].is_ascii_digit() {
                return Err(format!(
                    "parameter `{p}` needs a type and a name (default values and arrays are not supported)"
                ));
            }
            Ok((ty.to_string(), name.to_string()))
        })
        .collect()
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
