//! Field masks of the Update RPCs, as AIP-134 has them: which fields of the
//! incoming message an update writes.
//!
//! - no mask, or a mask without paths: the fields that are set (not their
//!   default value) in the incoming message, so that a client that knows
//!   nothing of masks cannot wipe the fields it left out;
//! - `*` (alone): every updatable field, a full replacement;
//! - otherwise the named paths, each of which must be updatable; any other
//!   path is INVALID_ARGUMENT on `update_mask`.
//!
//! Each resource names its updatable fields as an enum ([`MaskField`]), and
//! its copy and "is set" functions match on it exhaustively: a field added
//! to the enum cannot fall into another field's arm.

use prost_types::FieldMask;

use crate::engine::{Error, Result, quote};

/// The updatable fields of one resource.
pub trait MaskField: Copy + Eq + 'static {
    /// Every updatable field with its mask path, in message order.
    const PATHS: &'static [(&'static str, Self)];
}

/// The fields an update writes: see the module docs. `is_set` tells
/// whether a field of the incoming message holds a non-default value.
pub fn fields_to_update<M, F: MaskField>(
    incoming: &M,
    mask: Option<&FieldMask>,
    is_set: impl Fn(&M, F) -> bool,
) -> Result<Vec<F>> {
    let paths = mask.map_or(&[][..], |m| m.paths.as_slice());
    if paths.is_empty() {
        return Ok(F::PATHS
            .iter()
            .map(|(_, f)| *f)
            .filter(|f| is_set(incoming, *f))
            .collect());
    }
    if paths.iter().any(|p| p == "*") {
        if paths.len() > 1 {
            return Err(Error::invalid(
                "update_mask",
                "\"*\" replaces the whole resource and must be the only path",
            ));
        }
        return Ok(F::PATHS.iter().map(|(_, f)| *f).collect());
    }
    let mut fields = Vec::with_capacity(paths.len());
    let mut unknown = Vec::new();
    for p in paths {
        match F::PATHS.iter().find(|(name, _)| name == p) {
            Some((_, f)) if !fields.contains(f) => fields.push(*f),
            Some(_) => {}
            None => unknown.push(quote(p)),
        }
    }
    if !unknown.is_empty() {
        // Name a few, so that a mask of many paths cannot make a huge error.
        const NAMED: usize = 5;
        if unknown.len() > NAMED {
            let more = unknown.len() - NAMED;
            unknown.truncate(NAMED);
            unknown.push(format!("{more} more"));
        }
        let allowed: Vec<&str> = F::PATHS.iter().map(|(name, _)| *name).collect();
        return Err(Error::invalid(
            "update_mask",
            format!(
                "{} cannot be updated; updatable: {}, or \"*\" for all of them",
                unknown.join(", "),
                allowed.join(", ")
            ),
        ));
    }
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum F {
        A,
        B,
    }

    impl MaskField for F {
        const PATHS: &'static [(&'static str, Self)] = &[("a", F::A), ("b", F::B)];
    }

    /// A message whose field `a` is set and `b` is not.
    fn only_a_set(_: &(), f: F) -> bool {
        f == F::A
    }

    fn mask(paths: &[&str]) -> FieldMask {
        FieldMask {
            paths: paths.iter().map(|p| p.to_string()).collect(),
        }
    }

    #[test]
    fn no_mask_means_the_set_fields() {
        assert_eq!(fields_to_update(&(), None, only_a_set).unwrap(), [F::A]);
        assert_eq!(
            fields_to_update(&(), Some(&mask(&[])), only_a_set).unwrap(),
            [F::A]
        );
    }

    #[test]
    fn star_means_every_field() {
        assert_eq!(
            fields_to_update(&(), Some(&mask(&["*"])), only_a_set).unwrap(),
            [F::A, F::B]
        );
        assert!(fields_to_update(&(), Some(&mask(&["*", "a"])), only_a_set).is_err());
    }

    #[test]
    fn named_paths_are_taken_as_given_and_unknown_ones_refused() {
        assert_eq!(
            fields_to_update(&(), Some(&mask(&["b", "b"])), only_a_set).unwrap(),
            [F::B]
        );
        match fields_to_update(&(), Some(&mask(&["a", "c"])), only_a_set) {
            Err(Error::InvalidArgument(v)) => {
                assert_eq!(v.len(), 1);
                assert_eq!(v[0].field, "update_mask");
                assert!(v[0].description.contains("\"c\""), "{}", v[0].description);
            }
            other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
        }
    }

    #[test]
    fn many_long_unknown_paths_make_a_short_error() {
        let long = "x".repeat(100_000);
        let paths: Vec<&str> = std::iter::repeat_n(long.as_str(), 1000).collect();
        match fields_to_update(&(), Some(&mask(&paths)), only_a_set) {
            Err(Error::InvalidArgument(v)) => {
                assert!(v[0].description.len() < 600, "{}", v[0].description);
                assert!(
                    v[0].description.contains("995 more"),
                    "{}",
                    v[0].description
                );
            }
            other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
        }
    }
}
