//! The kernel-signature parser of build.rs: finds every
//! `extern "C" __global__ void [__launch_bounds__(..)] NAME(PARAMS)` in a .cu source so the
//! manifest and the emulator's launch thunks can be generated. Kept free of I/O so the
//! unit tests at the bottom run as an ordinary test binary (tests/build_scripts.rs).

/// One `extern "C" __global__` entry point: its name and (C type, name) per parameter.
#[derive(Debug)]
pub struct KernelSig {
    pub name: String,
    pub params: Vec<(String, String)>,
    /// The first `__launch_bounds__` argument (max threads per block), as written.
    pub launch_bounds: Option<String>,
}

/// Removes // and /* */ comments (outside string and char literals), keeping newlines.
pub fn strip_comments(src: &str) -> String {
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
pub fn parse_entry_points(src: &str) -> Result<Vec<KernelSig>, String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn sigs(src: &str) -> Result<Vec<KernelSig>, String> {
        parse_entry_points(&strip_comments(src))
    }

    #[test]
    fn comments_go_and_newlines_and_literals_stay() {
        let src = "a // x \"q\"\nb /* one\ntwo */ c \"// kept\" '/'";
        assert_eq!(strip_comments(src), "a \nb \n  c \"// kept\" '/'");
    }

    #[test]
    fn parses_name_params_and_launch_bounds() {
        let src = r#"
            // extern "C" __global__ void commented_out(int n)
            __device__ int helper(int x) { return x; }
            extern "C" __global__ void __launch_bounds__(256, 2)
            scale_f32(const float* __restrict__ x, float* y, TensorLayout l, int n) { }
            extern "C" __global__ void no_args(void) {}
            extern "C" __global__ void templ(Pair<int, float> p, Wrap<Pair<int, int> > q) {}
        "#;
        let k = sigs(src).unwrap();
        assert_eq!(k.len(), 3);
        assert_eq!(k[0].name, "scale_f32");
        assert_eq!(k[0].launch_bounds.as_deref(), Some("256"));
        let params: Vec<(&str, &str)> = k[0]
            .params
            .iter()
            .map(|(t, n)| (t.as_str(), n.as_str()))
            .collect();
        assert_eq!(
            params,
            [
                ("const float* __restrict__", "x"),
                ("float*", "y"),
                ("TensorLayout", "l"),
                ("int", "n")
            ]
        );
        assert_eq!((k[1].name.as_str(), k[1].params.len()), ("no_args", 0));
        assert_eq!(k[1].launch_bounds, None);
        // Commas inside <..> do not split parameters.
        assert_eq!(k[2].params.len(), 2);
        assert_eq!(k[2].params[0].0, "Pair<int, float>");
    }

    #[test]
    fn identifiers_containing_global_are_not_kernels() {
        let k = sigs("int my__global__x; extern \"C\" __global__ void k(int n) {}").unwrap();
        assert_eq!(k.len(), 1);
        assert_eq!(k[0].name, "k");
    }

    #[test]
    fn malformed_entry_points_say_what_is_wrong_and_where() {
        let e = sigs("\n__global__ void k(int n) {}").unwrap_err();
        assert!(
            e.starts_with("line 2:") && e.contains("extern \"C\""),
            "{e}"
        );
        let e = sigs("extern \"C\" __global__ int k(int n) {}").unwrap_err();
        assert!(e.contains("found `int k`"), "{e}");
        let e = sigs("extern \"C\" __global__ void k(int n = 3) {}").unwrap_err();
        assert!(
            e.contains("kernel k") && e.contains("needs a type and a name"),
            "{e}"
        );
        let e = sigs("extern \"C\" __global__ void k(int n").unwrap_err();
        assert!(e.contains("unbalanced parameter list of k"), "{e}");
        let e = sigs("extern \"C\" __global__ void __launch_bounds__(256 k() {}").unwrap_err();
        assert!(e.contains("unbalanced __launch_bounds__"), "{e}");
        let e = sigs("extern \"C\" __global__ void").unwrap_err();
        assert!(e.contains("unterminated"), "{e}");
    }
}
