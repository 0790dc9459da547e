//! PLACEHOLDER — replaced by the fill/cast/reduce/rng helper.
