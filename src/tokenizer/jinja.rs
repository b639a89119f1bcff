//! Bounds on what a Jinja template may do (chat templates from model files,
//! lm-eval task templates): minijinja's fuel bounds the instructions and a
//! recursion limit the depth; the filters that build text of a size given
//! as a number (`indent(width)`, `format` with a width or precision) are
//! wrapped to refuse a width over `MAX_WIDTH`, which fuel does not see.

use minijinja::value::{Rest, Value};
use minijinja::{Error, ErrorKind, State};

/// Instructions one render may run (a real template takes a few thousand).
pub const FUEL: u64 = 2_000_000;
/// How deep a template may recurse (macros, includes).
pub const RECURSION: usize = 64;
/// Largest width or precision a filter or format spec may ask for.
pub const MAX_WIDTH: usize = 4096;

fn too_wide(v: &Value) -> bool {
    if let Some(n) = v.as_usize() {
        return n > MAX_WIDTH;
    }
    // Keyword arguments (indent(width=...)) arrive as a map.
    v.try_iter().is_ok_and(|keys| {
        keys.into_iter().any(|k| {
            v.get_item(&k)
                .ok()
                .and_then(|x| x.as_usize())
                .is_some_and(|n| n > MAX_WIDTH)
        })
    })
}

/// Whether a printf-style (`%8.2f`) or str.format-style (`{:>8}`) format
/// string asks for a width or precision over `MAX_WIDTH`.
pub fn spec_too_wide(f: &str) -> bool {
    let b = f.as_bytes();
    let big = |s: &[u8]| {
        s.len() > 9
            || std::str::from_utf8(s)
                .ok()
                .and_then(|x| x.parse::<usize>().ok())
                .is_some_and(|n| n > MAX_WIDTH)
    };
    let digits = |i: &mut usize| {
        let s = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        s
    };
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                i += 1;
                // A mapping key, `%(name)s`, comes before the flags.
                if i < b.len() && b[i] == b'(' {
                    i = f[i..].find(')').map_or(b.len(), |e| i + e + 1);
                }
                while i < b.len() && b"-+ #0".contains(&b[i]) {
                    i += 1;
                }
                let s = digits(&mut i);
                if big(&b[s..i]) {
                    return true;
                }
                if i < b.len() && b[i] == b'.' {
                    i += 1;
                    let s = digits(&mut i);
                    if big(&b[s..i]) {
                        return true;
                    }
                }
            }
            b'{' => {
                let end = f[i..].find('}').map_or(b.len(), |e| i + e);
                if let Some(c) = b[i..end].iter().position(|&x| x == b':') {
                    let mut j = i + c + 1;
                    while j < end {
                        if b[j].is_ascii_digit() {
                            let s = digits(&mut j);
                            if big(&b[s..j]) {
                                return true;
                            }
                        } else {
                            j += 1;
                        }
                    }
                }
                i = end.max(i + 1);
            }
            _ => i += 1,
        }
    }
    false
}

fn refuse(what: &str) -> Error {
    Error::new(
        ErrorKind::InvalidOperation,
        format!("{what}: a width or precision over {MAX_WIDTH} is refused (it would build text that large)"),
    )
}

/// Largest text one render may write; past it the render stops.
pub const MAX_OUTPUT: usize = 16 << 20;

/// A writer that refuses bytes past its cap, so a render stops there
/// rather than after building everything.
struct Capped {
    buf: Vec<u8>,
    over: bool,
}

impl std::io::Write for Capped {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + b.len() > MAX_OUTPUT {
            self.over = true;
            return Err(std::io::Error::other("template output over its cap"));
        }
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Render `t` with `ctx`, stopping with an error once the output passes
/// `MAX_OUTPUT` bytes.
pub fn render_capped<S: serde::Serialize>(
    t: &minijinja::Template<'_, '_>,
    ctx: S,
) -> Result<String, Error> {
    let mut w = Capped {
        buf: Vec::new(),
        over: false,
    };
    let r = t.render_captured_to(ctx, &mut w).map(|_| ());
    if w.over {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("the template renders more than {MAX_OUTPUT} bytes"),
        ));
    }
    r?;
    String::from_utf8(w.buf).map_err(|_| {
        Error::new(
            ErrorKind::InvalidOperation,
            "the template renders non-UTF-8",
        )
    })
}

/// Set the bounds on `env`.
pub fn bound(env: &mut minijinja::Environment<'_>) {
    env.set_fuel(Some(FUEL));
    env.set_recursion_limit(RECURSION);
    let indent = Value::from_function(minijinja::filters::indent);
    env.add_filter(
        "indent",
        move |state: &State, args: Rest<Value>| -> Result<Value, Error> {
            if args.iter().skip(1).any(too_wide) {
                return Err(refuse("indent"));
            }
            indent.call(state, &args)
        },
    );
    let format = Value::from_function(minijinja::filters::format);
    env.add_filter(
        "format",
        move |state: &State, args: Rest<Value>| -> Result<Value, Error> {
            let f = args.first().and_then(|v| v.as_str()).unwrap_or("");
            // (`*` takes the width from the arguments.)
            if spec_too_wide(f) || (f.contains('*') && args.iter().skip(1).any(too_wide)) {
                return Err(refuse("format"));
            }
            format.call(state, &args)
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wide_specs_are_found_and_ordinary_ones_pass() {
        for f in [
            "%6000000000s",
            "%-99999d",
            "%.100000f",
            "{:>100000}",
            "{0:100000.2f}",
        ] {
            assert!(spec_too_wide(f), "{f}");
        }
        for f in [
            "%s costs 100000 dollars",
            "%8.2f",
            "{} in 2024",
            "{:>8}",
            "{name}",
            "%%",
        ] {
            assert!(!spec_too_wide(f), "{f}");
        }
    }

    #[test]
    fn bounded_filters_refuse_huge_widths_and_keep_ordinary_ones() {
        let mut env = minijinja::Environment::new();
        bound(&mut env);
        let r = |t: &str| env.render_str(t, ());
        assert_eq!(r("{{ 'a\nb' | indent(2) }}").unwrap(), "a\n  b");
        assert_eq!(r("{{ 'a\nb' | indent(width=2) }}").unwrap(), "a\n  b");
        assert_eq!(r("{{ '%5s' | format('x') }}").unwrap(), "    x");
        for t in [
            "{{ 'a\nb' | indent(6000000000) }}",
            "{{ 'a\nb' | indent(width=6000000000) }}",
            "{{ '%6000000000s' | format('x') }}",
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
        ] {
            assert!(r(t).is_err(), "{t}");
        }
        // Output past the cap stops the render (fuel alone would not: few
        // instructions, each writing 100 MB).
        let t = env
            .template_from_str("{% for i in range(1000) %}{{ 'x' * 100000000 }}{% endfor %}")
            .unwrap();
        let e = render_capped(&t, ()).unwrap_err();
        assert!(e.to_string().contains("more than"), "{e}");
        let t = env.template_from_str("{{ 'ab' * 3 }}").unwrap();
        assert_eq!(render_capped(&t, ()).unwrap(), "ababab");
    }
}
