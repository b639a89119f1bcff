//! Sweeps in Hydra's multirun grammar (`eval --multirun`): an override
//! whose value is a comma-separated list (`model=llama,gemma3`),
//! `range(start,stop[,step])` or `choice(a,b,...)` sweeps that key; every
//! combination is one run. Combinations are numbered as Hydra's
//! BasicSweeper numbers its jobs: `itertools.product` over the sweeping
//! overrides in command-line order (the first varies slowest).
//!
//! Commas inside brackets, braces, parentheses or quotes do not split
//! (`run.stop=[a,b]` is one list value); a quoted sweep element has its
//! quotes removed (`key='a,b',c` sweeps "a,b" and "c").

use crate::error::{Error, Result};

/// One override, split into its key part (with `=`) and its values.
#[derive(Debug, Clone, PartialEq)]
struct Axis {
    key: String,
    values: Vec<String>,
    sweeps: bool,
}

/// Top-level comma split (outside brackets and quotes).
fn split_top(v: &str, what: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut quote: Option<char> = None;
    let mut cur = String::new();
    for c in v.chars() {
        if let Some(q) = quote {
            cur.push(c);
            if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '\'' | '"' => {
                quote = Some(c);
                cur.push(c);
            }
            '[' | '{' | '(' => {
                depth += 1;
                cur.push(c);
            }
            ']' | '}' | ')' => {
                depth -= 1;
                if depth < 0 {
                    return Err(Error::Usage(format!("override '{what}': unbalanced '{c}'")));
                }
                cur.push(c);
            }
            ',' if depth == 0 => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    if quote.is_some() || depth != 0 {
        return Err(Error::Usage(format!(
            "override '{what}': unclosed quote or bracket"
        )));
    }
    out.push(cur);
    Ok(out)
}

fn unquote(s: &str) -> String {
    let t = s.trim();
    for q in ['\'', '"'] {
        if t.len() >= 2 && t.starts_with(q) && t.ends_with(q) {
            return t[1..t.len() - 1].to_string();
        }
    }
    t.to_string()
}

/// `range(start, stop[, step])` over integers, as Python's range.
fn int_range(args: &str, what: &str) -> Result<Vec<String>> {
    let nums: Vec<i64> = args
        .split(',')
        .map(|s| s.trim().parse::<i64>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| {
            Error::Usage(format!(
                "override '{what}': range() takes integers (list other values as a,b,c)"
            ))
        })?;
    let (start, stop, step) = match nums[..] {
        [stop] => (0, stop, 1),
        [start, stop] => (start, stop, 1),
        [start, stop, step] => (start, stop, step),
        _ => {
            return Err(Error::Usage(format!(
                "override '{what}': range(start, stop[, step])"
            )))
        }
    };
    if step == 0 {
        return Err(Error::Usage(format!(
            "override '{what}': range() step must not be 0"
        )));
    }
    let mut out = Vec::new();
    let mut x = start;
    while (step > 0 && x < stop) || (step < 0 && x > stop) {
        out.push(x.to_string());
        if out.len() > 100_000 {
            return Err(Error::Usage(format!(
                "override '{what}': range() of more than 100000 values"
            )));
        }
        x += step;
    }
    Ok(out)
}

fn axis(arg: &str) -> Result<Axis> {
    let Some((k, v)) = arg.split_once('=') else {
        return Ok(Axis {
            key: arg.to_string(),
            values: vec![],
            sweeps: false,
        });
    };
    let key = format!("{k}=");
    let call = |name: &str| {
        v.strip_prefix(name)
            .and_then(|r| r.strip_prefix('('))
            .and_then(|r| r.strip_suffix(')'))
    };
    for f in ["glob", "interval", "sort", "shuffle", "tag"] {
        if call(f).is_some() {
            return Err(Error::Usage(format!(
                "override '{arg}': {f}() is not supported in a sweep (list the values: a,b,c; or range(), choice())"
            )));
        }
    }
    let (values, sweeps) = if let Some(inner) = call("range") {
        (int_range(inner, arg)?, true)
    } else if let Some(inner) = call("choice") {
        (
            split_top(inner, arg)?.iter().map(|s| unquote(s)).collect(),
            true,
        )
    } else {
        let parts = split_top(v, arg)?;
        if parts.len() > 1 {
            (parts.iter().map(|s| unquote(s)).collect(), true)
        } else {
            (vec![v.to_string()], false)
        }
    };
    if sweeps && values.is_empty() {
        return Err(Error::Usage(format!("override '{arg}': sweeps no values")));
    }
    if sweeps && values.iter().any(|s| s.is_empty()) {
        return Err(Error::Usage(format!(
            "override '{arg}': an empty value in the sweep"
        )));
    }
    Ok(Axis {
        key,
        values,
        sweeps,
    })
}

/// Every combination of `args`, in Hydra's job order, each a list of plain
/// overrides (in the order given).
pub fn expand(args: &[String]) -> Result<Vec<Vec<String>>> {
    let axes: Vec<Axis> = args.iter().map(|a| axis(a)).collect::<Result<_>>()?;
    let total: usize = axes
        .iter()
        .map(|a| a.values.len().max(1))
        .try_fold(1usize, |acc, n| acc.checked_mul(n))
        .filter(|&n| n <= 10_000)
        .ok_or_else(|| Error::Usage("the sweep has more than 10000 combinations".into()))?;
    let mut out = Vec::with_capacity(total);
    for mut n in 0..total {
        // Mixed radix with the last axis fastest (itertools.product).
        let mut point = vec![String::new(); axes.len()];
        for (i, a) in axes.iter().enumerate().rev() {
            point[i] = if a.values.is_empty() {
                a.key.clone()
            } else {
                let k = n % a.values.len();
                n /= a.values.len();
                format!("{}{}", a.key, a.values[k])
            };
        }
        out.push(point);
    }
    Ok(out)
}

/// Whether any override sweeps (a multirun of one point is allowed).
pub fn sweeping_keys(args: &[String]) -> Result<Vec<String>> {
    Ok(args
        .iter()
        .map(|a| axis(a))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .filter(|a| a.sweeps)
        .map(|a| a.key.trim_end_matches('=').to_string())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn product_in_hydras_job_order() {
        let p = expand(&s(&[
            "model=llama,gemma3",
            "run.limit=5",
            "sampling.temperature=0,0.7",
        ]))
        .unwrap();
        assert_eq!(
            p,
            vec![
                s(&["model=llama", "run.limit=5", "sampling.temperature=0"]),
                s(&["model=llama", "run.limit=5", "sampling.temperature=0.7"]),
                s(&["model=gemma3", "run.limit=5", "sampling.temperature=0"]),
                s(&["model=gemma3", "run.limit=5", "sampling.temperature=0.7"]),
            ]
        );
        assert_eq!(expand(&s(&[])).unwrap(), vec![Vec::<String>::new()]);
        assert_eq!(
            sweeping_keys(&s(&["model=llama,gemma3", "a=1"])).unwrap(),
            s(&["model"])
        );
    }

    #[test]
    fn range_choice_brackets_and_quotes() {
        let p = expand(&s(&["sampling.seed=range(1,4)"])).unwrap();
        assert_eq!(p.len(), 3);
        assert_eq!(p[2], s(&["sampling.seed=3"]));
        assert_eq!(expand(&s(&["a=range(3)"])).unwrap().len(), 3);
        assert_eq!(
            expand(&s(&["a=range(10,0,-5)"])).unwrap(),
            vec![s(&["a=10"]), s(&["a=5"])]
        );
        let p = expand(&s(&["+x=choice(a, 'b,c')"])).unwrap();
        assert_eq!(p, vec![s(&["+x=a"]), s(&["+x=b,c"])]);
        // A bracketed list is one value, not a sweep.
        assert_eq!(
            expand(&s(&["run.stop=[a,b]"])).unwrap(),
            vec![s(&["run.stop=[a,b]"])]
        );
        assert_eq!(
            expand(&s(&["k='a,b',c"])).unwrap(),
            vec![s(&["k=a,b"]), s(&["k=c"])]
        );
        for bad in [
            "a=glob(*)",
            "a=range(1,x)",
            "a=range(1,5,0)",
            "a=1,,2",
            "a=[1,2",
            "a='x",
        ] {
            assert!(expand(&s(&[bad])).is_err(), "{bad}");
        }
    }
}
