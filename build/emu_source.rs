//! The emulator's copy of a kernel source: every static `__shared__` declaration becomes
//! `DUEL_EMU_STATIC_SHARED(align, type, name, dims)` (kernels/emu/shim.h), so each block
//! gets its variables from a per-block arena the runtime poisons, bounds-checks and
//! watches for races. Lines keep their numbers (`#line`), so messages name the .cu.

/// `text` (the .cu at `path`) with its static shared declarations rewritten, or why a
/// declaration has a form the rewrite does not handle.
pub fn rewrite_static_shared(path: &str, text: &str, stripped: &str) -> Result<String, String> {
    let mut out = format!("#line 1 \"{path}\"\n");
    for (number, (line, code)) in text
        .lines()
        .zip(stripped.lines().chain(std::iter::repeat("")))
        .enumerate()
    {
        match shared_declaration(code) {
            None => out += line,
            Some(Err(why)) => return Err(format!("line {}: {why}", number + 1)),
            Some(Ok(decl)) => out += &decl,
        }
        out.push('\n');
    }
    Ok(out)
}

/// The rewritten line when `code` (one line, comments removed) declares static shared
/// memory: `__shared__ [__align__(N)] TYPE NAME[DIMS]...;`.
fn shared_declaration(code: &str) -> Option<Result<String, String>> {
    let at = find_token(code, "__shared__")?;
    if code[..at].trim_end().ends_with("extern") {
        return Some(Err(
            "`extern __shared__` does not compile in the emulator; use DYNAMIC_SHARED(T, name)"
                .into(),
        ));
    }
    let form = "the emulator needs one static shared variable per declaration, on one line: \
                `__shared__ [__align__(N)] TYPE NAME[DIMS];` (no initialiser)";
    let rest = &code[at + "__shared__".len()..];
    let Some(end) = rest.find(';') else {
        return Some(Err(form.into()));
    };
    let (decl, after) = (rest[..end].trim(), &rest[end + 1..]);
    let (align, decl) = match decl.strip_prefix("__align__") {
        Some(r) => {
            let r = r.trim_start();
            let Some(close) = r.find(')') else {
                return Some(Err(form.into()));
            };
            (r[1..close].trim().to_string(), r[close + 1..].trim())
        }
        None => ("1".to_string(), decl),
    };
    let (head, dims) = match decl.find('[') {
        Some(i) => (decl[..i].trim_end(), &decl[i..]),
        None => (decl, ""),
    };
    let name_start = head.rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))?;
    let (ty, name) = (head[..=name_start].trim(), &head[name_start + 1..]);
    if ty.is_empty() || name.is_empty() || decl.contains([',', '=']) {
        return Some(Err(form.into()));
    }
    Some(Ok(format!(
        "{}DUEL_EMU_STATIC_SHARED({align}, {ty}, {name}, {dims});{after}",
        &code[..at]
    )))
}

/// Byte offset of `word` as a whole identifier in `code`.
fn find_token(code: &str, word: &str) -> Option<usize> {
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let b = code.as_bytes();
    let mut from = 0;
    while let Some(i) = code[from..].find(word) {
        let at = from + i;
        let end = at + word.len();
        if (at == 0 || !ident(b[at - 1])) && (end == b.len() || !ident(b[end])) {
            return Some(at);
        }
        from = end;
    }
    None
}
