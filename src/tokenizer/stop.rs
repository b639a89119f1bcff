//! Stop strings: a generation ends once its decoded text holds one of them,
//! and its text is cut before the first (the OpenAI `stop` parameter,
//! lm-evaluation-harness's `until`). One implementation for the server and
//! for `eval`, so both cut the same text at the same place.

use super::Tokenizer;
use std::sync::Arc;

/// Where the first stop string starts in `text`, if any.
pub fn find_stop(text: &str, stops: &[String]) -> Option<usize> {
    stops.iter().filter_map(|s| text.find(s.as_str())).min()
}

/// `text` before the first stop string; and whether one was met.
pub fn cut_at_stop(text: &str, stops: &[String]) -> (String, bool) {
    match find_stop(text, stops) {
        Some(at) => (text[..at].to_string(), true),
        None => (text.to_string(), false),
    }
}

/// A rule for the engine (`engine::core::StopRule`): true once the decoded
/// output holds a stop string.
pub fn stop_rule(tok: Arc<Tokenizer>, stops: Vec<String>) -> impl FnMut(&[u32]) -> bool + Send {
    move |out: &[u32]| {
        tok.decode(out)
            .is_ok_and(|t| find_stop(&t, &stops).is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_earliest_stop_wins() {
        let stops = vec!["\n\n".to_string(), "Q:".to_string()];
        assert_eq!(
            cut_at_stop("42 Q: next\n\n", &stops),
            ("42 ".to_string(), true)
        );
        assert_eq!(cut_at_stop("42\n\nQ:", &stops), ("42".to_string(), true));
        assert_eq!(
            cut_at_stop("no stop", &stops),
            ("no stop".to_string(), false)
        );
        assert_eq!(cut_at_stop("x", &[]), ("x".to_string(), false));
    }
}
